"""Real lock-free asynchrony on this machine: Hogwild! SGD in M processes over shared memory.

M worker processes run SGD on one parameter vector that lives in a :mod:`multiprocessing.shared_memory`
segment, reading and writing it without locks as Hogwild! does (Niu, Recht, Ré, Wright, "Hogwild!: A
Lock-Free Approach to Parallelizing Stochastic Gradient Descent", NeurIPS 2011). Worker i loops:

1. **Read.** Take the version counter ``r0`` (the writes completed so far), copy the shared parameters
   into a local buffer, take the counter again, ``r1``. The copy is not atomic: writes ``r0 + 1 ... r1``
   (and writes in flight) may be in it partly; ``r1 - r0`` says how torn the read may be.
2. **Compute** the gradient at the local copy (the model's code, in this process).
3. **Write** the update into the shared parameters and the optimizer's shared state, element by
   element and without a lock (:class:`SharedHeavyBall`: ``u ← μ u - α g``, ``w ← w + u``), then
   increment the version counter: the value it produces, ``v``, numbers this write.

Only the version counter is atomic: one small lock guards it, held for reading or incrementing it and
taking the clock, nothing more (so the clock readings follow the counter's order). Update ``t = v - 1``
of the resulting :class:`~asyncsim.trace.Trace` (origin ``"measured"``) read version ``r0``, so its
staleness is ``t - r0``: the writes by others between its read and its write.

The model is pluggable (:class:`HogwildModel`): anything that gives a flat float64 or float32
parameter vector and, inside each worker process, a gradient function of a local copy of it.
:class:`ProblemModel` plugs in the problems of :mod:`asyncsim.problems`; a PyTorch model whose
parameters are views of one flat buffer plugs in the same way (copy the read into the buffer, run
forward and backward, return the flattened gradient).

Real runs are not reproducible from a seed: the seed fixes each worker's gradient noise, but the
interleaving of reads and writes is the operating system's scheduler's, and with more workers than
cores (``oversubscribed``) the scheduler shapes the staleness. Every run records the cores it had.

Processes and the shared-memory segment are released however the run ends: success, an exception in a
worker (:class:`HogwildError`), Ctrl-C (SIGINT; workers ignore it and the parent stops them) or the
timeout (the run returns what it recorded, flagged ``timed_out``). Workers also exit on their own when
their parent dies.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import secrets
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field, is_dataclass
from multiprocessing.shared_memory import SharedMemory
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, Protocol, runtime_checkable

import numpy as np

from asyncsim._rng import SeedRecord, record, root, stream
from asyncsim._validate import check_choice, check_int, check_real
from asyncsim.measure import momentum_estimate, momentum_estimator_init, momentum_estimator_update
from asyncsim.problems import Problem
from asyncsim.trace import Trace

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "RECORD_COLUMNS",
    "SEGMENT_PREFIX",
    "HogwildError",
    "HogwildModel",
    "HogwildRun",
    "ProblemModel",
    "SharedHeavyBall",
    "SharedOptimizer",
    "available_cores",
    "hogwild",
]

RECORD_COLUMNS = ("read_end", "read_time", "compute_time", "apply_duration")
"""Per-update columns a run records beside its trace's (times in seconds)."""

SEGMENT_PREFIX = "asyncsim_hogwild_"
"""Names of the runs' shared-memory segments: this prefix, the launching process id, a random tag
(``/dev/shm/asyncsim_hogwild_<pid>_<tag>`` on Linux)."""

READS_BUDGET = 1 << 30
"""Bytes the recorded reads and gradients (``record_reads``) may take, 2 n d itemsize."""

SNAPSHOT_BUDGET = 1 << 28
"""Bytes the loss curve's parameter copies may take, (n / record_every + 1) d itemsize."""

_GRACE = 5.0  # seconds a stopped worker gets to finish its update before it is terminated
_ERROR_BYTES = 1 << 14  # of a worker's traceback kept for the parent's message
_POLL = 0.05  # seconds between the parent's checks while it waits


