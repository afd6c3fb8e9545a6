"""The cluster model: M workers and a parameter server, simulated to a staleness :class:`Trace`.

Two implementations of one model live here. The SimPy model is the reference (and this is the only
module that imports :mod:`simpy`); beside it a vectorized NumPy fast path reproduces the SimPy trace
element by element, apply times included, wherever it applies (no network latency, no server time).

The model
---------
The M workers form g groups of k = M/g consecutive ids (group j holds workers jk, ..., jk + k - 1).
Mode ``"async"`` is g = M groups of one, ``"sync"`` one group of M, ``"groups"`` anything between.
A group is one client of the server and loops forever:

1. **Pull.** Its request travels for ``pull_latency`` (one draw; the reply is taken as
   instantaneous, so fold the round trip into this one number). The server then serves the read:
   the *version read* is the number of applies completed at that instant. A pull costs no server
   time, but when ``server_time`` is given it waits its turn for the server like an apply.
2. **Compute.** Every member computes a gradient: worker i takes ``s_i * x``, with ``x`` drawn
   from ``compute`` and ``s_i`` its time multiplier (``time_multipliers[i]``, times a draw from
   ``slowdown`` made once per run when that law is given); the group is done when its slowest
   member is (max over members).
3. **Push.** The aggregated gradient (k of them) travels for ``push_latency``.
4. **Apply.** The server, a SimPy ``Resource`` of capacity 1 served first come first served,
   holds it for ``server_time``; the apply completes at the end of that service. That is a
   *write*: update t (0-based) is the t-th write; its staleness is ``t - read_version``, the writes
   by other groups between its read and its write. With a ``buffer`` of K > 1 (buffered
   aggregation) an arrival is only put in the server's buffer, and the arrival that makes K applies
   them all at once (it alone holds the server for ``server_time``); see *Buffered aggregation*.
5. **Drop out.** With probability ``dropout`` (a fresh draw after each arrival) the group is then
   unavailable for a time drawn from ``downtime``; it pulls when it returns. Otherwise it pulls at
   once (step 1), so without latency and server time it reads the version it has just written,
   ``read_version = t + 1``.

Without ``server_time`` the server is no Resource at all: pulls and applies take no time and,
since the events of one instant are processed one after another, they would never find it busy.

Events at equal times are processed in order of group id, each group's events at that time as one
block (group j's timeouts carry the SimPy priority ``2 + j``, after SimPy's own urgent and normal
events). So with deterministic times simultaneous finishes are applied lowest id first, and a
group whose compute took no time writes again before the next group's write at that instant.

Buffered aggregation
--------------------
With ``buffer = K`` the server applies once K gradients (group arrivals) are in, as in FedBuff
(Nguyen et al., "Federated Learning with Buffered Asynchronous Aggregation", AISTATS 2022). Versions
count applies, so each gradient's staleness is the number of applies between its read and the apply
that uses it. The trace has one row per apply (what the engine steps through), and a row stands for
its K gradients by one rule:

- ``read_version`` is the mean of the K gradients' read versions, rounded to the nearest integer
  (halves up): ``(2 Σ r_i + K) // (2K)``; so the row's staleness is the buffer's mean staleness,
  rounded (halves down), which keeps the mean staleness of the gradients (up to that rounding);
- ``writer`` is the group whose arrival completed the buffer, and ``apply_time`` that instant;
- ``n_aggregated`` is ``K k``: the engine averages K gradients of k workers each at that one read.

K = 1 is the plain parameter server. A group may contribute more than one gradient to a buffer.

Random streams
--------------
``rng`` becomes one root seed sequence (the rules of :mod:`asyncsim._rng`), recorded on the trace as
``Trace.seed``. Streams are keyed by value from it: worker i's compute, pull and push streams are
``stream(root, i, 0)``, ``stream(root, i, 1)`` and ``stream(root, i, 2)``, its slowdown draw comes
from ``stream(root, i, "slowdown")``, and the server time draws from ``stream(root, "server")``;
adding a worker changes no other worker's stream. A group's pull and push latencies, its dropout
decisions and its downtimes are drawn from the streams of its first worker (``stream(root, jk, 1)``,
``(jk, 2)``, ``(jk, "dropout")`` and ``(jk, "downtime")``). Every time law draws its values one by
one in the order of use (:mod:`asyncsim.distributions`), so the two implementations may draw in
blocks of different sizes (up to :data:`BLOCK` values a call) and still see the same numbers, which
is what makes their traces identical.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import numpy as np
import simpy
import simpy.events

from asyncsim._progress import progress_bar
from asyncsim._rng import record, root, stream
from asyncsim._validate import check_array, check_choice, check_int, check_real
from asyncsim.distributions import Distribution, Exponential
from asyncsim.trace import Trace

__all__ = ["BLOCK", "MODES", "ClusterConfig", "multipliers", "simulate"]

MODES = ("async", "sync", "groups")
"""Execution modes of :class:`ClusterConfig`."""

METHODS = ("auto", "simpy", "fast")
"""Implementations :func:`simulate` can use."""

BYTES_PER_UPDATE = 160
"""Memory one simulated update takes at its peak (the trace's five 8-byte columns, the SimPy path's
Python lists or the fast path's sort arrays; measured with tracemalloc at M = 16: 157 bytes on the
SimPy path at 10^5 updates, 73 on the fast path at 10^6; with a buffer of 4, 224 and 317 bytes per
update, with dropouts 174 and 154): the estimate :func:`simulate` checks before it starts (per
arrival at the server, with buffered aggregation; twice that with dropouts)."""

BLOCK = 4096
"""The most values drawn per call from a random stream. The SimPy model starts with blocks of
:data:`FIRST_BLOCK` and doubles them up to this size, so that a short run draws little."""

FIRST_BLOCK = 16
"""Values drawn by the SimPy model's first call on each stream."""

