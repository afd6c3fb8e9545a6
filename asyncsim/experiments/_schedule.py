"""Where the experiments' work runs, and how several experiments share one pool.

An experiment's work is sweep chunks (queued by :func:`asyncsim.sweep.run_sweep` on the executor) and
whole tasks (a batched engine run, a theory table). A :class:`Runner` sends both to one executor:
tasks directly, sweeps from threads of this process that wait on the executor, so that the chunks of
every sweep and the tasks of every experiment queue on the pool together and the cores stay busy.
Without an executor (``jobs=1``) everything runs in this process, one thing after another.

:func:`runner` owns a local process pool when ``jobs > 1`` (one BLAS thread per process, each exiting
with its parent); a given executor (a Dask cluster's) is the caller's to manage.

Inside a :func:`cache` block every sweep a runner runs keeps its chunks in a sweep folder of the
cache (:func:`asyncsim.sweep.run_sweep` with ``out=``: verified on read, resumable), and every
experiment result is kept there too (:func:`asyncsim.experiments.result.conduct`), both keyed by a
fingerprint of what defines them and of the source code of ``asyncsim`` and ``theory``: a second
command on the same folder computes nothing it already has, and a changed library computes anew.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

import asyncsim
import theory
from asyncsim._fingerprint import fingerprint
from asyncsim._rng import stream
from asyncsim._validate import check_int, check_rng
from asyncsim.sweep import Sweep, SweepResult, _init_pool_worker, run_sweep

__all__ = [
    "Once",
    "Runner",
    "cache",
    "cache_folder",
    "cache_key",
    "concurrently",
    "root_seed",
    "runner",
    "stream_of",
]


class Runner:
    """Where an experiment's work runs: on an executor (chunks of sweeps and whole tasks, queued
    together) with threads that wait on it, or all in this process, one thing after another."""

    def __init__(self, executor: Executor | None, progress: bool | None) -> None:
        self.executor = executor
        self.progress = progress
        self.threads = None if executor is None else ThreadPoolExecutor(32)

    def sweep(self, sweep: Sweep) -> SweepResult:
        """Run ``sweep``, in a folder of the active :func:`cache` when there is one."""
        out = _sweep_folder(sweep)
        return run_sweep(sweep, out, executor=self.executor, progress=self.progress)

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        """``fn(*args)`` as a future: queued on the executor, or run now in this process."""
        if self.executor is not None:
            return self.executor.submit(fn, *args)
        return _done(fn, *args)

    def background(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future:
        """``fn(*args, **kwargs)`` in a thread of this process, for work that itself waits on the
        executor (a sweep, a whole experiment); run now without an executor."""
        if self.threads is not None:
            return self.threads.submit(fn, *args, **kwargs)
        return _done(fn, *args, **kwargs)

    def map(self, fn: Callable[..., Any], calls: Sequence[tuple]) -> list[Any]:
        """``[fn(*args) for args in calls]``, on the executor when there is one."""
        return [f.result() for f in [self.submit(fn, *args) for args in calls]]

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self.submit(fn, *args).result()


def _done(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future:
    future: Future = Future()
    future.set_result(fn(*args, **kwargs))
    return future


@contextlib.contextmanager
def runner(jobs: int, executor: Executor | None, progress: bool | None) -> Iterator[Runner]:
    """A runner on ``executor``, or on a pool of ``jobs`` processes (one BLAS thread each) owned here."""
    jobs = check_int("jobs", jobs, low=1)
    with contextlib.ExitStack() as stack:
        if executor is None and jobs > 1:
            executor = stack.enter_context(ProcessPoolExecutor(jobs, initializer=_init_pool_worker))
            # Start the workers now, from this one thread: forked later, while threads of the runner
            # hold locks, a child can inherit a held lock and hang.
            executor.submit(int).result()
        made = Runner(executor, progress)
        if made.threads is not None:
            stack.enter_context(made.threads)
        yield made


def root_seed(rng: Any) -> int:
    """The root seed of an experiment: an int as given, else one drawn from ``default_rng(rng)``."""
    rng = check_rng("rng", rng)
    if isinstance(rng, int):
        return rng
    return int(np.random.default_rng(rng).integers(2**31))


def stream_of(root: int, name: str, *labels: int | str) -> np.random.SeedSequence:
    """The stream of experiment ``name`` keyed by value from ``labels`` (:func:`asyncsim.stream`), so
    adding an experiment or a case changes no other; sweeps take ``root`` as their seed and key their
    own chunks."""
    return stream(np.random.SeedSequence(root), name, *labels)


def concurrently(
    tasks: Mapping[str, Callable[[Executor | None], Any]],
    *,
    jobs: int = 1,
    executor: Executor | None = None,
    progress: bool | None = None,
) -> Iterator[tuple[str, Any, float]]:
    """Run every ``task(executor)`` at once on ``executor`` (default: one pool of ``jobs`` processes)
    and yield ``(name, value, seconds since the start)`` in the order of ``tasks``, each as soon as it
    and those before it are done. Each task runs in a thread of this process and sends its work to the
    shared executor (None when ``jobs == 1``: the tasks then run one after another)."""
    start = time.perf_counter()
    with runner(jobs, executor, progress) as shared:
        futures = {name: shared.background(task, shared.executor) for name, task in tasks.items()}
        for name, future in futures.items():
            yield name, future.result(), time.perf_counter() - start


class Once:
    """A value that several tasks need, computed by the first that asks (``get(executor)``) while
    the others wait for it: e.g. the sweep two experiments share."""

    def __init__(self, compute: Callable[[Executor | None], Any]) -> None:
        self._compute = compute
        self._lock = threading.Lock()
        self._done = False
        self._value: Any = None

    def get(self, executor: Executor | None) -> Any:
        with self._lock:
            if not self._done:
                self._value = self._compute(executor)
                self._done = True
        return self._value


# ------------------------------------------------------------------------------------------ cache
class _Active:
    """The folder of the :func:`cache` block in force (None outside one), for every thread."""

    folder: Path | None = None
    lock = threading.Lock()


@contextlib.contextmanager
def cache(folder: str | Path | None) -> Iterator[Path | None]:
    """Within the block, keep sweeps and experiment results in ``folder`` (None: no cache) and take
    them from there when their fingerprint matches (module docstring). One block at a time per
    process; the threads of :func:`concurrently` see it. Results are pickles: use a folder only this
    library writes."""
    with _Active.lock:
        if _Active.folder is not None:
            raise RuntimeError(f"a cache block is already active ({_Active.folder})")
        _Active.folder = None if folder is None else Path(folder)
    try:
        yield _Active.folder
    finally:
        _Active.folder = None


def cache_folder() -> Path | None:
    """The folder of the active :func:`cache` block, or None."""
    return _Active.folder


_ABOVE = ("figures", "cli.py", "torch.py", "optax.py")
"""The parts of asyncsim above the experiments (drawing, commands, adapters): no result depends on
them, so editing them keeps the cache."""


@functools.cache
def source_version() -> str:
    """SHA-256 of the source files of ``theory`` and of ``asyncsim`` up to the experiments (paths
    and contents)."""
    digest = hashlib.sha256()
    for package in (asyncsim, theory):
        top = Path(package.__file__).parent
        for path in sorted(top.rglob("*.py")):
            if package is asyncsim and path.relative_to(top).parts[0] in _ABOVE:
                continue
            digest.update(str(path.relative_to(top.parent)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def cache_key(description: Any) -> str | None:
    """The key of ``description`` in the active cache: the fingerprint of it and of the source
    (:func:`source_version`); None without a cache, or when something in it has no fingerprint (a
    lambda, an open file): that work is then done anew every time."""
    if _Active.folder is None:
        return None
    try:
        return fingerprint({"what": description, "source": source_version()}, "cached")
    except TypeError:
        return None


def _sweep_folder(sweep: Sweep) -> Path | None:
    """The sweep's folder in the active cache, or None (no cache, or no fingerprint)."""
    folder = _Active.folder
    if folder is None:
        return None
    try:
        key = cache_key(sweep.to_json())
    except TypeError:  # a part of the sweep without a fingerprint
        return None
    if key is None:
        return None
    name = "".join(c if c.isalnum() or c in "-_" else "_" for c in sweep.problem_name)
    return folder / "sweeps" / f"{name}-{key[:20]}"
