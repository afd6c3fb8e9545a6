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
2. **Compute.** Every member computes a gradient: worker i takes ``time_multipliers[i] * x``, with
   ``x`` drawn from ``compute``; the group is done when its slowest member is (max over members).
3. **Push.** The aggregated gradient (k of them) travels for ``push_latency``.
4. **Apply.** The server, a SimPy ``Resource`` of capacity 1 served first come first served,
   holds it for ``server_time``; the apply completes at the end of that service. That is a
   *write*: update t (0-based) is the t-th write; its staleness is ``t - read_version``, the writes
   by other groups between its read and its write. The group then pulls again (step 1), so without
   latency and server time it reads the version it has just written, ``read_version = t + 1``.

Without ``server_time`` the server is no Resource at all: pulls and applies take no time and,
since the events of one instant are processed one after another, they would never find it busy.

Events at equal times are processed in order of group id, each group's events at that time as one
block (group j's timeouts carry the SimPy priority ``2 + j``, after SimPy's own urgent and normal
events). So with deterministic times simultaneous finishes are applied lowest id first, and a
group whose compute took no time writes again before the next group's write at that instant.

Random streams
--------------
``rng`` becomes one root seed sequence (the rules of :mod:`asyncsim._rng`), recorded on the trace as
``Trace.seed``. Streams are keyed by value from it: worker i's compute, pull and push streams are
``stream(root, i, 0)``, ``stream(root, i, 1)`` and ``stream(root, i, 2)``, and the server time draws
from ``stream(root, "server")``; adding a worker changes no other worker's stream. A group's pull
and push latencies are drawn from the streams of its first worker. Every stream is consumed in blocks
of :data:`BLOCK` values in the order of use, through the same helpers in both implementations, which
is what makes their traces identical.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from itertools import chain

import numpy as np
import simpy
import simpy.events

from asyncsim._rng import record, root, stream
from asyncsim._validate import check_array, check_choice, check_int
from asyncsim.distributions import Distribution, Exponential
from asyncsim.trace import Trace

__all__ = ["BLOCK", "MODES", "ClusterConfig", "simulate"]

MODES = ("async", "sync", "groups")
"""Execution modes of :class:`ClusterConfig`."""

METHODS = ("auto", "simpy", "fast")
"""Implementations :func:`simulate` can use."""

BYTES_PER_UPDATE = 160
"""Memory one simulated update takes at its peak (the trace's five 8-byte columns, the SimPy path's
Python lists or the fast path's sort arrays; measured with tracemalloc at M = 16: 138 bytes on the
SimPy path, 74 on the fast path): the estimate :func:`simulate` checks before it starts."""