PROGRESS_FROM = 200_000
"""Updates from which the SimPy path shows a progress bar by default (at a terminal, outside CI)."""

_FIRST_PRIORITY = 2  # SimPy's URGENT = 0 and NORMAL = 1 come first at equal times
_STREAM_KINDS = ("compute", "pull", "push")


@dataclass(frozen=True)
class ClusterConfig:
    """A parameter-server cluster: workers, how they are grouped, and where time goes.

    Times are in arbitrary units (1 = one mean compute time in the reference problems).

    Parameters
    ----------
    n_workers : int
        Number of workers M, ``>= 1``.
    compute : Distribution
        Law of one worker's time to compute a gradient; its mean must be positive. Default
        ``Exponential(1.0)``; ``Gamma.from_cv(cv)`` sets the variability by the coefficient of
        variation (1: exponential, 0: deterministic).
    time_multipliers : sequence of M floats, optional
        Per-worker slowdowns (stragglers): worker i's compute time is ``time_multipliers[i]`` times
        a draw from ``compute`` (4 = four times slower). Each must be finite and ``> 0``. Stored as
        a tuple of floats.
    pull_latency, push_latency : Distribution, optional
        Network time of a pull (before the server serves the read) and of a push (before the apply
        reaches the server); none when omitted.
    server_time : Distribution, optional
        Time the server is busy per apply. Pulls take none but queue behind a busy server.
    mode : {"async", "sync", "groups"}
        Asynchronous workers, one synchronous step of all M per update (a barrier), or synchronous
        compute groups that are asynchronous to each other.
    n_groups : int, optional
        Number of groups g; must divide M. Required in mode ``"groups"``; in the other modes it is
        derived (M for ``"async"``, 1 for ``"sync"``) and, when given, must equal that value.
    slowdown : Distribution, optional
        Law of per-worker speeds (heterogeneous hardware): each run draws one multiplier per worker
        from it (worker i from its own stream), which multiplies its compute times on top of
        ``time_multipliers``. A heavy tail (``Pareto``, ``LogNormal`` with a large sigma) gives a few
        very slow workers. Its mean must be positive.
    dropout : float
        Probability in ``[0, 1]`` that a group drops out after an arrival at the server (a fresh
        draw each time); it returns after a time drawn from ``downtime`` and pulls then.
    downtime : Distribution, optional
        Law of the unavailability intervals; required when ``dropout > 0``.
    buffer : int
        Buffered aggregation: the server applies once this many gradients (group arrivals) are in,
        in ``[1, n_groups]``; 1 (default) applies each at once. See the module docstring for how a
        buffered apply is written in the trace.

    Raises
    ------
    ValueError
        On a value out of range, naming the parameter, the value and the allowed range.
    TypeError
        When a time law is not a :class:`~asyncsim.distributions.Distribution`.

    Examples
    --------
    >>> from asyncsim import Gamma, Uniform
    >>> ClusterConfig(8, mode="groups", n_groups=4).group_size
    2
    >>> ClusterConfig(4, compute=Uniform(0.9, 1.1), time_multipliers=[1, 1, 1, 4]).time_multipliers
    (1.0, 1.0, 1.0, 4.0)
    >>> ClusterConfig(8, compute=Gamma.from_cv(0.5)).compute
    Gamma(shape=4.0, mean_time=1.0)
    """

    n_workers: int
    compute: Distribution = field(default_factory=Exponential)
    time_multipliers: tuple[float, ...] | None = None
    pull_latency: Distribution | None = None
    push_latency: Distribution | None = None
    server_time: Distribution | None = None
    mode: str = "async"
    n_groups: int | None = None
    slowdown: Distribution | None = None
    dropout: float = 0.0
    downtime: Distribution | None = None
    buffer: int = 1

    def __post_init__(self) -> None:
        m = check_int("n_workers", self.n_workers, low=1)
        object.__setattr__(self, "n_workers", m)
        for name in ("compute", "slowdown"):
            law = getattr(self, name)
            if name == "compute" or law is not None:
                _check_distribution(name, law)
                if not law.mean > 0:
                    what = "time" if name == "compute" else "multiplier"
                    raise ValueError(
                        f"{name} must have a mean {what} in (0, inf), got {law!r} "
                        f"with mean {law.mean}"
                    )
        for name in ("pull_latency", "push_latency", "server_time", "downtime"):
            if getattr(self, name) is not None:
                _check_distribution(name, getattr(self, name))
        if self.time_multipliers is not None:
            mult = check_array("time_multipliers", self.time_multipliers, low=0.0, low_open=True)
            if mult.shape != (m,):
                raise ValueError(
                    f"time_multipliers must hold n_workers = {m} values (one per worker), "
                    f"got shape {mult.shape}"
                )
            object.__setattr__(self, "time_multipliers", tuple(float(x) for x in mult))
        mode = check_choice("mode", self.mode, MODES)
        g = _resolve_groups(mode, m, self.n_groups)
        object.__setattr__(self, "n_groups", g)
        dropout = check_real("dropout", self.dropout, low=0.0, high=1.0)
        object.__setattr__(self, "dropout", dropout)
        if dropout > 0 and self.downtime is None:
            raise ValueError(
                f"downtime is required when dropout > 0 (got dropout = {dropout}): a Distribution "
                "of the unavailability intervals"
            )
        object.__setattr__(self, "buffer", check_int("buffer", self.buffer, low=1, high=g))

    @property
    def group_size(self) -> int:
        """Workers per group, k = M/g (gradients aggregated per group arrival)."""
        return self.n_workers // self.n_groups  # type: ignore[operator]