# ------------------------------------------------------------------------------------------ model
@runtime_checkable
class HogwildModel(Protocol):
    """What the runner needs of a model: a flat parameter vector and, per worker, a gradient.

    The model object is sent to each worker process (pickled), so it must be picklable; heavy state
    (a PyTorch module, a data loader) is best built in :meth:`open`, which runs inside the worker.
    """

    dim: int
    """Length d of the flat parameter vector."""
    dtype: np.dtype
    """Element type of the shared parameters: float64 or float32."""

    def initial_parameters(self) -> np.ndarray:
        """The starting point, shape ``(dim,)``."""
        ...

    def open(self, worker: int, seed: np.random.SeedSequence) -> Callable[[np.ndarray], np.ndarray]:
        """Called once in worker process ``worker`` (0-based) with its own seed sequence: return its
        gradient function, ``params (dim,) -> gradient (dim,)`` (a stochastic gradient at the
        worker's local copy of the parameters, which it may not keep)."""
        ...

    def loss(self, params: np.ndarray) -> float:
        """The loss at ``params (dim,)``, evaluated in the parent for the loss curve."""
        ...


@dataclass(frozen=True, eq=False)
class ProblemModel:
    """A :class:`~asyncsim.problems.Problem` as a :class:`HogwildModel` (float64, one configuration).

    Each worker draws its gradient randomness from its own seed sequence, ``block`` updates at a time.
    """

    problem: Problem
    block: int = 256
    dim: int = field(init=False)
    dtype: np.dtype = field(init=False, default=np.dtype(np.float64))

    def __post_init__(self) -> None:
        if not isinstance(self.problem, Problem):
            raise TypeError(
                f"problem must be an asyncsim Problem, got {type(self.problem).__name__}"
            )
        object.__setattr__(self, "block", check_int("block", self.block, low=1))
        object.__setattr__(self, "dim", int(self.problem.dim))

    @property
    def name(self) -> str:
        return self.problem.name

    def initial_parameters(self) -> np.ndarray:
        return self.problem.init_params(1)[0]

    def open(self, worker: int, seed: np.random.SeedSequence) -> Callable[[np.ndarray], np.ndarray]:
        return _ProblemGradient(self.problem, np.random.default_rng(seed), self.block)

    def loss(self, params: np.ndarray) -> float:
        return float(self.problem.loss(np.asarray(params, dtype=np.float64)[None, :])[0])


class _ProblemGradient:
    """One worker's stochastic gradient of a problem, drawing its randomness in blocks."""

    def __init__(self, problem: Problem, rng: np.random.Generator, block: int) -> None:
        self.problem, self.rng, self.block = problem, rng, block
        self.drawn: Any = None
        self.used = block

    def __call__(self, params: np.ndarray) -> np.ndarray:
        if self.used == self.block:
            self.drawn = self.problem.draw([self.rng], self.block, 1)
            self.used = 0
        randomness = None if self.drawn is None else self.drawn[:, self.used]
        self.used += 1
        return self.problem.gradient(params[None, :], randomness, 1)[0]


# ------------------------------------------------------------------------------------------ optimizer
@runtime_checkable
class SharedOptimizer(Protocol):
    """An optimizer whose state is ``slots`` vectors of length d in shared memory, applied in place
    and without locks."""

    slots: int
    lr: float

    def apply(self, params: np.ndarray, state: np.ndarray, gradient: np.ndarray) -> None:
        """Write one update into ``params (d,)`` and ``state (slots, d)``, both shared."""
        ...