BLOCK = 4096
"""Values drawn per call from each random stream (both implementations use the same blocks)."""

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
        ``Exponential(1.0)``.
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

    Raises
    ------
    ValueError
        On a value out of range, naming the parameter, the value and the allowed range.
    TypeError
        When a time law is not a :class:`~asyncsim.distributions.Distribution`.

    Examples
    --------
    >>> from asyncsim import Uniform
    >>> ClusterConfig(8, mode="groups", n_groups=4).group_size
    2
    >>> ClusterConfig(4, compute=Uniform(0.9, 1.1), time_multipliers=[1, 1, 1, 4]).time_multipliers
    (1.0, 1.0, 1.0, 4.0)
    """

    n_workers: int
    compute: Distribution = field(default_factory=Exponential)
    time_multipliers: tuple[float, ...] | None = None
    pull_latency: Distribution | None = None
    push_latency: Distribution | None = None
    server_time: Distribution | None = None
    mode: str = "async"
    n_groups: int | None = None

    def __post_init__(self) -> None:
        m = check_int("n_workers", self.n_workers, low=1)
        object.__setattr__(self, "n_workers", m)
        _check_distribution("compute", self.compute)
        if not self.compute.mean > 0:
            raise ValueError(
                f"compute must have a mean time in (0, inf), got {self.compute!r} "
                f"with mean {self.compute.mean}"
            )
        for name in ("pull_latency", "push_latency", "server_time"):
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
        object.__setattr__(self, "n_groups", _resolve_groups(mode, m, self.n_groups))

    @property
    def group_size(self) -> int:
        """Workers per group, k = M/g (gradients aggregated per update)."""
        return self.n_workers // self.n_groups  # type: ignore[operator]


def simulate(
    config: ClusterConfig,
    n_updates: int,
    *,
    rng: np.random.Generator | int | None = None,
    method: str = "auto",
) -> Trace:
    """Run the cluster until ``n_updates`` applies have completed and return their trace.

    Parameters
    ----------
    config : ClusterConfig
        The cluster.
    n_updates : int
        Number of updates (writes) to record, ``>= 1``.
    rng : None, int >= 0, numpy.random.SeedSequence or numpy.random.Generator
        Source of randomness: one root seed sequence, from which the worker and server streams are
        keyed by value (see the module docstring).
    method : {"auto", "simpy", "fast"}
        ``"simpy"`` runs the reference event model; ``"fast"`` the vectorized path, which gives the
        identical trace but serves only configs without latency and server time (else ValueError);
        ``"auto"`` takes the fast path where it applies.

    Returns
    -------
    Trace
        Columns of shape ``(n_updates,)`` in order of apply; ``config`` is ``config`` and ``seed``
        the :class:`~asyncsim._rng.SeedRecord` of the root, which makes the same trace again.

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
    """
    if not isinstance(config, ClusterConfig):
        raise TypeError(f"config must be a ClusterConfig, got {type(config).__name__}")
    n = check_int("n_updates", n_updates, low=1)
    _check_memory(n)
    method = check_choice("method", method, METHODS)
    obstacle = _fast_path_obstacle(config)
    if method == "fast" and obstacle is not None:
        raise ValueError(f"method='fast' cannot serve this config: {obstacle}; use method='simpy'")
    fast = method == "fast" or (method == "auto" and obstacle is None)
    seq = root(rng)
    streams = _Streams(seq)
    with np.errstate(over="ignore"):  # an overflowing clock is reported below
        writer, read_version, apply_time = (_run_fast if fast else _run_simpy)(config, n, streams)
    _check_clock(config, apply_time)
    return Trace(
        staleness=np.arange(n) - read_version,
        writer=writer,
        read_version=read_version,
        apply_time=apply_time,
        n_aggregated=np.full(n, config.group_size),
        config=config,
        seed=record(seq),
    )


# ------------------------------------------------------------------------------------ validation
def _check_distribution(name: str, value: object) -> None:
    if not isinstance(value, Distribution):
        raise TypeError(
            f"{name} must be a Distribution (Exponential, Deterministic, Uniform, Gamma, "
            f"LogNormal, Empirical), got {value!r} ({type(value).__name__})"
        )


def _check_memory(n: int) -> None:
    """Refuse at once a run whose trace cannot fit in this machine's memory: about
    :data:`BYTES_PER_UPDATE` per update (the five trace columns and what either path holds while it
    builds them)."""
    needed = n * BYTES_PER_UPDATE
    available = _available_memory()
    if available is not None and needed > available:
        raise ValueError(
            f"n_updates = {n} needs about {_size(needed)} of memory ({BYTES_PER_UPDATE} bytes per "
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
        for name in ("compute", "pull_latency", "push_latency", "server_time")
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
        """Worker ``i``'s generator for ``kind`` in ("compute", "pull", "push")."""
        return np.random.default_rng(stream(self.root, i, _STREAM_KINDS.index(kind)))

    def server(self) -> np.random.Generator:
        """The server's generator (server times)."""
        return np.random.default_rng(stream(self.root, "server"))


def _blocks(
    law: Distribution, rng: np.random.Generator, scale: float | None = None
) -> Iterator[np.ndarray]:
    """Endless blocks of :data:`BLOCK` draws from ``law``, each multiplied by ``scale`` if given."""
    while True:
        block = law.sample(BLOCK, rng=rng)
        yield block if scale is None else scale * block