def simulate(
    config: ClusterConfig,
    n_updates: int,
    *,
    rng: np.random.Generator | int | None = None,
    method: str = "auto",
    progress: bool | None = None,
) -> Trace:
    """Run the cluster until ``n_updates`` applies have completed and return their trace.

    Parameters
    ----------
    config : ClusterConfig
        The cluster.
    n_updates : int
        Number of updates (applies) to record, ``>= 1``.
    rng : None, int >= 0, numpy.random.SeedSequence or numpy.random.Generator
        Source of randomness: one root seed sequence, from which the worker and server streams are
        keyed by value (see the module docstring).
    method : {"auto", "simpy", "fast"}
        ``"simpy"`` runs the reference event model; ``"fast"`` the vectorized path, which gives the
        identical trace but serves only configs without latency and server time (else ValueError);
        ``"auto"`` takes the fast path where it applies.
    progress : bool or None
        A progress bar (tqdm, on stderr) while the SimPy model runs. None (default): shown for runs
        of :data:`PROGRESS_FROM` updates or more when stderr is a terminal and ``CI`` is not set. The
        fast path shows none (a million updates take a fraction of a second).

    Returns
    -------
    Trace
        Columns of shape ``(n_updates,)`` in order of apply; ``config`` is ``config``, ``seed``
        the :class:`~asyncsim._rng.SeedRecord` of the root, which makes the same trace again, and
        ``origin`` is ``"simulated"``.

    Raises
    ------
    ValueError
        On an argument out of range, or when the simulated clock overflows float64 (time laws so
        large that an apply time is inf).

    Examples
    --------
    Two workers, one twice as fast as the other, deterministic compute time 1:

    >>> from asyncsim import Deterministic
    >>> config = ClusterConfig(2, compute=Deterministic(1.0), time_multipliers=(0.5, 1.0))
    >>> trace = simulate(config, 8, rng=0)
    >>> trace.staleness
    array([0, 0, 2, 1, 0, 2, 1, 0])
    >>> trace.writer
    array([0, 0, 1, 0, 0, 1, 0, 0])
    >>> trace.apply_time
    array([0.5, 1. , 1. , 1.5, 2. , 2. , 2.5, 3. ])

    Four equal workers whose server applies two gradients at a time (buffered aggregation): the
    first of each pair read the version before the previous apply, so every apply after the first is
    one version stale.

    >>> trace = simulate(ClusterConfig(4, compute=Deterministic(1.0), buffer=2), 6, rng=0)
    >>> trace.staleness, trace.n_aggregated
    (array([0, 1, 1, 1, 1, 1]), array([2, 2, 2, 2, 2, 2]))
    """
    if not isinstance(config, ClusterConfig):
        raise TypeError(f"config must be a ClusterConfig, got {type(config).__name__}")
    n = check_int("n_updates", n_updates, low=1)
    _check_memory(n, config)
    method = check_choice("method", method, METHODS)
    if progress is not None and not isinstance(progress, bool):
        raise TypeError(f"progress must be True, False or None, got {progress!r}")
    obstacle = _fast_path_obstacle(config)
    if method == "fast" and obstacle is not None:
        raise ValueError(f"method='fast' cannot serve this config: {obstacle}; use method='simpy'")
    fast = method == "fast" or (method == "auto" and obstacle is None)
    seq = root(rng)
    streams = _Streams(seq)
    scales = _scales(config, streams)
    with np.errstate(over="ignore"):  # an overflowing clock is reported below
        if fast:
            writer, read_version, apply_time = _run_fast(config, n, streams, scales)
        else:
            if progress is None and n < PROGRESS_FROM:
                progress = False  # short runs need no bar
            bar_options = {"unit_scale": True, "mininterval": 0.5}
            with progress_bar(n, progress, "simulate", "update", **bar_options) as bar:
                writer, read_version, apply_time = _run_simpy(config, n, streams, scales, bar)
    _check_clock(config, apply_time)
    return Trace(
        staleness=np.arange(n) - read_version,
        writer=writer,
        read_version=read_version,
        apply_time=apply_time,
        n_aggregated=np.full(n, config.group_size * config.buffer),
        config=config,
        seed=record(seq),
        origin="simulated",
    )


