"""Grids over workers (or compute groups) x learning rate x momentum x seeds, as batched engine runs.

A :class:`Sweep` describes the grid; :func:`run_sweep` runs it one *chunk* at a time (one staleness
point and one seed: every (α, μ) pair of the grid in one batched engine call, sharing the chunk's trace
and its gradient noise: common random numbers, which make the comparison across hyperparameters sharp).
Each finished chunk is written to the output folder at once (atomic rename), so an interrupted sweep,
run again with the same arguments, skips what is done and loses nothing. Chunks run on any
``concurrent.futures.Executor`` (local processes by default, each with one BLAS thread; a Dask cluster
through ``client.get_executor()``); the table does not depend on the executor.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from asyncsim._fingerprint import describe
from asyncsim._progress import progress_bar
from asyncsim._rng import SeedRecord, record, root, stream
from asyncsim._validate import check_array, check_choice, check_int, read_npz
from asyncsim.cluster import ClusterConfig, simulate
from asyncsim.engine import check_problem, run
from asyncsim.measure import iterations_to_target, time_to_target
from asyncsim.optim import (
    MOMENTUM,
    STEP_SIZE,
    GradientTransformation,
    adam,
    heavy_ball,
    nesterov,
)
from asyncsim.problems import Problem, make_problem
from asyncsim.trace import Trace
from asyncsim.yellowfin import yellowfin_tuner

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "COLUMNS",
    "OPTIMIZERS",
    "StoreWarning",
    "Sweep",
    "SweepResult",
    "chunk_streams",
    "run_sweep",
]

#: Columns of the tidy table, one row per configuration and seed.
COLUMNS = (
    "point",
    "workers",
    "groups",
    "lr",
    "momentum",
    "seed",
    "iterations",
    "final_loss",
    "diverged",
    "time_to_target",
    "time_per_update",
)


def _adam(lr: Any, momentum: Any, **options: Any) -> GradientTransformation:
    """Adam at step size ``lr``; it takes no momentum from the grid (its ``b1`` is an option)."""
    return adam(lr, **options)


def _yellowfin(lr: Any, momentum: Any, **options: Any) -> GradientTransformation:
    """YellowFin started at ``(lr, momentum)`` (its ``lr_init``, ``momentum_init``); the other
    arguments of :func:`~asyncsim.yellowfin.yellowfin_tuner` are options."""
    return yellowfin_tuner(lr_init=lr, momentum_init=momentum, **options)


#: The optimizers a :class:`Sweep` knows by name: factories ``(lr, momentum, **options)``.
OPTIMIZERS: dict[str, Callable[..., GradientTransformation]] = {
    "heavy_ball": heavy_ball,
    "nesterov": nesterov,
    "adam": _adam,
    "yellowfin": _yellowfin,
}

_OPTION_VALUE = (bool, int, float, str)


@dataclass(frozen=True)
class Sweep:
    """A grid of runs of one problem and one optimizer.

    Parameters
    ----------
    problem : str or Problem
        A reference problem name (:func:`asyncsim.problems.make_problem`, with ``problem_options``),
        or a problem instance: a :class:`~asyncsim.problems.Problem`, or any object with the
        attributes of :data:`asyncsim.engine.PROBLEM_INTERFACE`.
    lrs, momenta : tuple of float
        The grid of step sizes α > 0 and momenta μ in (-1, 1), handed to the optimizer factory.
    workers : tuple of int or None
        The staleness points: M workers each (with ``cluster``, the cluster's worker count), or, when
        ``groups`` is given, a single M split into each number of groups. Default ``(1,)``; with a
        sequence of cluster configs, taken from them.
    groups : tuple of int or None
        Compute groups g (each must divide M) for a cluster of ``workers[0]`` workers.
    staleness : {"geometric", "cluster"}
        ``geometric``: i.i.d. staleness with the queueing law (theory/README.md §1), no clock beyond one unit
        per update per worker and no writer ids; ``cluster``: event traces from the SimPy model of
        ``cluster`` (default exponential compute).
    cluster : ClusterConfig, sequence of ClusterConfig, or None
        One config: a template for ``cluster`` staleness, its worker count and mode set per point.
        A sequence: one staleness point per config, used as it is (stragglers, latency, server time
        may differ from point to point; ``workers`` and ``groups`` are then left out).
    seeds : int
        Seeds per configuration (chunks per point).
    steps : int
        Updates per run (runs stop early once every configuration met the target or diverged).
    record_every : int
        Resolution of iterations to target.
    target : float or None
        Loss target (default: the problem's).
    ema : float or None
        Trailing-EMA β for noisy losses in iterations to target.
    metric : {"loss", "distance"}
        What ``target`` bounds: the loss, or the relative distance ``‖w - w*‖/‖w_0 - w*‖``.
    optimizer : str or callable
        A name in :data:`OPTIMIZERS` (``heavy_ball``, ``nesterov``, ``adam``, ``yellowfin``) or a
        factory ``(lr, momentum, **options) -> GradientTransformation``, called once per chunk with
        arrays of shape (B,) (B = the configurations of a chunk) for ``lr``, ``momentum`` and every
        option with more than one value, and plain values for the others.
    options : mapping of str to values
        Named optimizer options, each an axis of the grid (a sequence of values) or a fixed value;
        values are numbers, booleans or strings, and each option is a column of the table. E.g.
        ``{"closed_loop": True, "target_momentum": (0.3, 0.6), "gain": (0.01, 0.1)}`` for
        ``optimizer="yellowfin"``. Other fixed arguments go into the factory
        (``functools.partial``).
    problem_options : tuple of (str, value)
        Options of a reference problem named by ``problem``.
    seed : int
        Root seed. The chunk of M workers in g groups with seed index s draws from streams keyed by
        those values (:func:`chunk_streams`), not by its place in the grid: adding a grid point or a
        seed changes no other chunk's result; points with equal (M, g) share their streams (common
        random numbers across cluster configs).

    Notes
    -----
    A process pool (``jobs > 1``, or a given executor) receives the sweep by pickle: a problem class
    or a factory defined in a notebook or script reaches it where pickle can take it: with the
    ``fork`` start method (Linux's default before Python 3.14), or when it is defined in an
    importable module. A lambda never pickles; write a module-level function (or a
    ``functools.partial`` of one). With ``out=``, everything that defines the sweep is fingerprinted
    (:mod:`asyncsim._fingerprint`): an object without a fingerprint is a TypeError naming it.
    """

    problem: Any
    lrs: tuple[float, ...]
    momenta: tuple[float, ...] = (0.0,)
    workers: tuple[int, ...] | None = None
    groups: tuple[int, ...] | None = None
    staleness: str = "geometric"
    cluster: ClusterConfig | tuple[ClusterConfig, ...] | None = None
    seeds: int = 1
    steps: int = 1000
    record_every: int = 10
    target: float | None = None
    ema: float | None = None
    metric: str = "loss"
    optimizer: Any = "heavy_ball"
    options: Any = ()
    problem_options: tuple[tuple[str, Any], ...] = ()
    seed: int = 0

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        for name in ("lrs", "momenta"):
            values = check_array(name, getattr(self, name))
            if values.ndim != 1 or values.size == 0:
                raise ValueError(f"{name} must be a non-empty sequence of numbers")
            set_(self, name, tuple(float(v) for v in values))
        check_array("lrs", self.lrs, **STEP_SIZE)
        check_array("momenta", self.momenta, **MOMENTUM)
        check_choice("staleness", self.staleness, ("geometric", "cluster"))
        self._check_points()
        check_choice("metric", self.metric, ("loss", "distance"))
        if self.metric == "distance" and self.target is None:
            raise ValueError("metric='distance' needs an explicit target (a relative distance)")
        for name in ("seeds", "steps", "record_every"):
            check_int(name, getattr(self, name), low=1)
        check_int("seed", self.seed, low=0)
        self._check_problem()
        set_(self, "options", _options(self.options))
        if isinstance(self.optimizer, str):
            check_choice("optimizer", self.optimizer, tuple(OPTIMIZERS))
        elif not callable(self.optimizer):
            raise TypeError(
                f"optimizer must be a name in {sorted(OPTIMIZERS)} or a factory "
                f"(lr, momentum, **options) -> GradientTransformation, got {self.optimizer!r}"
            )
        transform = self.transform()  # the factory validates its arguments here, not in a chunk
        if "writers" in transform.needs and self.staleness == "geometric":
            raise ValueError(
                f"optimizer {self.optimizer_name!r} ({transform.name}) needs writer ids (e.g. "
                "YellowFin's closed loop), which staleness='geometric' (i.i.d. geometric staleness) "
                "does not give; use staleness='cluster'"
            )

    def _check_points(self) -> None:
        set_ = object.__setattr__
        if isinstance(self.cluster, list | tuple):
            if self.workers is not None or self.groups is not None:
                raise ValueError(
                    "with a sequence of cluster configs, the points are the configs: leave "
                    "workers and groups out"
                )
            if not self.cluster or not all(isinstance(c, ClusterConfig) for c in self.cluster):
                raise TypeError(f"cluster must be ClusterConfigs, got {self.cluster!r}")
            if self.staleness != "cluster":
                raise ValueError("cluster configs need staleness='cluster'")
            set_(self, "cluster", tuple(self.cluster))
            set_(self, "workers", tuple(c.n_workers for c in self.cluster))
            return
        if self.cluster is not None and not isinstance(self.cluster, ClusterConfig):
            raise TypeError(
                f"cluster must be a ClusterConfig or a sequence of them, got {self.cluster!r}"
            )
        workers = (1,) if self.workers is None else self.workers
        set_(self, "workers", tuple(check_int("workers", m, low=1) for m in workers))
        if self.groups is not None:
            m = self.workers[0]
            for g in self.groups:
                if check_int("groups", g, low=1) > m or m % g:
                    raise ValueError(f"groups must divide workers[0] = {m}, got {g}")
            set_(self, "groups", tuple(int(g) for g in self.groups))
        if self.groups is not None and self.staleness != "cluster":
            raise ValueError("groups need staleness='cluster' (a cluster model to group)")

    def _check_problem(self) -> None:
        if isinstance(self.problem, str):
            make_problem(self.problem, **dict(self.problem_options))  # validates name and options
            return
        if self.problem_options:
            raise ValueError(
                "problem_options apply to a reference problem named by a string; configure a "
                f"problem instance ({type(self.problem).__name__}) yourself"
            )
        check_problem(self.problem)

    @property
    def problem_name(self) -> str:
        """The reference problem's name, or the instance's ``name``."""
        return self.problem if isinstance(self.problem, str) else str(self.problem.name)

    @property
    def optimizer_name(self) -> str:
        """The optimizer's name, or the factory's qualified name."""
        if isinstance(self.optimizer, str):
            return self.optimizer
        return getattr(self.optimizer, "__qualname__", type(self.optimizer).__name__)

    def make_problem(self) -> Problem:
        """The problem instance (built anew from a reference name)."""
        if isinstance(self.problem, str):
            return make_problem(self.problem, **dict(self.problem_options))
        return self.problem

    def points(self) -> list[tuple[int, int]]:
        """The staleness points as (workers M, groups g)."""
        if isinstance(self.cluster, tuple):
            return [(c.n_workers, _groups_of(c)) for c in self.cluster]
        if self.groups is not None:
            return [(self.workers[0], g) for g in self.groups]
        return [(m, m) for m in self.workers]

    def chunks(self) -> list[tuple[int, int]]:
        """Every (point index, seed index)."""
        return [(p, s) for p in range(len(self.points())) for s in range(self.seeds)]

    @property
    def axes(self) -> dict[str, tuple[Any, ...]]:
        """The axes of a chunk's grid in order: ``lr``, ``momentum``, then each option."""
        return {"lr": self.lrs, "momentum": self.momenta, **dict(self.options)}

    @property
    def columns(self) -> tuple[str, ...]:
        """The table's columns: :data:`COLUMNS` with the options after ``momentum``."""
        at = COLUMNS.index("momentum") + 1
        return (*COLUMNS[:at], *(name for name, _ in self.options), *COLUMNS[at:])

    def grid(self) -> dict[str, np.ndarray]:
        """A chunk's configurations: one column of shape (B,) per axis, the last axis fastest."""
        axes = [np.asarray(values) for values in self.axes.values()]
        index = np.indices([a.size for a in axes]).reshape(len(axes), -1)
        return {name: a[i] for name, a, i in zip(self.axes, axes, index, strict=True)}

    def transform(self) -> GradientTransformation:
        """The optimizer over a chunk's grid: the factory called with its columns (an option of one
        value as that plain value)."""
        grid = self.grid()
        factory = OPTIMIZERS[self.optimizer] if isinstance(self.optimizer, str) else self.optimizer
        options = {
            name: grid[name] if len(values) > 1 else values[0] for name, values in self.options
        }
        return factory(grid["lr"], grid["momentum"], **options)

    def to_json(self) -> str:
        """Everything that defines the sweep, as JSON: plain fields as they are, a problem instance,
        a factory and cluster configs by their description (:mod:`asyncsim._fingerprint`). A
        TypeError names a part without a fingerprint."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return json.dumps(
            {name: describe(value, f"sweep.{name}") for name, value in fields.items()},
            sort_keys=True,
        )


def _groups_of(config: ClusterConfig) -> int:
    """The compute groups g of a cluster config: M when asynchronous, 1 when synchronous."""
    if config.mode == "groups":
        return int(config.n_groups)  # type: ignore[arg-type]
    return config.n_workers if config.mode == "async" else 1


def _options(options: Any) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    """Optimizer options as ``((name, values), ...)``: a fixed value becomes an axis of one value;
    names must be identifiers other than the table's columns, values numbers, booleans or strings."""
    pairs = options.items() if isinstance(options, Mapping) else options
    out = []
    for name, raw in pairs:
        if not isinstance(name, str) or not name.isidentifier() or name in COLUMNS:
            raise ValueError(
                f"options: name {name!r} must be an identifier other than {', '.join(COLUMNS)}"
            )
        values = tuple(raw) if isinstance(raw, list | tuple | np.ndarray) else (raw,)
        values = tuple(v.item() if isinstance(v, np.generic) else v for v in values)
        if not values or not all(isinstance(v, _OPTION_VALUE) for v in values):
            raise ValueError(
                f"options[{name!r}] must be a number, boolean or string, or a non-empty sequence "
                f"of them, got {raw!r}"
            )
        out.append((name, values))
    return tuple(out)


@dataclass(frozen=True, eq=False)
class SweepResult:
    """The tidy table: one NumPy column per name in ``sweep.columns``, rows sorted by (point, seed,
    lr, momentum, options...)."""

    columns: dict[str, np.ndarray]
    sweep: Sweep

    def __len__(self) -> int:
        return len(self.columns["lr"])

    def __getitem__(self, name: str) -> np.ndarray:
        return self.columns[name]

    @property
    def seed(self) -> SeedRecord:
        """The record of the root every chunk's streams derive from."""
        return record(root(self.sweep.seed))

    def to_frame(self) -> pd.DataFrame:
        """The table as a DataFrame; ``attrs["seed"]`` holds ``str(self.seed)``."""
        import pandas as pd

        frame = pd.DataFrame(self.columns)
        frame.attrs["seed"] = str(self.seed)
        return frame

    def median_iterations(self) -> np.ndarray:
        """Median over seeds of iterations to target, shape (points, lrs, momenta, *options) (inf
        if a majority never got there)."""
        sizes = [len(values) for values in self.sweep.axes.values()]
        shape = (len(self.sweep.points()), self.sweep.seeds, *sizes)
        return np.median(self.columns["iterations"].reshape(shape), axis=1)

    def best(self, momenta: Any = None) -> dict[str, np.ndarray]:
        """Per point, the configuration with the fewest median iterations (over the given momenta,
        default all): arrays of shape (points,) under ``lr``, ``momentum``, each option, and
        ``iterations``."""
        med = self.median_iterations()
        allowed = np.isin(self.sweep.momenta, self.sweep.momenta if momenta is None else momenta)
        med = np.where(allowed.reshape(1, 1, -1, *[1] * (med.ndim - 3)), med, np.inf)
        flat = med.reshape(med.shape[0], -1)
        arg = np.argmin(flat, axis=1)
        indices = np.unravel_index(arg, med.shape[1:])
        out = {
            name: np.asarray(values)[i]
            for (name, values), i in zip(self.sweep.axes.items(), indices, strict=True)
        }
        out["iterations"] = flat[np.arange(flat.shape[0]), arg]
        return out


def chunk_streams(
    sweep: Sweep, point: int, seed: int
) -> tuple[np.random.SeedSequence, np.random.SeedSequence]:
    """The (trace, noise) streams of a chunk, keyed by its workers M, groups g and seed index:
    ``stream(root(sweep.seed), "workers", M, "groups", g, "seed", s)``, then ``"trace"`` and
    ``"noise"`` below it."""
    m, g = sweep.points()[point]
    chunk = stream(root(sweep.seed), "workers", m, "groups", g, "seed", seed)
    return stream(chunk, "trace"), stream(chunk, "noise")


def _chunk_trace(sweep: Sweep, point: int, seq: np.random.SeedSequence) -> Trace:
    m, g = sweep.points()[point]
    if sweep.staleness == "geometric":
        return Trace.geometric(m, sweep.steps, rng=seq)
    if isinstance(sweep.cluster, tuple):
        return simulate(sweep.cluster[point], sweep.steps, rng=seq)
    template = sweep.cluster or ClusterConfig(m)
    mode = "async" if g == m else ("sync" if g == 1 else "groups")
    config = dataclasses.replace(template, n_workers=m, mode=mode, n_groups=g)
    return simulate(config, sweep.steps, rng=seq)


def run_chunk(sweep: Sweep, point: int, seed: int) -> dict[str, np.ndarray]:
    """Run one chunk: every configuration of the grid at one staleness point and one seed."""
    trace_seq, noise_seq = chunk_streams(sweep, point, seed)
    trace = _chunk_trace(sweep, point, trace_seq)
    problem = sweep.make_problem()
    grid = sweep.grid()
    b = grid["lr"].size
    target = problem.target if sweep.target is None else sweep.target
    stop_at = target if sweep.ema is None and sweep.metric == "loss" else None
    history = run(
        problem,
        sweep.transform(),
        trace,
        sweep.steps,
        rng=[noise_seq] * b,  # common random numbers across the grid
        record_every=sweep.record_every,
        estimate_momentum=False,
        stop_at=stop_at,
        stop_each=stop_at is not None,  # only each configuration's own stop is kept
    )
    its = iterations_to_target(history, target, ema=sweep.ema, metric=sweep.metric)
    final_loss, diverged = _at_own_stop(history, stop_at)
    m, g = sweep.points()[point]
    return {
        "point": np.full(b, point),
        "workers": np.full(b, m),
        "groups": np.full(b, g),
        **grid,
        "seed": np.full(b, seed),
        "iterations": its,
        "final_loss": final_loss,
        "diverged": diverged,
        "time_to_target": time_to_target(its, trace.apply_time)
        if np.isfinite(trace.apply_time).all()
        else np.full(b, np.nan),
        "time_per_update": np.full(b, trace.time_per_update),
    }


def _at_own_stop(history: Any, stop_at: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Each configuration's loss and divergence flag at its own stop, shape (B,) each, so that they
    do not depend on the rest of its chunk (which runs until every configuration has stopped).

    With ``stop_at``, a configuration stops at the first recorded step where its loss is at or below
    it: its loss there, and ``diverged`` only if it diverged before (a run that met the target and
    diverged later reports the step it met it, in ``iterations``, and no divergence). Without, it
    runs every step: the last loss and the engine's flag."""
    loss = history.loss
    if stop_at is None:
        return loss[-1], history.diverged
    met = loss <= stop_at
    reached = met.any(axis=0)
    row = np.where(reached, met.argmax(axis=0), loss.shape[0] - 1)
    return loss[row, np.arange(loss.shape[1])], history.diverged & ~reached


def _chunk_path(folder: Path, point: int, seed: int) -> Path:
    return folder / f"chunk-p{point:03d}-s{seed:04d}.npz"


class StoreWarning(UserWarning):
    """A chunk file in a sweep folder could not be used (it is named) and is computed again."""


def _read_chunk(
    path: Path, key: tuple[int, int], fingerprint: str, columns: tuple[str, ...], rows: int
) -> tuple[dict[str, np.ndarray], str | None]:
    """The columns of a chunk file and None, or what is wrong with it (the file is then not used).

    A chunk file holds its (point, seed) ``key`` and the sweep's ``fingerprint`` beside the columns;
    each column must have the chunk's row count."""
    try:
        stored = read_npz(path, "run_sweep")
    except ValueError as err:
        return {}, f"not a readable chunk ({err})"
    if "key" not in stored or "fingerprint" not in stored:
        return {}, "no chunk key or sweep fingerprint in it"
    if tuple(stored["key"].tolist()) != key:
        return {}, f"holds chunk {tuple(stored['key'].tolist())}, not {key}"
    if str(stored["fingerprint"]) != fingerprint:
        return {}, "written by another sweep (fingerprint differs)"
    missing = [name for name in columns if name not in stored]
    if missing:
        return {}, f"lacks the column(s) {', '.join(missing)}"
    short = {name: stored[name].shape for name in columns if stored[name].shape != (rows,)}
    if short:
        return {}, f"columns of the wrong length (expected {rows} rows): {short}"
    return {name: stored[name] for name in columns}, None


def _remove_orphaned_writes(folder: Path) -> None:
    """Delete the temporary files of writes whose process is gone (a kill interrupted them); the
    writes of live processes, another runner's included, are left alone. A temporary file is named
    ``<chunk>.<pid>.tmp``."""
    for tmp in folder.glob("*.tmp"):
        pid = tmp.suffixes[-2].lstrip(".") if len(tmp.suffixes) >= 2 else ""
        if not (pid.isdigit() and _alive(int(pid))):
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _save_atomic(
    path: Path, columns: dict[str, np.ndarray], key: tuple[int, int], fingerprint: str
) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, key=np.array(key), fingerprint=np.array(fingerprint), **columns)  # type: ignore[arg-type]
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _init_pool_worker() -> None:
    """Initializer of the process pools asyncsim owns: one BLAS thread per process, and a watch on
    the parent, so that a worker exits within a second of its parent's death (even by SIGKILL,
    which leaves the pool no chance to shut down) instead of living on as an orphan."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(_POLL)
        os._exit(1)

    threading.Thread(target=watch, name="asyncsim-parent-watch", daemon=True).start()


def run_sweep(
    sweep: Sweep,
    out: str | Path | None = None,
    *,
    executor: Executor | None = None,
    jobs: int = 1,
    progress: bool | None = None,
) -> SweepResult:
    """Run every chunk of ``sweep`` not yet on disk and return the whole table.

    Parameters
    ----------
    sweep : Sweep
    out : path or None
        Folder for finished chunks (created; must hold this same sweep if it exists). None keeps
        results in memory only. Each chunk file holds its (point, seed) key and the sweep's
        fingerprint beside the columns, and is checked when read: a truncated, empty, corrupt,
        short or foreign file is named in a :class:`StoreWarning` and computed again, never used.
        A write goes to ``<chunk>.<pid>.tmp`` and is renamed into place; a resume deletes only the
        temporary files of processes that are gone. Any number of runners may share the folder:
        each claims a chunk (``<chunk>.lock`` with its pid, created exclusively) just before it
        computes it, so no chunk is computed twice, and the chunks of a killed runner are taken over.
    executor : concurrent.futures.Executor or None
        Where chunks run. None: in this process when ``jobs == 1``, else a process pool of ``jobs``
        processes that the sweep owns: one BLAS thread each, and each exits within a second of the
        parent's death (even by SIGKILL). A given executor (a Dask cluster's, say) is the caller's to
        manage and to clean up.
    jobs : int
        Processes of the default pool.
    progress : bool or None
        Show a progress bar (default: on a terminal, not in CI).
    """
    if not isinstance(sweep, Sweep):
        raise TypeError(f"sweep must be a Sweep, got {type(sweep).__name__}")
    jobs = check_int("jobs", jobs, low=1)
    store = None if out is None else _ChunkStore(Path(out), sweep)
    done = {} if store is None else store.finished()
    todo = [key for key in sweep.chunks() if key not in done]
    try:
        with progress_bar(len(sweep.chunks()), progress, sweep.problem_name, "chunk") as bar:
            tick = (lambda n: None) if bar is None else bar.update
            tick(len(done))
            claim = (lambda key: True) if store is None else store.claim
            for key, columns in _execute(sweep, todo, executor, jobs, claim):
                if store is not None:
                    store.save(key, columns)
                done[key] = columns
                tick(1)
            while store is not None and (waiting := [k for k in todo if k not in done]):
                for key in waiting:  # chunks another runner claimed: its result, or take over
                    columns = store.await_or_take(key, lambda k=key: run_chunk(sweep, *k))
                    if columns is not None:
                        done[key] = columns
                        tick(1)
                if len(done) < len(sweep.chunks()):
                    time.sleep(_POLL)
    finally:
        if store is not None:
            store.release_all()
    ordered = [done[key] for key in sweep.chunks()]
    return SweepResult(
        {name: np.concatenate([c[name] for c in ordered]) for name in sweep.columns}, sweep
    )


_POLL = 0.2
"""Seconds between looks at the chunks another runner is computing."""


class _ChunkStore:
    """The chunk files of one sweep folder, shared safely by any number of runners.

    Rules: a chunk file is read only after :func:`_read_chunk` accepts it (else a named
    :class:`StoreWarning`, and it is computed again). A runner computes a chunk only after it
    *claims* it by creating ``<chunk>.lock`` exclusively (``O_CREAT | O_EXCL``) with its pid inside;
    it removes the lock after the chunk is saved, or when it stops. A lock whose process is gone
    (killed) is stale and may be claimed by another runner. So two runners on one folder never
    compute the same chunk, and a killed runner's chunks are taken over by the survivors.
    """

    def __init__(self, folder: Path, sweep: Sweep) -> None:
        try:
            text = sweep.to_json()
        except TypeError as err:
            raise TypeError(
                f"{err}. A sweep folder (out={str(folder)!r}) records a fingerprint of everything "
                "that defines the sweep; without out= the sweep runs in memory"
            ) from None
        folder.mkdir(parents=True, exist_ok=True)
        spec = folder / "sweep.json"
        if spec.exists() and spec.read_text() != text:
            raise ValueError(f"out folder {folder} holds a different sweep; use another folder")
        spec.write_text(text)
        _remove_orphaned_writes(folder)
        self.folder, self.sweep = folder, sweep
        self.fingerprint = hashlib.sha256(text.encode()).hexdigest()  # of everything defining it
        self.rows = int(np.prod([len(values) for values in sweep.axes.values()]))
        self.claimed: set[tuple[int, int]] = set()

    def _path(self, key: tuple[int, int]) -> Path:
        return _chunk_path(self.folder, *key)

    def _lock(self, key: tuple[int, int]) -> Path:
        path = self._path(key)
        return path.with_name(path.name + ".lock")

    def read(self, key: tuple[int, int], *, warn: bool) -> dict[str, np.ndarray] | None:
        """The chunk's columns if its file is there and sound; None otherwise."""
        path = self._path(key)
        if not path.exists():
            return None
        columns, problem = _read_chunk(path, key, self.fingerprint, self.sweep.columns, self.rows)
        if problem is not None:
            if warn:
                warnings.warn(f"{path}: {problem}; recomputing it", StoreWarning, stacklevel=4)
            return None
        return columns

    def finished(self) -> dict[tuple[int, int], dict[str, np.ndarray]]:
        """Every sound chunk on disk (each unsound one named in a warning)."""
        found = {key: self.read(key, warn=True) for key in self.sweep.chunks()}
        return {key: columns for key, columns in found.items() if columns is not None}

    def claim(self, key: tuple[int, int]) -> bool:
        """Take the chunk for this runner; False while a live runner holds it, or once its file is
        saved and sound (it may have been saved since this runner last looked)."""
        lock = self._lock(key)
        for _ in range(2):
            try:
                fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if not self._stale(lock):
                    return False
                with contextlib.suppress(FileNotFoundError):
                    lock.unlink()
                continue
            with os.fdopen(fd, "w") as handle:
                handle.write(str(os.getpid()))
            self.claimed.add(key)
            if self.read(key, warn=False) is None:
                return True
            self._release(key)
            return False
        return False

    @staticmethod
    def _stale(lock: Path) -> bool:
        try:
            text = lock.read_text().strip()
            age = time.time() - lock.stat().st_mtime
        except FileNotFoundError:
            return True
        if not text.isdigit():  # being written, or its writer died at once
            return age > 10.0
        return int(text) != os.getpid() and not _alive(int(text))

    def save(self, key: tuple[int, int], columns: dict[str, np.ndarray]) -> None:
        _save_atomic(self._path(key), columns, key, self.fingerprint)
        self._release(key)

    def await_or_take(
        self, key: tuple[int, int], compute: Callable[[], dict[str, np.ndarray]]
    ) -> dict[str, np.ndarray] | None:
        """Another runner's chunk: its columns once saved; computed here if that runner is gone;
        None while it is still at work."""
        if self.claim(key):
            columns = compute()
            self.save(key, columns)
            return columns
        return self.read(key, warn=False)

    def _release(self, key: tuple[int, int]) -> None:
        if key in self.claimed:
            self.claimed.discard(key)
            with contextlib.suppress(FileNotFoundError):
                self._lock(key).unlink()

    def release_all(self) -> None:
        for key in list(self.claimed):
            self._release(key)


def _execute(
    sweep: Sweep,
    todo: list[tuple[int, int]],
    executor: Executor | None,
    jobs: int,
    claim: Callable[[tuple[int, int]], bool],
) -> Iterator[tuple[tuple[int, int], dict[str, np.ndarray]]]:
    """Yield finished chunks as they complete. A chunk is claimed just before it is started (a
    chunk another runner holds is skipped), so runners sharing a folder share the work; an owned pool
    keeps two chunks per process in flight, a given executor gets every claimable chunk at once."""
    pending = iter(todo)

    def next_claimed() -> tuple[int, int] | None:
        return next((key for key in pending if claim(key)), None)

    if executor is None and jobs == 1:
        while (key := next_claimed()) is not None:
            yield key, run_chunk(sweep, *key)
        return
    owned = executor is None
    window = 2 * jobs if owned else len(todo)
    pool: Executor = executor or ProcessPoolExecutor(jobs, initializer=_init_pool_worker)
    futures: dict[Future, tuple[int, int]] = {}
    try:
        while True:
            while len(futures) < window and (key := next_claimed()) is not None:
                futures[pool.submit(run_chunk, sweep, *key)] = key
            if not futures:
                return
            finished, _ = wait(futures, return_when=FIRST_COMPLETED)
            for future in finished:
                yield futures.pop(future), future.result()
    finally:
        if owned:
            pool.shutdown(cancel_futures=True)