def _group_blocks(config: ClusterConfig, streams: _Streams, j: int) -> Iterator[np.ndarray]:
    """Endless blocks of group ``j``'s compute times: elementwise max over its members' times."""
    k = config.group_size
    mult = config.time_multipliers
    members = [
        _blocks(config.compute, streams.worker(i, "compute"), None if mult is None else mult[i])
        for i in range(j * k, (j + 1) * k)
    ]
    if k == 1:
        return members[0]
    return (np.max(blocks, axis=0) for blocks in zip(*members, strict=True))


def _values(blocks: Iterator[np.ndarray]) -> Callable[[], float]:
    """A function returning the next value of a block stream, one Python float at a time."""
    return chain.from_iterable(block.tolist() for block in blocks).__next__


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
    config: ClusterConfig, n: int, streams: _Streams
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The reference event model: (writer, read_version, apply_time) of the first ``n`` writes."""
    env = simpy.Environment()
    k = config.group_size
    writer: list[int] = []
    read_version: list[int] = []
    apply_time: list[float] = []
    done = env.event()
    server = None if config.server_time is None else simpy.Resource(env, capacity=1)
    service = (
        None
        if config.server_time is None
        else _values(_blocks(config.server_time, streams.server()))
    )

    def latency(law: Distribution | None, j: int, kind: str) -> Callable[[], float] | None:
        return None if law is None else _values(_blocks(law, streams.worker(j * k, kind)))

    def group(j: int) -> Generator[simpy.events.Event, object, None]:
        compute = _values(_group_blocks(config, streams, j))
        pull = latency(config.pull_latency, j, "pull")
        push = latency(config.push_latency, j, "push")
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
                yield _Tick(env, service(), priority)  # type: ignore[misc]
                server.release(request)
            writer.append(j)
            read_version.append(read)
            apply_time.append(env.now)
            if len(writer) == n:
                done.succeed()

    for j in range(config.n_groups):  # type: ignore[arg-type]
        env.process(group(j))
    env.run(until=done)
    # Writes at the instant of the n-th (processed before the stop event) are dropped.
    return (
        np.array(writer[:n], dtype=np.int64),
        np.array(read_version[:n], dtype=np.int64),
        np.array(apply_time[:n], dtype=np.float64),
    )


# ---------------------------------------------------------------------------------- fast path
def _run_fast(
    config: ClusterConfig, n: int, streams: _Streams
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The vectorized path (no latency, no server time): the same writes as :func:`_run_simpy`.

    Group j writes at the cumulative sums of its compute times (added in the order SimPy adds them,
    ``now + delay``), reads right after each of its writes, and all writes merge in the order
    (time, group id, count), the order in which SimPy processes them.
    """
    g = config.n_groups
    assert g is not None
    sources = [_group_blocks(config, streams, j) for j in range(g)]
    mult = np.ones(config.n_workers) if config.time_multipliers is None else config.time_multipliers
    # Expected share of the writes per group (its rate, taking its slowest member's mean).
    rate = 1.0 / np.max(np.reshape(mult, (g, -1)), axis=1)
    expected = n * rate / rate.sum()
    wanted = np.ceil((expected + 6.0 * np.sqrt(expected) + 1.0) / BLOCK).astype(int)
    drawn: list[list[np.ndarray]] = [[next(sources[j]) for _ in range(wanted[j])] for j in range(g)]
    while True:
        times = [np.cumsum(np.concatenate(blocks)) for blocks in drawn]
        lengths = np.array([t.size for t in times])
        flat = np.concatenate(times)
        order = _merge_order(flat)
        rank = np.empty_like(order)
        rank[order] = np.arange(flat.size)
        last = np.cumsum(lengths) - 1
        # A group's undrawn writes come after its last drawn one; the first n merged writes are
        # settled once every group's last drawn write ranks n - 1 or later.
        short = np.flatnonzero(rank[last] < n - 1)
        if short.size == 0:
            break
        for j in short:
            drawn[j].extend(next(sources[j]) for _ in range(max(1, len(drawn[j]) // 4)))
    # In layout order, a write reads right after the group's previous write; a first reads 0.
    read_after = np.empty_like(rank)
    read_after[1:] = rank[:-1] + 1
    read_after[0] = 0
    read_after[last[:-1] + 1] = 0
    first = order[:n]
    writer = np.repeat(np.arange(g), lengths)[first]
    return writer, read_after[first], flat[first]


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