def multipliers(
    config: ClusterConfig, *, rng: np.random.Generator | int | None = None
) -> np.ndarray:
    """The time multiplier of each worker in the run :func:`simulate` makes with this ``rng``:
    ``time_multipliers`` (ones when None) times, with a ``slowdown`` law, each worker's draw from it.

    Returns
    -------
    float64 array, shape ``(n_workers,)``

    Examples
    --------
    >>> from asyncsim.distributions import Deterministic
    >>> multipliers(ClusterConfig(2, time_multipliers=(1, 3), slowdown=Deterministic(2.0)))
    array([2., 6.])
    """
    if not isinstance(config, ClusterConfig):
        raise TypeError(f"config must be a ClusterConfig, got {type(config).__name__}")
    scales = _scales(config, _Streams(root(rng)))
    return np.ones(config.n_workers) if scales is None else np.array(scales, dtype=np.float64)


# ------------------------------------------------------------------------------------ validation
def _check_distribution(name: str, value: object) -> None:
    if not isinstance(value, Distribution):
        raise TypeError(
            f"{name} must be a Distribution (Exponential, Deterministic, Uniform, Gamma, "
            f"LogNormal, Pareto, Empirical), got {value!r} ({type(value).__name__})"
        )


def _check_memory(n: int, config: ClusterConfig) -> None:
    """Refuse at once a run whose trace cannot fit in this machine's memory: about
    :data:`BYTES_PER_UPDATE` per arrival at the server (the five trace columns and what either path
    holds while it builds them), twice that with dropouts (the returns are events too)."""
    per_update = BYTES_PER_UPDATE * config.buffer * (2 if config.dropout > 0 else 1)
    needed = n * per_update
    available = _available_memory()
    if available is not None and needed > available:
        raise ValueError(
            f"n_updates = {n} needs about {_size(needed)} of memory ({per_update} bytes per "
            f"update), more than the {_size(available)} available here; simulate fewer updates"
        )