@dataclass(frozen=True)
class SharedHeavyBall:
    """The heavy ball with a shared velocity u: ``u ← μ u - α g``, ``w ← w + u`` (μ = 0: plain SGD).

    With one writer this is :func:`asyncsim.optim.heavy_ball`; with M writers the velocity is the last
    update any of them applied (as the engine's server keeps it), up to the races of lock-free writes.

    Parameters
    ----------
    lr : float
        Step size α > 0.
    momentum : float
        μ in (-1, 1).
    """

    lr: float
    momentum: float = 0.0
    slots: ClassVar[int] = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "lr", check_real("lr", self.lr, low=0.0, low_open=True))
        momentum = check_real(
            "momentum", self.momentum, low=-1.0, high=1.0, low_open=True, high_open=True
        )
        object.__setattr__(self, "momentum", momentum)

    def apply(self, params: np.ndarray, state: np.ndarray, gradient: np.ndarray) -> None:
        velocity = state[0]
        velocity *= self.momentum
        velocity -= self.lr * gradient
        params += velocity


# ------------------------------------------------------------------------------------------ result
class HogwildError(RuntimeError):
    """A worker raised; the message holds its traceback."""


@dataclass(frozen=True, eq=False)
class HogwildRun:
    """What a real lock-free run recorded, update by update in order of write (``n`` updates).

    Attributes
    ----------
    trace : Trace
        ``origin`` "measured": ``writer`` the worker, ``read_version`` the counter at read start,
        ``staleness`` = update index - read version, ``apply_time`` seconds from the start to the
        counter increment that numbered the write, ``seed`` the root of the gradient noise.
    read_end : int64 (n,)
        The counter when the worker had finished copying the parameters (``>= read_version``).
    read_time : float64 (n,)
        Seconds from the start to the read's first counter reading.
    compute_time : float64 (n,)
        Seconds the gradient took (end of the read to the gradient's return).
    apply_duration : float64 (n,)
        Seconds from the gradient's return to the counter increment (the write and the lock).
    steps, loss, time : (R,)
        The loss curve: the shared parameters copied right after the write that made version
        ``steps[r]`` (0: the start; other writers may have written meanwhile), their loss, and that
        write's time (s). The last point is the final parameters.
    final_params : (d,)
    reads, gradients : (n, d) or None
        Each update's local copy and its gradient (``record_reads``), for :meth:`total_momentum`.
    cores : int
        CPUs this process could run on.
    elapsed : float
        Seconds from the start to the last write.
    timed_out, diverged : bool
        The run stopped at the timeout, or because a read was not finite (the trace then holds the
        updates completed).
    config : dict
        Workers, updates asked for, model, optimizer, cores, oversubscribed, start method, timeout.
    """

    trace: Trace
    read_end: np.ndarray
    read_time: np.ndarray
    compute_time: np.ndarray
    apply_duration: np.ndarray
    steps: np.ndarray
    loss: np.ndarray
    time: np.ndarray
    final_params: np.ndarray
    reads: np.ndarray | None
    gradients: np.ndarray | None
    cores: int
    elapsed: float
    timed_out: bool = False
    diverged: bool = False
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def n_workers(self) -> int:
        return int(self.config["workers"])

    @property
    def oversubscribed(self) -> bool:
        """More workers than cores: the scheduler time-slices them."""
        return self.n_workers > self.cores

    @property
    def seed(self) -> SeedRecord | None:
        return self.trace.seed

    def to_frame(self) -> pd.DataFrame:
        """One row per update: the trace's columns and :data:`RECORD_COLUMNS`."""
        frame = self.trace.to_frame()
        for name in RECORD_COLUMNS:
            frame[name] = getattr(self, name)
        return frame

    def save(self, path: str | Path) -> Path:
        """Write :meth:`to_frame` as CSV, times in seconds to the nanosecond (the clock's
        resolution); ``Trace.load`` reads its trace back (origin None: mark it ``"measured"``)."""
        path = Path(path)
        if path.suffix != ".csv":
            raise ValueError(f"path must end in .csv, got {str(path)!r}")
        self.to_frame().to_csv(path, float_format="%.9f")
        return path

    def total_momentum(
        self, *, beta: float = 0.99, every: int = 10
    ) -> tuple[np.ndarray, np.ndarray]:
        """The worker-local total-momentum estimate (theory/README.md §9; :mod:`asyncsim.measure`)
        along the run: each writer's successive reads ``y``, its gradients ``g`` and the step size α
        give the terms ``y⁺ - y + α g`` over ``y - y⁻``, one EMA (factor ``beta``) over all writes in
        order of write. Returns the updates ``(K,)`` at which it is read (every ``every``) and the
        estimates ``(K,)`` (NaN before the first complete term). Needs ``record_reads``."""
        if self.reads is None or self.gradients is None:
            raise ValueError("total_momentum needs a run made with record_reads=True")
        every = check_int("every", every, low=1)
        lr = float(self.config["optimizer"]["lr"])
        writers = self.trace.writer
        estimator = momentum_estimator_init(self.reads[:1], int(writers.max()) + 1, beta)
        last = np.full(int(writers.max()) + 1, -1)  # each writer's previous update
        steps, values = [], []
        for t in range(len(self.trace)):
            i = int(writers[t])
            context = _ReadContext(writers[t : t + 1], self.reads[t : t + 1], self.reads, last[i])
            estimator = momentum_estimator_update(
                estimator, context, self.gradients[t : t + 1], np.array([lr])
            )
            last[i] = t
            if (t + 1) % every == 0:
                steps.append(t + 1)
                values.append(float(momentum_estimate(estimator)[0]))
        return np.array(steps, dtype=np.int64), np.array(values)


