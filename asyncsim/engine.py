"""Stale-gradient SGD for B configurations in lockstep.

Update t reads parameter version ``v_t = max(t - τ_t, 0)`` from a ring buffer of past parameters,
evaluates the problem's gradient there (aggregated over the trace's gradient count), and applies the
transformation: ``w_{t+1} = w_t + update(g(w_{v_t}), state, w_t, context)`` [AbM]; theory/README.md §1.

The expected-dynamics mode replaces the gradient by its expectation over a staleness law,
``Σ_l q_l ∇f(w_{t-l})``: the exact expected recursion that the theory speaks of (quadratics only).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from asyncsim._validate import check_int, check_real, check_rng
from asyncsim.measure import momentum_estimate, momentum_estimator_init, momentum_estimator_update
from asyncsim.optim import GradientTransformation, record_of
from asyncsim.problems import Problem
from asyncsim.trace import Trace

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["History", "StalenessLaw", "run"]

#: Randomness drawn ahead per configuration, in float64 values, before the next block is drawn.
_DRAW_BUDGET = 1 << 22


@dataclass(frozen=True)
class StalenessLaw:
    """A staleness law ``q_l = P(τ = l)``, l = 0..L-1, for the expected-dynamics mode.

    >>> StalenessLaw.geometric(4).pmf[:3].round(6).tolist()
    [0.25, 0.1875, 0.140625]
    """

    pmf: np.ndarray

    def __post_init__(self) -> None:
        q = np.asarray(self.pmf, dtype=np.float64)
        if q.ndim != 1 or q.size == 0 or (q < 0).any() or not np.isfinite(q).all():
            raise ValueError(f"pmf must be a non-empty 1-D array of probabilities, got {q!r}")
        if abs(q.sum() - 1.0) > 1e-9:
            raise ValueError(f"pmf must sum to 1 (within 1e-9), got sum {q.sum()}")
        object.__setattr__(self, "pmf", q)

    @classmethod
    def geometric(cls, n_workers: float, *, tail: float = 1e-12) -> StalenessLaw:
        """The queueing model's law ``q_l = (1/M)(1 - 1/M)^l``, truncated where ``P(τ ≥ L) < tail``
        and renormalized. ``n_workers`` may be any real M ≥ 1 (μ_S = 1 - 1/M)."""
        m = check_real("n_workers", n_workers, low=1.0)
        check_real("tail", tail, low=0.0, high=1.0, low_open=True, high_open=True)
        mu_s = 1.0 - 1.0 / m
        length = 1 if mu_s == 0.0 else int(np.ceil(np.log(tail) / np.log(mu_s)))
        q = (1.0 - mu_s) * mu_s ** np.arange(max(length, 1))
        return cls(q / q.sum())


@dataclass(frozen=True, eq=False)
class History:
    """What a run recorded, at steps ``steps`` (R,) = number of updates applied (0 = the start).

    Attributes
    ----------
    steps : int64 (R,)
    loss : float64 (R, B)
        The problem's exact (or evaluation) loss.
    distance : float64 (R, B) or None
        ‖w - w*‖ where the optimum is known.
    values : dict of float64 (R, B)
        ``lr`` and ``momentum`` where the transformation has them, ``total_momentum`` (the worker-local
        estimate) where the trace has writers, and whatever else the transformation records.
    params : float64 (R, B, d) or None
        Only when requested.
    time : float64 (R, B)
        Simulated time at which the recorded version was written (0 at the start; NaN without a clock).
    diverged : bool (B,)
        Loss turned non-finite or exceeded the bound; the configuration was frozen from then on.
    diverged_at : int64 (B,)
        The step at which divergence was detected (-1 if never).
    final_params : float64 (B, d)
    seed : SeedSequence or sequence
        What made the configurations' randomness: the root seed sequence (configuration b draws from
        its b-th spawned child) or the B seeds given.
    """

    steps: np.ndarray
    loss: np.ndarray
    distance: np.ndarray | None
    values: dict[str, np.ndarray]
    params: np.ndarray | None
    time: np.ndarray
    diverged: np.ndarray
    diverged_at: np.ndarray
    final_params: np.ndarray
    seed: Any = None
    problem: str = ""

    def __getitem__(self, name: str) -> np.ndarray:
        return self.values[name]

    def to_frame(self) -> pd.DataFrame:
        """Long table: one row per recorded step and configuration."""
        import pandas as pd

        r, b = self.loss.shape
        columns = {
            "step": np.repeat(self.steps, b),
            "config": np.tile(np.arange(b), r),
            "loss": self.loss.ravel(),
            "time": self.time.ravel(),
        }
        if self.distance is not None:
            columns["distance"] = self.distance.ravel()
        columns |= {name: v.ravel() for name, v in self.values.items()}
        return pd.DataFrame(columns)


class _Context:
    """The step context handed to transformations; its (B,) rows are built only when asked for."""

    __slots__ = ("_engine", "read_params", "step")

    def __init__(self, engine: _Lockstep, step: int, read_params: np.ndarray) -> None:
        self._engine = engine
        self.step = step
        self.read_params = read_params

    @property
    def writer(self) -> np.ndarray:
        return self._engine.row(self._engine.writer, self.step)

    @property
    def n_aggregated(self) -> np.ndarray:
        return self._engine.row(self._engine.n_aggregated, self.step)

    def previous_read_params(self) -> np.ndarray:
        e = self._engine
        prev = np.maximum(e.row(e.previous_read, self.step), 0)
        return e.ring[prev % e.ring.shape[0], e.rows]

    def has_previous_read(self) -> np.ndarray:
        e = self._engine
        return e.row(e.previous_read, self.step) >= 0


class _Lockstep:
    """Per-step index tables for B configurations: shared (steps,) or per configuration (steps, B)."""

    def __init__(self, traces: list[Trace], steps: int, batch: int) -> None:
        self.batch = batch
        self.rows = np.arange(batch)
        shared = len(traces) == 1
        self.shared = shared

        def column(get) -> np.ndarray:
            cols = [get(tr)[:steps] for tr in traces]
            return cols[0] if shared else np.stack(cols, axis=1)

        self.read_version = column(lambda tr: tr.read_version)
        self.writer = column(lambda tr: tr.writer)
        self.n_aggregated = column(lambda tr: tr.n_aggregated)
        self.previous_read = column(lambda tr: tr.previous_read)
        self.apply_time = column(lambda tr: tr.apply_time)
        t = np.arange(steps) if shared else np.arange(steps)[:, None]
        # the oldest version a step needs: its read, and its writer's previous read (when there is one)
        oldest = np.minimum(
            self.read_version,
            np.where(self.previous_read >= 0, self.previous_read, self.read_version),
        )
        reach = np.max(t - oldest)
        self.ring_size = int(reach) + 2
        self.ring: np.ndarray = np.empty(0)

    def row(self, table: np.ndarray, step: int) -> np.ndarray:
        """Row ``step`` of a table as a (B,) array."""
        return np.full(self.batch, table[step]) if self.shared else table[step]


class _Streams(Sequence):
    """One independent generator per configuration (``SeedSequence.spawn``), or the B given ones,
    created on first use: spawning costs about 8 µs a configuration, and deterministic problems need
    none."""

    def __init__(self, rng: Any, batch: int) -> None:
        if isinstance(rng, Sequence) and not isinstance(rng, str) and len(rng) != batch:
            raise ValueError(f"rng must be one seed or a sequence of {batch} seeds, got {len(rng)}")
        if not isinstance(rng, Sequence | np.random.Generator | np.random.SeedSequence):
            rng = np.random.SeedSequence(rng)  # fixes the entropy now, also for rng=None
        self._rng, self._batch = rng, batch
        self._generators: list[np.random.Generator] | None = None

    @property
    def seed(self) -> Any:
        """What makes the streams again: the root seed sequence, or the B given seeds."""
        return self._rng

    def __len__(self) -> int:
        return self._batch

    def __getitem__(self, index: Any) -> Any:
        if self._generators is None:
            rng = self._rng
            if isinstance(rng, np.random.Generator):
                seqs: list[Any] = rng.spawn(self._batch)
            elif isinstance(rng, np.random.SeedSequence):
                seqs = rng.spawn(self._batch)
            else:
                seqs = [r if isinstance(r, np.random.Generator | np.random.SeedSequence)
                        else np.random.SeedSequence(r) for r in rng]  # fmt: skip
            self._generators = [
                s if isinstance(s, np.random.Generator) else np.random.default_rng(s) for s in seqs
            ]
        return self._generators[index]


def _resolve_batch(
    transform: GradientTransformation, sizes: dict[str, int | None], batch: Any
) -> int:
    sizes = sizes | {"transform hyperparameters": transform.batch}
    found = {name: n for name, n in sizes.items() if n is not None}
    if batch is not None:
        found["batch"] = check_int("batch", batch, low=1)
    if len(set(found.values())) > 1:
        raise ValueError(f"batch sizes disagree: {found}")
    return next(iter(found.values()), 1)


def run(
    problem: Problem,
    transform: GradientTransformation,
    trace: Trace | Sequence[Trace] | StalenessLaw | Sequence[StalenessLaw] | None,
    steps: int,
    *,
    rng: Any = None,
    record_every: int | None = 1,
    record_params: bool = False,
    divergence_factor: float = 1e6,
    check_every: int = 64,
    estimate_momentum: bool | None = None,
    momentum_beta: float = 0.99,
    batch: int | None = None,
    stop_at: float | None = None,
) -> History:
    """Run stale-gradient SGD for B configurations at once.

    Parameters
    ----------
    problem : Problem
        The objective and its batched gradient oracle.
    transform : GradientTransformation
        The optimizer; array hyperparameters of shape (B,) set the batch size.
    trace : Trace, sequence of B Traces, StalenessLaw, sequence of B laws, or None
        Staleness of each update (one trace shared by all configurations, or one per configuration,
        which may mix worker counts). A :class:`StalenessLaw` selects the expected-dynamics mode (the
        problem's gradient must be affine). None means no staleness.
    steps : int
        Updates to run (at most the trace's length).
    rng : None, int >= 0, Generator, SeedSequence, or a sequence of B of them
        Randomness of the gradients; each configuration draws from its own stream, so a batch equals
        the same configurations run alone with the matching seeds.
    record_every : int or None
        Record every this many steps (and at the first and last); None records only those two.
    record_params : bool
        Keep the parameters at every recorded step (memory R·B·d).
    divergence_factor : float
        A configuration whose loss turns non-finite or exceeds this factor times its initial loss is
        frozen and flagged. Checked at recorded steps and every ``check_every`` steps, together with a
        ``diverged`` (B,) flag the transformation's state may record (a tuner whose statistics turned
        non-finite).
    estimate_momentum : bool or None
        Record the worker-local total-momentum estimate (theory/README.md §9); default: where the trace
        has writers and the transformation records ``lr``.
    momentum_beta : float
        EMA factor β_m of the estimator, in [0, 1) (checked even when no estimate is recorded).
    batch : int or None
        The number of configurations, if nothing else implies it.
    stop_at : float or None
        Stop early, at a recorded step, once every configuration has diverged or has had a recorded
        loss at or below this value (the history then ends there); a finite number.

    Returns
    -------
    History
    """
    _check_problem(problem)
    steps = check_int("steps", steps, low=1)
    check_real("divergence_factor", divergence_factor, low=1.0, low_open=True)
    momentum_beta = check_real("momentum_beta", momentum_beta, low=0.0, high=1.0, high_open=True)
    stop_at = check_real("stop_at", stop_at, optional=True)
    rng = check_rng("rng", rng, sequence=True)
    check_every = check_int("check_every", check_every, low=1)
    if record_every is not None:
        record_every = check_int("record_every", record_every, low=1)
    if not isinstance(transform, GradientTransformation):
        raise TypeError(
            f"transform must be a GradientTransformation, got {type(transform).__name__}"
        )

    sources: list[Any] = (
        [trace] if trace is None or isinstance(trace, Trace | StalenessLaw) else list(trace)
    )
    expected = isinstance(sources[0], StalenessLaw)
    kind = StalenessLaw if expected else Trace
    if not all(isinstance(s, kind) for s in sources) and sources != [None]:
        raise TypeError(
            "trace must be Traces, StalenessLaws (not mixed), a single one of them, or None"
        )
    if sources == [None]:
        sources = [Trace.from_staleness(np.zeros(steps, dtype=np.int64))]
        kind = Trace
    rng_size = len(rng) if isinstance(rng, Sequence) and not isinstance(rng, str) else None
    trace_size = len(sources) if len(sources) > 1 else None
    b = _resolve_batch(transform, {"traces": trace_size, "rng": rng_size}, batch)
    if len(sources) not in (1, b):
        raise ValueError(f"trace must be one or {b} (the batch size), got {len(sources)}")
    if expected and not problem.affine_gradient:
        raise ValueError(
            f"the expected-dynamics mode needs an affine gradient (a quadratic); {problem.name!r} is not"
        )
    if not expected:
        short = [len(tr) for tr in sources if len(tr) < steps]
        if short:
            raise ValueError(f"steps must be <= the trace length ({min(short)}), got {steps}")

    streams = _Streams(rng, b)
    w0 = problem.init_params(b)
    table: Any = None  # the per-step index tables of a trace run (None in the expected mode)
    if expected:
        ring_size = max(s.pmf.size for s in sources)
    else:
        table = _Lockstep(sources, steps, b)
        ring_size = table.ring_size
    ring = np.zeros((ring_size, b, problem.dim))
    if expected:
        ring[:] = w0  # reads before the start see w_0
    else:
        ring[0] = w0  # a trace reads only versions already written
    if table is not None:
        table.ring = ring

    state = transform.init(w0)
    recorded = record_of(state)
    if estimate_momentum is None:
        estimate_momentum = (
            table is not None and bool((table.writer >= 0).all()) and "lr" in recorded
        )
    if estimate_momentum and (table is None or "lr" not in recorded):
        raise ValueError("estimate_momentum needs a trace with writers and a transform with an lr")
    estimator = None
    if estimate_momentum:
        estimator = momentum_estimator_init(w0, int(table.writer.max()) + 1, momentum_beta)

    loss0 = problem.loss(w0)
    bound = divergence_factor * loss0
    diverged = np.zeros(b, dtype=bool)
    diverged_at = np.full(b, -1, dtype=np.int64)
    frozen = False  # any configuration diverged (then updates are masked)
    record_steps = _record_steps(steps, record_every)
    rec: dict[str, list] = {"loss": [], "distance": [], "params": [], "time": []}
    rec_values: dict[str, list] = {}

    def record(t: int, w: np.ndarray, loss: np.ndarray) -> None:
        rec["loss"].append(loss)
        dist = problem.distance(w)
        rec["distance"].append(dist)
        if record_params:
            rec["params"].append(w.copy())
        clock = np.zeros(b) if t == 0 else table.row(table.apply_time, t - 1) if table else np.nan
        rec["time"].append(np.broadcast_to(clock, (b,)).astype(np.float64))
        values = record_of(state)
        if estimator is not None:
            values["total_momentum"] = np.where(diverged, np.nan, momentum_estimate(estimator))
        for name, v in values.items():
            rec_values.setdefault(name, []).append(np.broadcast_to(v, (b,)).astype(np.float64))

    def check(t: int, w: np.ndarray) -> np.ndarray:
        nonlocal frozen
        loss = problem.loss(w)
        newly = ~diverged & ~(loss <= bound)  # catches NaN
        flagged = record_of(state).get("diverged")
        if flagged is not None:
            newly |= ~diverged & np.asarray(flagged, dtype=bool)
        if newly.any():
            diverged[newly] = True
            diverged_at[newly] = t
            frozen = True
        return loss

    with np.errstate(all="ignore"):
        record(0, w0, loss0)
        if expected:
            laws = np.zeros((len(sources), ring_size))
            for i, s in enumerate(sources):
                laws[i, : s.pmf.size] = s.pmf
            # weight of ring slot s at step t is q[(t - s) mod R]: a roll of the reversed law.
            reversed_laws = laws[:, (-np.arange(ring_size)) % ring_size]
        block, block_start = None, 0
        k_max = 1 if table is None else int(np.max(table.n_aggregated))
        per_step = problem.dim * k_max
        chunk = max(1, min(steps, _DRAW_BUDGET // max(1, b * per_step)))
        rows = np.arange(b)
        next_record = 1
        reached = np.zeros(b, dtype=bool)
        if table is not None:
            read_slot = table.read_version % ring_size
            n_aggregated = table.n_aggregated
            if table.shared:  # Python ints index fastest
                read_slot, n_aggregated = read_slot.tolist(), n_aggregated.tolist()
        slots = list(ring)  # one view per ring slot, made once
        gradient, update = problem.gradient, transform.update
        next_at = record_steps[next_record] if len(record_steps) > 1 else -1
        for t in range(steps):
            cur = slots[t % ring_size]
            if expected:
                weights = np.roll(reversed_laws, t, axis=1)
                if weights.shape[0] == 1:
                    mean_read = np.tensordot(weights[0], ring, axes=(0, 0))
                else:
                    mean_read = np.einsum("bs,sbd->bd", weights, ring)
                grads = problem.mean_gradient(mean_read)
                context = None
            else:
                if t - block_start >= chunk or t == 0:
                    block = problem.draw(streams, min(chunk, steps - t), k_max)
                    block_start = t
                read = slots[read_slot[t]] if table.shared else ring[read_slot[t], rows]
                noise = None if block is None else block[:, t - block_start]
                grads = gradient(read, noise, n_aggregated[t])
                context = _Context(table, t, read)
            updates, state = update(grads, state, cur, context)
            if frozen:
                updates = np.where(diverged[:, None], 0.0, updates)
            new = slots[(t + 1) % ring_size]
            np.add(cur, updates, out=new)
            if estimator is not None:
                lr = record_of(state)["lr"]
                estimator = momentum_estimator_update(estimator, context, grads, lr)
            if t + 1 == next_at:
                loss = check(t + 1, new)
                record(t + 1, new, loss)
                next_record += 1
                next_at = record_steps[next_record] if next_record < len(record_steps) else -1
                if stop_at is not None:
                    reached |= loss <= stop_at
                    if (reached | diverged).all():
                        steps = t + 1
                        break
            elif (t + 1) % check_every == 0:
                check(t + 1, new)

    final = ring[steps % ring_size].copy()
    return History(
        steps=np.asarray(record_steps[:next_record], dtype=np.int64),
        loss=np.array(rec["loss"]),
        distance=None if rec["distance"][0] is None else np.array(rec["distance"]),
        values={name: np.array(v) for name, v in rec_values.items()},
        params=np.array(rec["params"]) if record_params else None,
        time=np.array(rec["time"]),
        diverged=diverged,
        diverged_at=diverged_at,
        final_params=final,
        seed=streams.seed,
        problem=problem.name,
    )


def _check_problem(problem: object) -> None:
    if isinstance(problem, Problem):
        return
    if isinstance(problem, str):
        raise TypeError(
            f"problem must be a Problem instance, got the name {problem!r} (str); build the problem "
            f"with make_problem({problem!r})"
        )
    raise TypeError(
        f"problem must be a Problem instance (e.g. make_problem('nq50')), got {problem!r} "
        f"({type(problem).__name__})"
    )


def _record_steps(steps: int, every: int | None) -> list[int]:
    """0, every, 2·every, ... and always the last step."""
    points = list(range(0, steps + 1, every)) if every else [0]
    if points[-1] != steps:
        points.append(steps)
    return points