def _available_memory() -> int | None:
    """Bytes of memory available now (Linux ``MemAvailable``), else the physical memory, else None."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def _size(n_bytes: float) -> str:
    """``n_bytes`` in decimal units up to TB: ``1.6e+03 TB``, ``24.7 GB``."""
    power = min(max(int(np.log10(max(n_bytes, 1.0)) // 3), 0), 4)
    return f"{n_bytes / 1000**power:.3g} {('B', 'kB', 'MB', 'GB', 'TB')[power]}"


def _check_clock(config: ClusterConfig, apply_time: np.ndarray) -> None:
    """Raise when the simulated clock left float64 (apply times of inf), naming the time laws."""
    bad = np.flatnonzero(~np.isfinite(apply_time))
    if bad.size == 0:
        return
    laws = [
        f"{name} = {law!r} (mean {law.mean:g})"
        for name in (
            "compute",
            "pull_latency",
            "push_latency",
            "server_time",
            "slowdown",
            "downtime",
        )
        if (law := getattr(config, name)) is not None
    ]
    if config.time_multipliers is not None:
        laws.append(f"time_multipliers up to {max(config.time_multipliers):g}")
    raise ValueError(
        f"the simulated clock overflowed: apply times must stay finite (below "
        f"{np.finfo(np.float64).max:.3g}, the float64 range), got {apply_time[bad[0]]} from update "
        f"{bad[0]} of {apply_time.size} on; the time laws are too large: {'; '.join(laws)} "
        f"(choose a larger time unit)"
    )


def _resolve_groups(mode: str, m: int, n_groups: object) -> int:
    """The number of groups implied by ``mode``, checked against an explicit ``n_groups``."""
    if mode == "groups":
        if n_groups is None:
            raise ValueError("n_groups is required in mode 'groups': a divisor of n_workers")
        g = check_int("n_groups", n_groups, low=1, high=m)
        if m % g:
            divisors = [d for d in range(1, m + 1) if m % d == 0]
            raise ValueError(
                f"n_groups must divide n_workers = {m}, i.e. be one of {divisors}, got {g}"
            )
        return g
    implied = m if mode == "async" else 1
    if n_groups is not None and check_int("n_groups", n_groups) != implied:
        raise ValueError(
            f"n_groups must be {implied} (or None) in mode {mode!r} with n_workers = {m}, "
            f"got {n_groups}"
        )
    return implied


def _fast_path_obstacle(config: ClusterConfig) -> str | None:
    """Why the fast path cannot serve ``config``, or None when it can."""
    present = [
        n for n in ("pull_latency", "push_latency", "server_time") if getattr(config, n) is not None
    ]
    if present:
        return f"it has {' and '.join(present)}, which only the SimPy model simulates"
    return None


# ------------------------------------------------------------------------------- random streams
class _Streams:
    """The independent random streams of one run, keyed by value from its root (module docstring)."""

    def __init__(self, root: np.random.SeedSequence) -> None:
        self.root = root

    def worker(self, i: int, kind: str) -> np.random.Generator:
        """Worker ``i``'s generator for ``kind``: "compute", "pull" and "push" (labels 0, 1, 2),
        or a named stream ("slowdown", "dropout", "downtime")."""
        label = _STREAM_KINDS.index(kind) if kind in _STREAM_KINDS else kind
        return np.random.default_rng(stream(self.root, i, label))

    def server(self) -> np.random.Generator:
        """The server's generator (server times)."""
        return np.random.default_rng(stream(self.root, "server"))