class _ReadContext(NamedTuple):
    """The step context the estimator reads (:class:`asyncsim.optim.StepContext`), for one update
    of a real run: its writer, its read, and the same writer's previous read (update ``previous``,
    -1 for none)."""

    writer: np.ndarray
    read_params: np.ndarray
    reads: np.ndarray
    previous: int

    def previous_read_params(self) -> np.ndarray:
        if self.previous < 0:
            return self.read_params
        return self.reads[self.previous : self.previous + 1]

    def has_previous_read(self) -> np.ndarray:
        return np.array([self.previous >= 0])


# ------------------------------------------------------------------------------------------ runner
def available_cores() -> int:
    """CPUs this process may run on (its affinity mask where the platform has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def hogwild(
    model: HogwildModel | Problem,
    optimizer: SharedOptimizer,
    n_workers: int,
    n_updates: int,
    *,
    rng: Any = None,
    record_every: int | None = 10,
    record_reads: bool = False,
    timeout: float = 60.0,
    start_method: str = "spawn",
) -> HogwildRun:
    """Run lock-free asynchronous SGD with ``n_workers`` processes until ``n_updates`` writes.

    Parameters
    ----------
    model : HogwildModel or Problem
        The model (a :class:`~asyncsim.problems.Problem` is wrapped in :class:`ProblemModel`).
    optimizer : SharedOptimizer
        The update rule, e.g. ``SharedHeavyBall(lr, momentum)``.
    n_workers : int
        Worker processes M, ``>= 1``.
    n_updates : int
        Writes to make, ``>= 1``: a worker takes a ticket before each read, so exactly this many
        are made (fewer if the run stops early).
    rng : None, int >= 0, SeedSequence or Generator
        Root of the gradient noise: worker i draws from ``stream(root, i)``. The interleaving, and so
        the staleness, is not reproducible.
    record_every : int or None
        Copy the shared parameters after every this many writes for the loss curve (None: only the
        start and the end).
    record_reads : bool
        Keep each update's local copy and gradient (2 n d values; at most :data:`READS_BUDGET`
        bytes), which :meth:`HogwildRun.total_momentum` needs.
    timeout : float
        Seconds (> 0) the run may take from the workers' launch; then it stops and returns what it
        recorded, with ``timed_out`` set.
    start_method : str
        How the workers start (:func:`multiprocessing.get_context`): "spawn" (default, safe with
        threads in the parent), "forkserver" or "fork" where available.

    Returns
    -------
    HogwildRun

    Raises
    ------
    HogwildError
        When a worker raised (the others are stopped and everything is released first).
    TimeoutError
        When the timeout came before the first write.
    KeyboardInterrupt
        Re-raised after the cleanup when the run is interrupted.
    """
    if isinstance(model, Problem):
        model = ProblemModel(model)
    if not isinstance(model, HogwildModel):
        raise TypeError(
            f"model must be a HogwildModel (dim, dtype, initial_parameters, open, loss) or a "
            f"Problem, got {type(model).__name__}"
        )
    if not isinstance(optimizer, SharedOptimizer):
        raise TypeError(
            f"optimizer must be a SharedOptimizer (slots, lr, apply), got {type(optimizer).__name__}"
        )
    m = check_int("n_workers", n_workers, low=1)
    n = check_int("n_updates", n_updates, low=1)
    every = n if record_every is None else check_int("record_every", record_every, low=1)
    timeout = check_real("timeout", timeout, low=0.0, low_open=True)
    check_choice("start_method", start_method, tuple(multiprocessing.get_all_start_methods()))
    dtype = np.dtype(model.dtype)
    if dtype not in (np.dtype(np.float64), np.dtype(np.float32)):
        raise ValueError(f"model.dtype must be float64 or float32, got {dtype}")
    d = check_int("model.dim", model.dim, low=1)
    if record_reads and 2 * n * d * dtype.itemsize > READS_BUDGET:
        raise ValueError(
            f"record_reads would take {2 * n * d * dtype.itemsize} bytes for n_updates = {n} and "
            f"dim = {d}; at most READS_BUDGET = {READS_BUDGET}"
        )
    snapshots = (n // every + 1) * d * dtype.itemsize
    if snapshots > SNAPSHOT_BUDGET:
        raise ValueError(
            f"record_every = {record_every} would keep {snapshots} bytes of parameter copies for "
            f"n_updates = {n} and dim = {d}; at most SNAPSHOT_BUDGET = {SNAPSHOT_BUDGET} (record "
            f"less often, or None)"
        )
    seq = root(rng)
    layout = _Layout(
        {
            "header": ((len(_HEADER),), np.int64),
            "ready": ((m,), np.int64),
            "error_length": ((m,), np.int64),
            "error": ((m, _ERROR_BYTES), np.uint8),
            "records": ((n, len(_RECORD)), np.int64),
            "params": ((d,), dtype),
            "state": ((optimizer.slots, d), dtype),
            "snapshots": ((n // every + 1, d), dtype),
            "snapped": ((n // every + 1,), np.int64),
            **({"reads": ((n, d), dtype), "gradients": ((n, d), dtype)} if record_reads else {}),
        }
    )
    start = np.asarray(model.initial_parameters())
    if start.shape != (d,):
        raise ValueError(
            f"model.initial_parameters() must have shape (dim,) = ({d},), got {start.shape}"
        )
    config = {
        "workers": m,
        "updates": n,
        "model": getattr(model, "name", type(model).__name__),
        "optimizer": {"name": type(optimizer).__name__, "lr": optimizer.lr}
        | (asdict(optimizer) if is_dataclass(optimizer) else {}),
        "cores": available_cores(),
        "oversubscribed": m > available_cores(),
        "record_every": record_every,
        "start_method": start_method,
        "timeout": timeout,
        "load": os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan"),
        "reproducible": False,  # the interleaving is the scheduler's
    }
    with _Session(layout, m, start_method) as session:
        config["segment"] = session.shm.name
        views = session.views
        views["params"][:] = start
        views["snapshots"][0] = start
        views["snapped"][0] = 1
        spec = _Spec(model, optimizer, n, every, record_reads, layout, session.shm.name, seq)
        session.launch(spec)
        outcome = session.wait(time.monotonic() + timeout)
        session.stop()
        return _collect(views, model, outcome, seq, config)


class _Outcome(NamedTuple):
    timed_out: bool
    start_ns: int


def _collect(
    views: dict[str, np.ndarray],
    model: HogwildModel,
    outcome: _Outcome,
    seq: np.random.SeedSequence,
    config: dict[str, Any],
) -> HogwildRun:
    """The run's result from the shared arrays, once every worker has stopped (copies)."""
    records = views["records"]
    done = records[:, _RECORD.index("done")] == 1
    n_done = int(np.argmin(done)) if not done.all() else done.size
    if n_done == 0:
        raise TimeoutError(
            f"no update completed within the timeout of {config['timeout']} s "
            f"({config['workers']} workers)"
        )
    rows = records[:n_done].copy()  # the segment goes when the session ends
    column = {name: rows[:, i] for i, name in enumerate(_RECORD)}
    if not np.array_equal(column["version"], np.arange(1, n_done + 1)):
        raise AssertionError("the version counter skipped or repeated a value")  # a runner bug

    def seconds(name: str) -> np.ndarray:
        return (column[name] - outcome.start_ns) * 1e-9

    read_start = column["read_start"]
    trace = Trace(
        staleness=np.arange(n_done) - read_start,
        writer=column["writer"],
        read_version=read_start,
        apply_time=seconds("applied_ns"),
        n_aggregated=np.ones(n_done, dtype=np.int64),
        seed=record(seq),
        origin="measured",
    )
    every = config["record_every"] or config["updates"]
    snapped = np.flatnonzero(views["snapped"][: n_done // every + 1] == 1)
    final = views["params"].copy()
    steps = np.append(snapped * every, n_done)
    params = np.vstack([views["snapshots"][snapped], final[None, :]])
    if steps[-2] == n_done:  # the last snapshot is the final write: keep the final parameters
        steps, params = steps[:-1], np.vstack([params[:-2], final[None, :]])
    with np.errstate(all="ignore"):
        loss = np.array([model.loss(p) for p in params], dtype=np.float64)
    clock = np.concatenate([[0.0], trace.apply_time])[steps]
    reads = views.get("reads")
    gradients = views.get("gradients")
    return HogwildRun(
        trace=trace,
        read_end=column["read_end"],
        read_time=seconds("read_ns"),
        compute_time=(column["computed_ns"] - column["read_end_ns"]) * 1e-9,
        apply_duration=(column["applied_ns"] - column["computed_ns"]) * 1e-9,
        steps=steps,
        loss=loss,
        time=clock,
        final_params=final,
        reads=None if reads is None else reads[:n_done].copy(),
        gradients=None if gradients is None else gradients[:n_done].copy(),
        cores=config["cores"],
        elapsed=float(trace.apply_time[-1]),
        timed_out=outcome.timed_out and n_done < config["updates"],
        diverged=bool(views["header"][_HEADER.index("diverged")]) or not np.isfinite(final).all(),
        config=config,
    )


# ------------------------------------------------------------------------------------------ shared
_HEADER = ("issued", "version", "stop", "diverged", "start_ns")
_RECORD = (
    "writer",
    "read_start",
    "read_end",
    "version",
    "read_ns",
    "read_end_ns",
    "computed_ns",
    "applied_ns",
    "done",
)


class _Layout:
    """Named arrays laid out in one shared-memory segment (each at a 64-byte boundary)."""

    def __init__(self, arrays: dict[str, tuple[tuple[int, ...], Any]]) -> None:
        self.arrays: dict[str, tuple[tuple[int, ...], np.dtype, int]] = {}
        offset = 0
        for name, (shape, dtype) in arrays.items():
            dtype = np.dtype(dtype)
            self.arrays[name] = (shape, dtype, offset)
            offset += -(-int(np.prod(shape)) * dtype.itemsize // 64) * 64
        self.size = max(offset, 64)

    def views(self, buffer: memoryview) -> dict[str, np.ndarray]:
        return {
            name: np.ndarray(shape, dtype=dtype, buffer=buffer, offset=offset)
            for name, (shape, dtype, offset) in self.arrays.items()
        }


class _Spec(NamedTuple):
    """What a worker process is given (pickled)."""

    model: Any
    optimizer: Any
    n_updates: int
    every: int
    record_reads: bool
    layout: _Layout
    name: str
    seed: np.random.SeedSequence


class _Session:
    """The shared segment, the counter's lock and the worker processes of one run; leaving it
    (however) stops the workers, terminates those that do not stop, and releases the segment and the
    lock (its named semaphore).

    The lock is the run's only synchronization object: the parent holds it while the workers start,
    so that they begin together when it lets go; a worker's failure is written into its own slot of
    the segment."""

    def __init__(self, layout: _Layout, n_workers: int, start_method: str) -> None:
        self.context = multiprocessing.get_context(start_method)
        self.n_workers = n_workers
        name = f"{SEGMENT_PREFIX}{os.getpid()}_{secrets.token_hex(4)}"
        self.shm = SharedMemory(name=name, create=True, size=layout.size)
        self.views = layout.views(self.shm.buf)
        for name in ("header", "ready", "error_length", "records"):
            self.views[name][...] = 0
        self.lock: Any = self.context.Lock()
        self.holding = False
        self.processes: list[Any] = []

    def __enter__(self) -> _Session:
        return self

    def launch(self, spec: _Spec) -> None:
        """Start the workers, holding the lock (they wait for it) and with SIGINT ignored (they
        inherit that: Ctrl-C reaches the parent alone)."""
        self.lock.acquire()
        self.holding = True
        with _sigint_ignored():
            for i in range(self.n_workers):
                process = self.context.Process(
                    target=_worker,
                    args=(i, spec, self.lock),
                    name=f"asyncsim-hogwild-{i}",
                    daemon=True,
                )
                process.start()
                self.processes.append(process)

    def wait(self, deadline: float) -> _Outcome:
        """Wait for the workers to be ready, start them (let go of the lock), and wait until all
        have exited or the deadline; raise :class:`HogwildError` when one failed."""
        while self.views["ready"].sum() < self.n_workers:
            self._check()
            if time.monotonic() >= deadline:
                return _Outcome(True, time.perf_counter_ns())
            multiprocessing.connection.wait(self._sentinels(), timeout=0.01)
        self.views["header"][_HEADER.index("start_ns")] = start_ns = time.perf_counter_ns()
        self._let_go()
        while self._sentinels():
            self._check()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return _Outcome(True, start_ns)
            multiprocessing.connection.wait(self._sentinels(), timeout=min(remaining, _POLL))
        self._check()
        return _Outcome(False, start_ns)

    def _let_go(self) -> None:
        if self.holding:
            self.holding = False
            self.lock.release()

    def _sentinels(self) -> list[int]:
        return [p.sentinel for p in self.processes if p.exitcode is None]

    def _check(self) -> None:
        """Raise :class:`HogwildError` for the first worker that wrote a traceback or failed."""
        for worker, length in enumerate(self.views["error_length"]):
            if length:
                text = self.views["error"][worker, :length].tobytes().decode(errors="replace")
                raise HogwildError(f"hogwild worker {worker} raised:\n{text}")
        for worker, process in enumerate(self.processes):
            if process.exitcode not in (None, 0):
                hint = ""
                if not self.views["ready"][worker]:
                    hint = (
                        " before it was ready (its stderr says why; with start_method 'spawn' or "
                        "'forkserver' a script must start the run under `if __name__ == "
                        "'__main__':`)"
                    )
                raise HogwildError(
                    f"hogwild worker {worker} exited with code {process.exitcode}{hint}"
                )

    def stop(self) -> None:
        """Ask every worker to stop after its current update, wait a grace period, then terminate
        (and at last kill) those still running."""
        self.views["header"][_HEADER.index("stop")] = 1
        self._let_go()
        deadline = time.monotonic() + _GRACE
        for process in self.processes:
            process.join(max(deadline - time.monotonic(), 0.0))
        for process in self.processes:
            if process.exitcode is None:
                process.terminate()
                process.join(1.0)
            if process.exitcode is None:
                process.kill()
                process.join()

    def __exit__(self, *exc: object) -> None:
        try:
            self.stop()
        finally:
            for process in self.processes:
                process.close()
            # Drop every reference to the lock (the processes keep their arguments) so that its
            # semaphore is unlinked now, not when a traceback holding this session goes.
            self.processes.clear()
            self.lock = None
            self.views.clear()
            _close(self.shm)
            self.shm.unlink()


def _close(shm: SharedMemory) -> None:
    """Unmap ``shm`` here; while arrays on it are still referenced (a traceback's frames) the
    mapping stays until they go, and unlinking removes the segment all the same."""
    with suppress(BufferError):
        shm.close()


@contextmanager
def _sigint_ignored() -> Iterator[None]:
    """SIGINT ignored in this process while inside (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


# ------------------------------------------------------------------------------------------ worker
def _worker(index: int, spec: _Spec, lock: Any) -> None:
    """Worker ``index``'s process: attach, build the gradient, say it is ready, wait for the lock
    (the start), loop. A failure is written into its slot of the segment, and the process exits 1."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = os.getppid()  # the launching process (or the fork server): exit when it is gone
    shm = SharedMemory(name=spec.name)
    views = spec.layout.views(shm.buf)
    try:
        _one_blas_thread()
        gradient = spec.model.open(index, stream(spec.seed, index))
        views["ready"][index] = 1
        while not lock.acquire(timeout=_POLL):
            if os.getppid() != parent:
                return
        lock.release()
        with np.errstate(all="ignore"):  # a diverging run is data: the parent flags it
            _loop(index, spec, views, lock, gradient, parent)
    except BaseException:
        views["header"][_HEADER.index("stop")] = 1
        text = traceback.format_exc().encode()[-_ERROR_BYTES:]
        views["error"][index, : len(text)] = np.frombuffer(text, dtype=np.uint8)
        views["error_length"][index] = len(text)
        raise SystemExit(1) from None
    finally:
        views.clear()
        _close(shm)


def _one_blas_thread() -> None:
    """One BLAS thread in this process: M workers share the cores."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)


def _loop(
    index: int,
    spec: _Spec,
    views: dict[str, np.ndarray],
    lock: Any,
    gradient: Callable[[np.ndarray], np.ndarray],
    parent: int,
) -> None:
    """Read, compute, write until the tickets run out, the parent asks to stop or dies."""
    header, records, params, state = (views[k] for k in ("header", "records", "params", "state"))
    snapshots, snapped = views["snapshots"], views["snapped"]
    reads, gradients = views.get("reads"), views.get("gradients")
    issued, version_at = _HEADER.index("issued"), _HEADER.index("version")
    stop, diverged = _HEADER.index("stop"), _HEADER.index("diverged")
    clock = time.perf_counter_ns
    local = np.empty_like(params)
    n, every, optimizer = spec.n_updates, spec.every, spec.optimizer
    while not header[stop] and os.getppid() == parent:
        with lock:
            if header[issued] >= n:
                return
            header[issued] += 1
            read_start, read_ns = int(header[version_at]), clock()
        local[:] = params  # not atomic: writes may land while it copies
        with lock:
            read_end, read_end_ns = int(header[version_at]), clock()
        if not np.isfinite(local).all():
            header[diverged] = header[stop] = 1
            return
        g = gradient(local)
        computed_ns = clock()
        optimizer.apply(params, state, g)
        with lock:
            header[version_at] += 1
            version, applied_ns = int(header[version_at]), clock()
        row = version - 1
        if reads is not None and gradients is not None:
            reads[row] = local
            gradients[row] = g
        if version % every == 0:
            snapshots[version // every] = params
            snapped[version // every] = 1
        records[row] = (
            index,
            read_start,
            read_end,
            version,
            read_ns,
            read_end_ns,
            computed_ns,
            applied_ns,
            1,
        )