def _scales(config: ClusterConfig, streams: _Streams) -> tuple[float, ...] | None:
    """Each worker's time multiplier (``time_multipliers`` times its slowdown draw), or None when
    every worker's is 1 by construction (no multipliers, no slowdown law): then compute draws are
    used as they are."""
    if config.slowdown is None:
        return config.time_multipliers
    base = config.time_multipliers or (1.0,) * config.n_workers
    law = config.slowdown
    return tuple(
        base[i] * float(law.sample(1, rng=streams.worker(i, "slowdown"))[0])
        for i in range(config.n_workers)
    )


class _GroupTimes:
    """Group ``j``'s compute times: each member's draws from ``compute`` times its multiplier, the
    elementwise max over members. ``take(count)`` returns the next ``count`` values."""

    def __init__(
        self, config: ClusterConfig, streams: _Streams, j: int, scales: tuple[float, ...] | None
    ) -> None:
        k = config.group_size
        self.law = config.compute
        self.members = [
            (streams.worker(i, "compute"), None if scales is None else scales[i])
            for i in range(j * k, (j + 1) * k)
        ]

    def take(self, count: int) -> np.ndarray:
        draws = [
            self.law.sample(count, rng=rng)
            if scale is None
            else scale * self.law.sample(count, rng=rng)
            for rng, scale in self.members
        ]
        return draws[0] if len(draws) == 1 else np.max(draws, axis=0)


class _Dropouts:
    """Group ``j``'s dropout decisions (uniform draws, a dropout when below ``config.dropout``) and
    its downtimes, each from its own stream of the group's first worker."""

    def __init__(self, config: ClusterConfig, streams: _Streams, j: int) -> None:
        first = j * config.group_size
        self.probability = config.dropout
        self.decisions = streams.worker(first, "dropout")
        self.downtimes = streams.worker(first, "downtime")
        self.law: Distribution = config.downtime  # type: ignore[assignment]

    def decide(self, count: int) -> np.ndarray:
        return self.decisions.random(count) < self.probability

    def down(self, count: int) -> np.ndarray:
        return self.law.sample(count, rng=self.downtimes)


def _block_sizes() -> Iterator[int]:
    """:data:`FIRST_BLOCK`, then doubling, up to :data:`BLOCK` values per draw."""
    size = min(FIRST_BLOCK, BLOCK)
    while True:
        yield size
        size = min(2 * size, BLOCK)


def _values(take: Callable[[int], np.ndarray]) -> Callable[[], Any]:
    """A function returning the next value of ``take``'s stream, one Python scalar at a time,
    drawn in blocks of :func:`_block_sizes`."""
    return chain.from_iterable(take(size).tolist() for size in _block_sizes()).__next__


# --------------------------------------------------------------------------------- progress
# --------------------------------------------------------------------------------- SimPy model
class _Tick(simpy.events.Event):
    """A timeout with an explicit priority: at equal times lower priorities are processed first."""

    def __init__(self, env: simpy.Environment, delay: float, priority: int) -> None:
        # Inlined Event.__init__ as simpy.Timeout does; a timeout is triggered at creation.
        self.env = env
        self.callbacks = []
        self._value = None
        self._ok = True
        env.schedule(self, priority, delay)  # type: ignore[arg-type]


def _run_simpy(
    config: ClusterConfig,
    n: int,
    streams: _Streams,
    scales: tuple[float, ...] | None,
    bar: Any = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The reference event model: (writer, read_version, apply_time) of the first ``n`` applies."""
    env = simpy.Environment()
    k, size = config.group_size, config.buffer
    writer: list[int] = []
    read_version: list[int] = []
    apply_time: list[float] = []
    buffered: list[int] = []  # the read versions of the gradients waiting in the server's buffer
    done = env.event()
    server = None if config.server_time is None else simpy.Resource(env, capacity=1)
    service = None
    if config.server_time is not None:
        server_law, server_rng = config.server_time, streams.server()
        service = _values(lambda count: server_law.sample(count, rng=server_rng))
    tick_every = max(1, n // 200)

    def latency(law: Distribution | None, j: int, kind: str) -> Callable[[], float] | None:
        if law is None:
            return None
        rng = streams.worker(j * k, kind)
        return _values(lambda count: law.sample(count, rng=rng))

    def group(j: int) -> Generator[simpy.events.Event, object, None]:
        compute = _values(_GroupTimes(config, streams, j, scales).take)
        pull = latency(config.pull_latency, j, "pull")
        push = latency(config.push_latency, j, "push")
        drops = _Dropouts(config, streams, j) if config.dropout > 0 else None
        drop = None if drops is None else _values(drops.decide)
        down = None if drops is None else _values(drops.down)
        priority = _FIRST_PRIORITY + j
        while True:
            if pull is not None:
                yield _Tick(env, pull(), priority)
            if server is None:
                read = len(writer)
            else:
                with server.request() as request:
                    yield request
                    read = len(writer)
            yield _Tick(env, compute(), priority)
            if push is not None:
                yield _Tick(env, push(), priority)
            if server is not None:
                request = server.request()
                yield request
            if size > 1:  # buffered: the K-th arrival applies them all, at their mean read
                buffered.append(read)
                read = (2 * sum(buffered) + size) // (2 * size) if len(buffered) == size else -1
                if read >= 0:
                    buffered.clear()
            if read >= 0:
                if server is not None:
                    yield _Tick(env, service(), priority)  # type: ignore[misc]
                writer.append(j)
                read_version.append(read)
                apply_time.append(env.now)
                if bar is not None and len(writer) % tick_every == 0:
                    bar.update(tick_every)
                if len(writer) == n:
                    done.succeed()
            if server is not None:
                server.release(request)
            if drop is not None and drop():
                yield _Tick(env, down(), priority)  # type: ignore[misc]

    for j in range(config.n_groups):  # type: ignore[arg-type]
        env.process(group(j))
    env.run(until=done)
    if bar is not None:
        bar.update(n - bar.n)
    # Writes at the instant of the n-th (processed before the stop event) are dropped.
    return (
        np.array(writer[:n], dtype=np.int64),
        np.array(read_version[:n], dtype=np.int64),
        np.array(apply_time[:n], dtype=np.float64),
    )


# ---------------------------------------------------------------------------------- fast path
class _Group:
    """What the fast path has drawn of group ``j``: compute times and, with dropouts, decisions and
    downtimes; and from them the group's events in order: each arrival at the server, followed by
    a return when the group dropped out after it."""

    def __init__(
        self, config: ClusterConfig, streams: _Streams, j: int, scales: tuple[float, ...] | None
    ) -> None:
        self.times = _GroupTimes(config, streams, j, scales)
        self.drops = _Dropouts(config, streams, j) if config.dropout > 0 else None
        self.compute: list[np.ndarray] = []
        self.dropped: list[np.ndarray] = []
        self.downtime: list[np.ndarray] = []
        self.arrivals = 0

    def draw(self, count: int) -> None:
        """Draw ``count`` more arrivals (a compute time each, and with dropouts their decisions
        and the downtimes of those that drop)."""
        self.compute.append(self.times.take(count))
        if self.drops is not None:
            dropped = self.drops.decide(count)
            self.dropped.append(dropped)
            self.downtime.append(self.drops.down(int(dropped.sum())))
        self.arrivals += count

    def events(self) -> tuple[np.ndarray, np.ndarray | None]:
        """Event times in order, and which are arrivals (None: all are).

        Arrival s happens at ``(r_{s-1} + c_s)`` and the group returns at ``r_s = w_s + d_s``, with
        ``d_s = 0`` when it stays; one cumulative sum over ``c_0, d_0, c_1, d_1, ...`` makes the
        additions SimPy makes, in its order (``w + 0.0 == w`` exactly)."""
        compute = np.concatenate(self.compute)
        if self.drops is None:
            return np.cumsum(compute), None
        dropped = np.concatenate(self.dropped)
        steps = np.zeros(2 * compute.size)
        steps[0::2] = compute
        steps[1::2][dropped] = np.concatenate(self.downtime)
        keep = np.ones(steps.size, dtype=bool)
        keep[1::2] = dropped
        return np.cumsum(steps)[keep], ~(np.arange(steps.size) % 2).astype(bool)[keep]


def _run_fast(
    config: ClusterConfig, n: int, streams: _Streams, scales: tuple[float, ...] | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The vectorized path (no latency, no server time): the same applies as :func:`_run_simpy`.

    Group j's events (arrivals, and returns after a dropout) happen at cumulative sums of its times
    (added in the order SimPy adds them, ``now + delay``); all events merge in the order (time,
    group id, count), the order in which SimPy processes them. A pull comes right after the group's
    previous event (its arrival, or its return) and reads the applies completed by then: the
    arrivals processed so far, integer-divided by the buffer size.
    """
    g = config.n_groups
    assert g is not None
    size = config.buffer
    wanted = n * size  # arrivals that make the n applies
    groups = [_Group(config, streams, j, scales) for j in range(g)]
    for group, count in zip(groups, _first_draws(config, scales, wanted), strict=True):
        group.draw(count)
    while True:
        events = [group.events() for group in groups]
        lengths = np.array([times.size for times, _ in events])
        flat = np.concatenate([times for times, _ in events])
        order = _merge_order(flat)
        rank = np.empty_like(order)
        rank[order] = np.arange(flat.size)
        last = np.cumsum(lengths) - 1
        if events[0][1] is None:  # every event is an arrival
            is_arrival = None
            arrived = None  # it would be rank + 1: every event is an arrival
            settled = n * size - 1 if flat.size >= wanted else flat.size
        else:
            is_arrival = np.concatenate([arrival for _, arrival in events])
            count = np.cumsum(is_arrival[order])
            arrived = count[rank]  # arrivals processed up to and including each event
            settled = int(np.searchsorted(count, wanted)) if count[-1] >= wanted else flat.size
        # A group's undrawn events come after its last drawn one; the first `wanted` arrivals (and
        # the reads they made) are settled once every group's last drawn event ranks at or after
        # the last of them.
        short = np.flatnonzero(rank[last] < settled)
        if short.size == 0:
            break
        for j in short:
            groups[j].draw(max(64, groups[j].arrivals // 4))
    # In layout order, a pull comes right after the group's previous event; a first pull reads 0.
    reads = np.empty_like(rank)
    if arrived is None:
        np.add(rank[:-1], 1, out=reads[1:])
        if size > 1:
            reads[1:] //= size
    else:
        reads[1:] = arrived[:-1] // size
    reads[0] = 0
    reads[last[:-1] + 1] = 0
    arrivals = order if is_arrival is None else order[is_arrival[order]]
    arrivals = arrivals[:wanted]
    completing = arrivals[size - 1 :: size]
    writer = np.searchsorted(last, completing)  # the group whose layout block holds the event
    if size == 1:
        read_version = reads[arrivals]
    else:
        total = reads[arrivals].reshape(n, size).sum(axis=1)
        read_version = (2 * total + size) // (2 * size)
    return writer, read_version, flat[completing]


def _first_draws(config: ClusterConfig, scales: tuple[float, ...] | None, wanted: int) -> list[int]:
    """Arrivals to draw first for each group: its expected share of ``wanted`` plus six standard
    deviations (its rate taken from its slowest member's mean time and its mean downtime)."""
    g = config.n_groups
    assert g is not None
    mult = np.ones(config.n_workers) if scales is None else np.asarray(scales)
    cycle = config.compute.mean * np.max(np.reshape(mult, (g, -1)), axis=1)
    if config.dropout > 0:
        cycle = cycle + config.dropout * config.downtime.mean  # type: ignore[union-attr]
    # A group that takes no time at all makes every arrival.
    rate = 1.0 / cycle if (cycle > 0).all() else (cycle <= 0).astype(np.float64)
    share = rate / rate.sum()
    expected = wanted * share
    return [int(x) for x in np.ceil(expected + 6.0 * np.sqrt(expected) + 1.0)]


def _merge_order(times: np.ndarray) -> np.ndarray:
    """Indices sorting ``times`` with equal times kept in layout order (group id, then count).

    The unstable sort is about twice as fast as the stable one on many sorted runs; its order is
    kept when no two times are equal (almost surely so under continuous laws).
    """
    order = np.argsort(times)
    ordered = times[order]
    if (ordered[1:] == ordered[:-1]).any():
        order = np.argsort(times, kind="stable")
    return order
