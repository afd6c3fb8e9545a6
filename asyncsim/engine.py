"""Stale-gradient SGD for B configurations in lockstep.

Update t reads parameter version ``v_t = max(t - τ_t, 0)`` from a store of past parameters,
evaluates the problem's gradient there (aggregated over the trace's gradient count), and applies the
transformation: ``w_{t+1} = w_t + update(g(w_{v_t}), state, w_t, context)`` [AbM]; theory/README.md §1.

The expected-dynamics mode replaces the gradient by its expectation over a staleness law,
``Σ_l q_l ∇f(w_{t-l})``: the exact expected recursion that the theory speaks of (quadratics only).

:func:`run` sets up (checks, the batch size, the version store and its index tables, the random
streams), runs one of the loops (:func:`_trace_loop`, :func:`_fused_loop` or :func:`_expected_loop`),
and returns a :class:`History`. After an update the loops hand the new parameters to a
:class:`_Recorder`, at the steps it asks for; it records on its schedule and asks its
:class:`_Divergence` which configurations to freeze.

The store holds only the versions still to be read (:func:`_version_slots`: at most 2M + 2 for M
workers, whatever the largest staleness). When every configuration draws from one stream (common
random numbers, as a sweep chunk does), a problem that takes one block for all
(``broadcast_randomness``) gets one draw, not B. Where numba is installed (the ``fast`` extra),
:mod:`asyncsim._kernels` runs heavy ball and Nesterov on the diagonal quadratics as a compiled loop
between two visits of the recorder (:func:`_fused_loop`, which makes its visits many at a time), and
their momentum update after any other gradient in one pass: the same operations in the same order as
the NumPy path, so the same results to the last bit (``ASYNCSIM_KERNELS=numpy`` turns the kernels
off).

Arrivals and versions. The trace's events are *arrivals*: gradients reaching the server, one per
step, and the History's steps count them (gradients computed; the clock is the arrival's). A method
may hold an arrival back, discarding it (delay thresholding) or buffering it (FedBuff): its state
then says, in a ``published`` attribute (:func:`~asyncsim.optim.published_of`), which arrivals
moved the parameters, and returns a zero update for the others. The store still takes one entry
per arrival, holding the same parameters as the one before where nothing was published, so a worker
reading between publications reads the last published parameters, as from a real server; what
advances only on publication is the count of published versions kept beside each entry, from which
the τ a method sees (``context.staleness``) is counted: published versions between its worker's
read and the arrival. A transformation with a ``read_point`` (DANA's look-ahead) has its read points
kept in a second store with the same slots, computed once per entry from the state at that version;
every read of that version, and the writer's previous read, are taken from it.
"""

from __future__ import annotations

import bisect
import dataclasses
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from numbers import Integral, Real
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from asyncsim._kernels import (
    compiled_assign_slots,
    momentum_apply,
    quadratic_momentum,
    quadratic_momentum_flat,
)
from asyncsim._rng import SeedRecord, record, root, stream
from asyncsim._validate import check_int, check_real, check_rng, read_npz
from asyncsim.measure import (
    MomentumEstimate,
    momentum_estimate,
    momentum_estimator_init,
    momentum_estimator_update,
)
from asyncsim.optim import GradientTransformation, MomentumState, published_of, record_of
from asyncsim.problems import NoisyQuadratic, Problem
from asyncsim.trace import StalenessLaw, Trace

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["BLOWUP_FACTOR", "PROBLEM_INTERFACE", "History", "check_problem", "loss_blew_up", "run"]

#: Randomness drawn ahead per configuration, in float64 values, before the next block is drawn.
_DRAW_BUDGET = 1 << 22
#: Parameters the fused loop keeps for visits it makes together (:class:`_DeferredVisits`), in float64
#: values: 1 MB, in cache (an nq50 chunk recording every step, B = 261: 0.36 s; 4 MB, 0.42 s; 128 kB,
#: one visit at a time, 0.9 s).
_DEFERRED_BUDGET = 1 << 17
#: Below this dimension a noiseless diagonal run with one shared trace takes the flat kernel (one loop
#: over B·d per step; measured: 3x at d = 10, even at d = 50, slower from d = 100).
_FLAT_DIM = 32


# ------------------------------------------------------------------------------------------ history
BLOWUP_FACTOR = 10.0
"""A loss above this factor times the initial one is a blow-up (:attr:`History.blew_up`)."""


def loss_blew_up(loss: Any, initial: Any, factor: float = BLOWUP_FACTOR) -> Any:
    """Whether ``loss`` exceeds ``initial + (factor - 1) |initial|`` or is not finite, elementwise:
    a blow-up the loss shows, far below the divergence bound (10x against 1e6x by default)."""
    return (loss > initial + (factor - 1.0) * abs(initial)) | (loss != loss)  # NaN != NaN


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
    seed : tuple of B SeedRecord
        The seed sequence each configuration's gradient randomness drew from:
        ``stream(root(rng), b)`` for one ``rng``, ``root(rng[b])`` for a sequence of B
        (:mod:`asyncsim._rng`); ``seed[b].sequence()`` makes configuration b's stream again.
    problem : str
        The problem's name.
    config : dict
        What made the run, as JSON-able values: ``problem`` (its name, class and parameters; arrays as
        shape, range and digest), ``transform`` (name and hyperparameters, see
        :class:`~asyncsim.optim.GradientTransformation`), ``staleness`` (``kind`` "trace", "law" or
        "none", with each trace's length, mean, cluster config and seed record, or each law's length
        and mean), ``steps`` (asked for) and ``options`` (the other arguments of :func:`run`, with
        ``batch`` and ``estimate_momentum`` as resolved). The seeds are :attr:`seed`.
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
    seed: tuple[SeedRecord, ...] = ()
    problem: str = ""
    config: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.values[name]

    @property
    def blew_up(self) -> np.ndarray:
        """bool (B,): a recorded loss exceeded :data:`BLOWUP_FACTOR` (10) times the initial loss or
        was not finite (:func:`loss_blew_up`), whether or not it reached the divergence bound and
        froze the configuration (``diverged``). YellowFin from α₀ = 1 on the digits MLP at M = 16
        takes the loss from 2.3 to 40-70 and back: blown up, not diverged."""
        return loss_blew_up(self.loss, self.loss[0]).any(axis=0)

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

    # ---------------------------------------------------------------- files
    def save(self, path: str | Path) -> Path:
        """Write the history to ``path`` (``.npz``); return the path.

        The archive holds every array (``values`` under ``value.<name>``), the seed records as text
        (``str(record)``, one per configuration) and ``config`` as a JSON string.
        """
        path = _npz_path(path)
        arrays: dict[str, np.ndarray] = {
            "format": np.array(_HISTORY_FORMAT),
            "problem": np.array(self.problem),
            "config": np.array(json.dumps(self.config)),
            "seed": np.array([str(s) for s in self.seed], dtype=str),
        }
        for name in _HISTORY_ARRAYS:
            value = getattr(self, name)
            if value is not None:
                arrays[name] = value
        arrays |= {f"value.{name}": v for name, v in self.values.items()}
        np.savez(path, **arrays)  # type: ignore[arg-type]
        return path

    @classmethod
    def load(cls, path: str | Path) -> History:
        """Read a history written by :meth:`save`.

        Raises FileNotFoundError for a missing file, and ValueError naming the path and the fault for
        a file that is not a saved history: not an npz archive, a missing entry, arrays whose shapes
        disagree, or a seed or config that does not parse.

        >>> import tempfile, pathlib
        >>> from asyncsim.optim import sgd
        >>> from asyncsim.problems import make_problem
        >>> hist = run(make_problem("q10"), sgd(0.1), None, 20, rng=0, record_every=10)
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     again = History.load(hist.save(pathlib.Path(tmp) / "run.npz"))
        >>> again.steps, again.config["transform"], str(again.seed[0])
        (array([ 0, 10, 20]), {'name': 'sgd', 'hyperparameters': {'lr': 0.1}, 'batch': None}, '0/0')
        """
        path = _npz_path(path)
        data = read_npz(path, "History.save")
        missing = [k for k in ("format", "config", "seed", *_HISTORY_REQUIRED) if k not in data]
        if missing:
            raise ValueError(f"{path} is not a saved History: it lacks {', '.join(missing)}")
        if str(data["format"]) != _HISTORY_FORMAT:
            raise ValueError(
                f"{path} is not a saved History: format {str(data['format'])!r}, expected "
                f"{_HISTORY_FORMAT!r}"
            )
        arrays = {name: data.get(name) for name in _HISTORY_ARRAYS}
        values = {k.removeprefix("value."): v for k, v in data.items() if k.startswith("value.")}
        for name, ndim in (("steps", 1), ("loss", 2), ("final_params", 2)):
            if arrays[name].ndim != ndim:
                raise ValueError(
                    f"{path} is not a valid History: {name} has shape {arrays[name].shape}, "
                    f"expected {ndim} axes"
                )
        (r,), (b, d) = arrays["steps"].shape, arrays["final_params"].shape
        expected_shapes = {
            "loss": (r, b),
            "distance": (r, b),
            "params": (r, b, d),
            "time": (r, b),
            "diverged": (b,),
            "diverged_at": (b,),
        } | {f"value.{name}": (r, b) for name in values}
        for name, shape in expected_shapes.items():
            found = data.get(name)
            if found is not None and found.shape != shape:
                raise ValueError(
                    f"{path} is not a valid History: {name} has shape {found.shape}, expected "
                    f"{shape} (R = {r} recorded steps, B = {b} configurations, d = {d})"
                )
        if data["seed"].shape not in ((b,), (0,)):
            raise ValueError(
                f"{path} is not a valid History: seed holds {data['seed'].size} records, expected {b}"
            )
        try:
            seed = tuple(SeedRecord.parse(str(s)) for s in data["seed"])
            config = json.loads(str(data["config"]))
        except ValueError as err:
            raise ValueError(f"{path} is not a valid History: {err}") from None
        problem = str(data["problem"]) if "problem" in data else ""
        return cls(**arrays, values=values, seed=seed, problem=problem, config=config)


_HISTORY_FORMAT = "asyncsim.History/1"
_HISTORY_ARRAYS = (
    "steps",
    "loss",
    "distance",
    "params",
    "time",
    "diverged",
    "diverged_at",
    "final_params",
)
_HISTORY_REQUIRED = ("steps", "loss", "time", "diverged", "diverged_at", "final_params")


def _npz_path(path: str | Path) -> Path:
    path = Path(path)
    if path.suffix != ".npz":
        raise ValueError(f"path must end in .npz (a History is saved as npz), got {str(path)!r}")
    return path


# ------------------------------------------------------------------------------------------ run
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
    stop_each: bool = False,
) -> History:
    """Run stale-gradient SGD for B configurations at once.

    Parameters
    ----------
    problem : Problem
        The objective and its batched gradient oracle: a :class:`~asyncsim.problems.Problem`, or any
        object with the attributes of :data:`PROBLEM_INTERFACE`.
    transform : GradientTransformation
        The optimizer; array hyperparameters of shape (B,) set the batch size.
    trace : Trace, sequence of B Traces, StalenessLaw, sequence of B laws, or None
        Staleness of each update (one trace shared by all configurations, or one per configuration,
        which may mix worker counts). A :class:`~asyncsim.trace.StalenessLaw` selects the
        expected-dynamics mode (the problem's gradient must be affine). None means no staleness.
    steps : int
        Updates to run (at most the trace's length).
    rng : None, int >= 0, Generator, SeedSequence, or a sequence of B of them
        Randomness of the gradients. One ``rng`` is a root (:func:`asyncsim._rng.root`) and
        configuration b draws from ``stream(root, b)``; a sequence gives configuration b the root of
        ``rng[b]`` (common random numbers: a batch equals the same configurations run alone with the
        matching seeds). ``History.seed`` records each configuration's stream.
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
    stop_each : bool
        With ``stop_at``: stop each configuration on its own, at the first recorded step where its
        loss is at or below ``stop_at`` or once it has diverged. It keeps its parameters from then,
        its later rows repeat its row at the stop (``loss``, ``distance``, ``values``), and its
        gradients and losses are no longer computed: a sweep that only needs where each
        configuration stops pays for no step after it. The other configurations' histories are
        those of a run without it (to rounding where a matrix product over fewer rows sums in
        another order, as the dense quadratic's).

    Returns
    -------
    History
        Its ``config`` says what made it, its ``seed`` which streams the configurations drew.

    Examples
    --------
    Two step sizes on a noiseless quadratic, no staleness:

    >>> from asyncsim.optim import sgd
    >>> from asyncsim.problems import make_problem
    >>> hist = run(make_problem("q10"), sgd([0.1, 1.0]), None, 100, record_every=50)
    >>> hist.steps, hist.loss[-1].round(4), hist.config["transform"]["name"]
    (array([  0,  50, 100]), array([0.0034, 0.    ]), 'sgd')
    """
    check_problem(problem)
    steps = check_int("steps", steps, low=1)
    check_real("divergence_factor", divergence_factor, low=1.0, low_open=True)
    momentum_beta = check_real("momentum_beta", momentum_beta, low=0.0, high=1.0, high_open=True)
    stop_at = check_real("stop_at", stop_at, optional=True)
    if not isinstance(stop_each, bool):
        raise TypeError(f"stop_each must be a bool, got {type(stop_each).__name__}")
    if stop_each and stop_at is None:
        raise ValueError("stop_each=True needs stop_at: the loss at which a configuration stops")
    rng = check_rng("rng", rng, sequence=True)
    check_every = check_int("check_every", check_every, low=1)
    if record_every is not None:
        record_every = check_int("record_every", record_every, low=1)
    if not isinstance(transform, GradientTransformation):
        raise TypeError(
            f"transform must be a GradientTransformation, got {type(transform).__name__}"
        )
    sources, expected = _staleness_sources(trace, steps)
    _check_needs(transform, sources, expected)
    sizes = {
        "traces": len(sources) if len(sources) > 1 else None,
        "rng": len(rng) if isinstance(rng, list) else None,
    }
    b = _resolve_batch(transform, sizes, batch)
    _check_sources(problem, sources, expected, steps, b)

    streams = _Streams(rng, b)
    w0 = problem.init_params(b)
    state = transform.init(w0)
    table = None if expected else _Lockstep(sources, steps, w0)
    if table is not None:
        table.track(transform, state)
    estimate_momentum = _resolve_estimate(estimate_momentum, table, record_of(state))
    estimator = None
    if estimate_momentum:
        assert table is not None  # _resolve_estimate makes sure
        estimator = momentum_estimator_init(w0, int(table.writer.max()) + 1, momentum_beta)
    loss0 = problem.loss(w0)
    divergence = _Divergence(problem.loss, divergence_factor * loss0)
    recorder = _Recorder(
        divergence,
        problem.distance,
        b,
        steps=steps,
        every=record_every,
        check_every=check_every,
        stop_at=stop_at,
        stop_each=stop_each,
        record_params=record_params,
        clock=None if table is None else table.apply_time,
    )

    with np.errstate(all="ignore"):
        recorder.record(0, w0, loss0, state, estimator)
        if table is None:
            ring = _expected_ring(w0, sources)
            done = _expected_loop(problem, transform.update, state, ring, sources, steps, recorder)
            final = ring[done % ring.shape[0]]
        else:
            kernel = _fused_kernel(problem, transform, state, estimator)
            if kernel is None:
                done = _trace_loop(
                    problem, transform, state, table, streams, steps, recorder, estimator
                )
            else:
                done = _fused_loop(
                    kernel, problem, transform, state, table, streams, steps, recorder
                )
            final = table.ring[table.slot[done]]

    options = {
        "batch": b,
        "record_every": record_every,
        "record_params": bool(record_params),
        "divergence_factor": float(divergence_factor),
        "check_every": check_every,
        "estimate_momentum": estimate_momentum,
        "momentum_beta": momentum_beta,
        "stop_at": stop_at,
        **({"stop_each": True} if stop_each else {}),  # histories stored before it stay readable
    }
    return History(
        **recorder.result(),
        diverged=divergence.flags,
        diverged_at=divergence.at,
        final_params=final.copy(),
        seed=streams.seed,
        problem=problem.name,
        config=_config(problem, transform, trace, sources, steps, options),
    )


# ------------------------------------------------------------------------------------------ loops
def _trace_loop(
    problem: Problem,
    transform: GradientTransformation,
    state: Any,
    table: _Lockstep,
    streams: _Streams,
    steps: int,
    recorder: _Recorder,
    estimator: MomentumEstimate | None,
) -> int:
    """Apply the trace's updates to ``table.ring``; return how many were applied (``steps`` unless
    the recorder stopped the run early)."""
    ring = table.ring
    k_max, chunk, draw_from = _draw_plan(problem, table, streams, steps)
    version_slot = table.slot
    read_slot, n_aggregated = version_slot[table.read_version], table.n_aggregated
    shared, rows = table.shared, table.rows
    if shared:  # Python ints index fastest
        read_slot, n_aggregated = read_slot.tolist(), n_aggregated.tolist()
    version_slot = version_slot.tolist()
    slots = list(ring)  # one view per slot, made once
    reads, tracked = table.reads, table.tracked
    read_slots = slots if reads is ring else list(reads)
    gradient, draw, divergence = problem.gradient, problem.draw, recorder.divergence
    update = transform.update
    apply = _fused_update(transform, state, estimator)
    if apply is not None:
        state, momentum_args = _momentum_arguments(transform, state, divergence.frozen)
    block, block_start, draw_at = None, 0, 0
    next_at = recorder.next_at
    grads_of_live: np.ndarray | None = None  # (B, d): the live rows' gradients, once some stopped
    for t in range(steps):
        if t == draw_at:
            block, block_start = draw(draw_from, min(chunk, steps - t), k_max), t
            draw_at = t + chunk
        cur = slots[version_slot[t]]
        read = read_slots[read_slot[t]] if shared else reads[read_slot[t], rows]
        noise = None if block is None else block[:, t - block_start]
        live = divergence.live
        if live is None:
            grads = gradient(read, noise, n_aggregated[t])
        else:  # the stopped rows keep stale gradients, which only their frozen rows see
            if grads_of_live is None:
                grads_of_live = np.zeros_like(read)
            grads = grads_of_live
            own_noise = noise is not None and noise.shape[0] == table.batch
            grads[live] = gradient(
                read[live],
                noise[live] if own_noise else noise,
                n_aggregated[t] if shared else n_aggregated[t][live],
            )
        new = slots[version_slot[t + 1]]
        if apply is not None:  # the momentum update in one compiled pass
            apply(grads, cur, new, *momentum_args)
            if t + 1 == next_at:
                if recorder.visit(t + 1, new, state):
                    return t + 1
                next_at = recorder.next_at
            continue
        context = _Context(table, t, read)
        updates, state = update(grads, state, cur, context)
        np.add(cur, updates, out=new)
        if divergence.any:
            divergence.restore(new, cur)
        if tracked:
            table.publish(t, state)
        if estimator is not None:
            estimator = momentum_estimator_update(estimator, context, grads, record_of(state)["lr"])
        if t + 1 == next_at:
            if recorder.visit(t + 1, new, state, estimator):
                return t + 1
            next_at = recorder.next_at
    return steps


def _draw_plan(
    problem: Problem, table: _Lockstep, streams: _Streams, steps: int
) -> tuple[int, int, Sequence[np.random.Generator]]:
    """The most gradients an update aggregates, the steps drawn per block, and the generators to
    draw from: configuration 0's alone when every configuration shares its stream and the problem
    takes one block for all (``broadcast_randomness``), else every configuration's."""
    k_max = int(np.max(table.n_aggregated))
    shared_draw = streams.shared and getattr(problem, "broadcast_randomness", False)
    rows_drawn = 1 if shared_draw else table.batch
    chunk = max(1, min(steps, _DRAW_BUDGET // max(1, rows_drawn * problem.dim * k_max)))
    return k_max, chunk, streams.first if shared_draw else streams


def _is_momentum(transform: GradientTransformation, state: Any) -> bool:
    """Whether the transformation is :func:`~asyncsim.optim.heavy_ball` or
    :func:`~asyncsim.optim.nesterov` itself (which the kernels reproduce), not a look-alike."""
    return (
        transform.name in ("heavy_ball", "nesterov")
        and transform.read_point is None
        and isinstance(state, MomentumState)
        and getattr(transform.update, "__qualname__", "") == "_momentum.<locals>.update"
    )


def _momentum_arguments(
    transform: GradientTransformation, state: MomentumState, frozen: np.ndarray
) -> tuple[MomentumState, tuple]:
    """The state with a velocity the kernels update in place, and the kernels' momentum arguments:
    lr (B,), momentum (B,), velocity (B, d), the frozen configurations, and Nesterov's form or not."""
    b = state.velocity.shape[0]

    def column(value: Any) -> np.ndarray:
        return np.ascontiguousarray(np.broadcast_to(np.ravel(value), (b,)), dtype=np.float64)

    velocity = np.array(state.velocity, dtype=np.float64, order="C")
    nesterov = transform.name == "nesterov"
    return state._replace(velocity=velocity), (
        column(state.lr),
        column(state.momentum),
        velocity,
        frozen,
        nesterov,
    )


def _fused_update(
    transform: GradientTransformation, state: Any, estimator: MomentumEstimate | None
) -> Callable | None:
    """The compiled momentum update (numba present), for heavy ball or Nesterov without the
    momentum estimate (which needs each step's context); else None."""
    if estimator is not None or not _is_momentum(transform, state):
        return None
    return momentum_apply()


def _fused_kernel(
    problem: Problem,
    transform: GradientTransformation,
    state: Any,
    estimator: MomentumEstimate | None,
) -> Callable | None:
    """The compiled kernel of this run, if there is one (numba present): heavy ball or Nesterov on a
    diagonal quadratic, without the momentum estimate; else None (the NumPy loop)."""
    if (
        estimator is not None
        or type(problem) is not NoisyQuadratic
        or problem.hessian is not None
        or not _is_momentum(transform, state)
    ):
        return None
    return quadratic_momentum()


def _fused_loop(
    kernel: Callable,
    problem: NoisyQuadratic,
    transform: GradientTransformation,
    state: MomentumState,
    table: _Lockstep,
    streams: _Streams,
    steps: int,
    recorder: _Recorder,
) -> int:
    """:func:`_trace_loop` for the fused kernel: the steps between two visits of the recorder (and
    two noise blocks) in one call, the visits made many at a time (:class:`_DeferredVisits`); the
    same draws, the same arithmetic, the same result."""
    ring = table.ring
    k_max, chunk, draw_from = _draw_plan(problem, table, streams, steps)
    version_slot = table.slot
    read_slot = np.ascontiguousarray(version_slot[table.read_version].reshape(steps, -1))
    n_aggregated = table.n_aggregated.reshape(steps, -1)
    noise_factor = problem.noise / np.sqrt(n_aggregated)  # as the NumPy path: σ / √k
    state, (lr, momentum, velocity, frozen, nesterov) = _momentum_arguments(
        transform, state, recorder.divergence.frozen
    )
    placeholder = np.zeros((1, 1, problem.dim))
    b, d = table.batch, problem.dim
    flat = None
    if problem.noise == 0.0 and table.shared and d < _FLAT_DIM:  # one loop over B·d per step
        flat = quadratic_momentum_flat()
        expanded = (
            np.tile(problem.curvatures, b), np.tile(problem.w_star, b), problem.shifted,
            np.repeat(lr, d), np.repeat(momentum, d), velocity.reshape(-1),
        )  # fmt: skip
    deferred = _DeferredVisits(problem, recorder, b)
    block, block_start, draw_at = None, 0, 0
    next_at, t = recorder.next_at, 0
    while t < steps:
        if t == draw_at:
            block, block_start = problem.draw(draw_from, min(chunk, steps - t), k_max), t
            draw_at = t + chunk
        end = min(steps, draw_at, next_at)
        if flat is not None:
            flat(
                ring.reshape(ring.shape[0], b * d), version_slot, read_slot[:, 0], t, end,
                *expanded, np.flatnonzero(frozen), d, nesterov,
            )  # fmt: skip
        else:
            kernel(
                ring, version_slot, read_slot, t, end, problem.curvatures, problem.w_star,
                problem.shifted, block is not None, placeholder if block is None else block,
                block_start, noise_factor, lr, momentum, velocity, frozen, nesterov,
            )  # fmt: skip
        t = end
        if t == next_at:
            current = ring[version_slot[t]]
            if deferred.hold(t, current) or t == steps:
                stop = deferred.make(current, state)
                if stop is not None:
                    at, params = stop
                    ring[version_slot[at]] = params
                    return at
            next_at = recorder.following(t)
    return steps


class _DeferredVisits:
    """The fused loop's visits, made together: the parameters of each visited step are copied and
    held (up to ``_DEFERRED_BUDGET`` values), then their losses and distances computed in one call
    each (the same arithmetic row by row as a call per step), and the recorder visits them all at
    once (:meth:`_Recorder.visit_together`). Where the run records every step or two, this takes
    away most of the recording's cost: a call per array operation on B·d values, per step.

    A configuration frozen at a visit went on being updated by the kernel until the visits were
    made: its later copies, losses and distances are set back to those at its freeze, and so are its
    current parameters; nothing it computed meanwhile reaches another configuration."""

    def __init__(self, problem: Problem, recorder: _Recorder, batch: int) -> None:
        self._loss, self._distance = problem.loss, problem.distance
        self._recorder = recorder
        size = max(1, _DEFERRED_BUDGET // (batch * problem.dim))
        self._params = np.empty((size, batch, problem.dim))
        self._steps: list[int] = []

    def hold(self, t: int, w: np.ndarray) -> bool:
        """Keep a copy of the parameters ``w`` (B, d) of visited step t; True once full."""
        self._params[len(self._steps)] = w
        self._steps.append(t)
        return len(self._steps) == self._params.shape[0]

    def make(self, current: np.ndarray, state: MomentumState) -> tuple[int, np.ndarray] | None:
        """Visit the held steps (:meth:`_Recorder.visit_together`); ``current``: the parameters of the
        loop's last step, the last held, set in place to their copy as the visits left it (where a
        configuration froze meanwhile, its parameters at the freeze). Return the step where the run
        stops and its parameters, or None."""
        k, (_, b, d) = len(self._steps), self._params.shape
        params = self._params[:k]
        loss = self._loss(params.reshape(k * b, d)).reshape(k, b)
        distance = self._distance(params.reshape(k * b, d))
        distance = None if distance is None else distance.reshape(k, b)
        stop = self._recorder.visit_together(self._steps, params, state, loss, distance)
        self._steps.clear()
        if stop is not None:
            return stop[0], params[stop[1]]
        current[...] = params[k - 1]
        return None


def _expected_loop(
    problem: Problem,
    update: Callable,
    state: Any,
    ring: np.ndarray,
    laws: list[StalenessLaw],
    steps: int,
    recorder: _Recorder,
) -> int:
    """Apply the expected recursion ``Σ_l q_l ∇f(w_{t-l})`` to ``ring`` (R, B, d); return how many
    updates were applied."""
    ring_size = ring.shape[0]
    pmfs = np.zeros((len(laws), ring_size))
    for i, law in enumerate(laws):
        pmfs[i, : law.pmf.size] = law.pmf
    # weight of ring slot s at step t is q[(t - s) mod R]: a roll of the reversed law.
    reversed_pmfs = pmfs[:, (-np.arange(ring_size)) % ring_size]
    shared = len(laws) == 1
    slots = list(ring)
    mean_gradient, divergence = problem.mean_gradient, recorder.divergence
    next_at = recorder.next_at
    for t in range(steps):
        cur = slots[t % ring_size]
        weights = np.roll(reversed_pmfs, t, axis=1)
        if shared:
            mean_read = np.tensordot(weights[0], ring, axes=(0, 0))
        else:
            mean_read = np.einsum("bs,sbd->bd", weights, ring)
        updates, state = update(mean_gradient(mean_read), state, cur, None)
        if divergence.any:
            updates = divergence.freeze(updates)
        new = slots[(t + 1) % ring_size]
        np.add(cur, updates, out=new)
        if t + 1 == next_at:
            if recorder.visit(t + 1, new, state):
                return t + 1
            next_at = recorder.next_at
    return steps


def _expected_ring(w0: np.ndarray, laws: list[StalenessLaw]) -> np.ndarray:
    """The version ring of the expected mode, as long as the longest law; reads before the start
    see w_0."""
    ring_size = max(law.pmf.size for law in laws)
    return np.broadcast_to(w0, (ring_size, *w0.shape)).copy()


# ------------------------------------------------------------------------------------------ recorder
class _Divergence:
    """Which configurations diverged, and at which step; which are frozen.

    ``check(t, w, state)`` evaluates ``loss(w)`` and flags, at step t, each configuration not yet
    frozen whose loss is NaN or above ``bound`` (B,), or whose state records ``diverged``; it returns
    the loss. A flagged configuration is ``frozen``, as is one that :meth:`stop` stopped:
    ``freeze(updates)`` zeroes their updates, and ``restore(new, cur)`` puts back their parameters
    after an update; ``any`` says whether there are any (the loops call them only then). Once a
    configuration is stopped, ``live`` lists those that are not frozen: the loops compute only their
    gradients and ``check`` only their losses (the others keep their last).
    """

    __slots__ = ("_loss", "any", "at", "bound", "flags", "frozen", "last_loss", "live")

    def __init__(self, loss: Callable[[np.ndarray], np.ndarray], bound: np.ndarray) -> None:
        self._loss = loss
        self.bound = np.asarray(bound, dtype=np.float64)
        self.flags = np.zeros(self.bound.shape, dtype=bool)
        self.frozen = np.zeros(self.bound.shape, dtype=bool)  # updated in place: kernels hold it
        self.at = np.full(self.bound.shape, -1, dtype=np.int64)
        self.any = False
        self.live: np.ndarray | None = None
        self.last_loss = self.bound  # the losses of the last check (the first replaces it)

    def check(
        self, t: int, w: np.ndarray, state: Any = None, values: Mapping[str, Any] | None = None
    ) -> np.ndarray:
        """``values``: the state's ``record_of``, where the caller has it already."""
        live = self.live
        if live is None:
            loss = self._loss(w)
        else:
            loss = self.last_loss.copy()
            loss[live] = self._loss(w[live])
        self.last_loss = loss
        newly = ~self.frozen & ~(loss <= self.bound)  # catches NaN
        flagged = (record_of(state) if values is None else values).get("diverged")
        if flagged is not None:
            newly |= ~self.frozen & np.asarray(flagged, dtype=bool)
        self.flag(newly, t)
        return loss

    def flag(self, newly: np.ndarray, at: int | np.ndarray) -> None:
        """Flag the configurations ``newly`` (B,) as diverged (and freeze them) at step(s) ``at``."""
        if newly.any():
            self.flags[newly] = True
            self.frozen[newly] = True
            self.at[newly] = at
            self.any = True

    def stop(self, stopped: np.ndarray) -> None:
        """Freeze the configurations ``stopped`` (B,) too, and compute only the others from now."""
        if (stopped & ~self.frozen).any():
            self.frozen |= stopped
            self.any = True
            self.live = np.flatnonzero(~self.frozen)

    def freeze(self, updates: np.ndarray) -> np.ndarray:
        return np.where(self.frozen[:, None], 0.0, updates)

    def restore(self, new: np.ndarray, cur: np.ndarray) -> None:
        """Give the frozen configurations of ``new`` their parameters ``cur`` back (in place): the
        update ``freeze`` would have zeroed, at the cost of the frozen rows only."""
        frozen = self.frozen
        new[frozen] = cur[frozen]


class _Recorder:
    """What a run records, and when it looks at the parameters.

    The schedule is ``0, every, 2·every, …`` and always ``steps``. ``next_at`` is the next step
    after which the loop must call ``visit(t, w, state, estimator)``: a scheduled step (check
    divergence, record, and stop once every configuration has reached ``stop_at`` or diverged) or a
    multiple of ``check_every`` (check divergence only); ``visit_together`` makes many visits at
    once, for a loop that held them back (``following`` gives it the next visit). With
    ``stop_each``, a configuration that has reached ``stop_at`` or diverged stops at once
    (:meth:`_Divergence.stop`), and its later rows repeat its row at the stop. ``record`` appends
    one row; ``result()`` gives the History fields it holds.
    """

    def __init__(
        self,
        divergence: _Divergence,
        distance: Callable[[np.ndarray], np.ndarray | None],
        batch: int,
        *,
        steps: int,
        every: int | None,
        check_every: int,
        stop_at: float | None = None,
        stop_each: bool = False,
        record_params: bool = False,
        clock: np.ndarray | None = None,
    ) -> None:
        self.divergence = divergence
        self._distance = distance
        self._batch = batch
        self._schedule = _record_steps(steps, every)
        self._check_every = check_every
        self._stop_at = stop_at
        self._stop_each = stop_each
        self._reached = np.zeros(batch, dtype=bool)
        self._held: np.ndarray | None = None  # the rows stopped at an earlier record
        self._record_params = record_params
        self._clock = clock
        rows = len(self._schedule)
        self._loss = np.empty((rows, batch))
        self._distances: np.ndarray | None = (
            None  # made at the first record, if the problem has them
        )
        self._time = np.empty((rows, batch))
        self._params: list[np.ndarray] = []
        self._values: dict[str, np.ndarray] = {}
        self._recorded = 0  # rows so far
        self._record_at = 0  # the next scheduled step, _schedule[_recorded] (-1 after the last)
        self.next_at = 0

    def record(
        self,
        t: int,
        w: np.ndarray,
        loss: np.ndarray,
        state: Any,
        estimator: MomentumEstimate | None = None,
        values: dict[str, Any] | None = None,
    ) -> None:
        """Append the row of step t (the next scheduled step); ``values``: the state's
        ``record_of``, where the caller has it already."""
        distance = self._distance(w)
        values = record_of(state) if values is None else dict(values)
        if estimator is not None:
            values["total_momentum"] = np.where(
                self.divergence.flags, np.nan, momentum_estimate(estimator)
            )
        self._append_rows(
            np.array([t]), w[None], loss[None], None if distance is None else distance[None], values
        )
        self._advance(t)

    def _append_rows(
        self,
        steps: np.ndarray,
        params: np.ndarray,
        loss: np.ndarray,
        distance: np.ndarray | None,
        values: Mapping[str, Any],
    ) -> None:
        """Append the rows of the next scheduled steps ``steps`` (n,): their parameters (n, B, d),
        losses and distances (n, B), and ``values`` (name: (B,) or a scalar, the same at each), into
        arrays made once. Stopped rows repeat their values at the stop (their loss and distance
        are those of unchanged parameters)."""
        i, n = self._recorded, steps.size
        rows = slice(i, i + n)
        self._loss[rows] = loss
        if distance is not None:
            if self._distances is None:
                self._distances = np.empty_like(self._loss)
            self._distances[rows] = distance
        if self._record_params:
            self._params.extend(w.copy() for w in params)
        clock = np.nan if self._clock is None else self._clock[steps - 1].reshape(n, -1)
        self._time[rows] = np.where((steps == 0)[:, None], 0.0, clock)
        for name, v in values.items():
            column = self._values.get(name)
            if column is None:
                column = self._values[name] = np.empty_like(self._loss)
            column[rows] = v  # broadcasts a scalar, converts a flag to float64
            if self._held is not None:
                np.copyto(column[rows], column[i - 1], where=self._held)
        self._recorded += n
        schedule = self._schedule
        self._record_at = schedule[self._recorded] if self._recorded < len(schedule) else -1

    def visit(
        self, t: int, w: np.ndarray, state: Any, estimator: MomentumEstimate | None = None
    ) -> bool:
        """After update t - 1 (t updates applied, parameters ``w``); True when the run should stop."""
        recording = t == self._record_at
        values = record_of(state) if recording else None
        loss = self.divergence.check(t, w, state, values)
        if not recording:
            self._advance(t)
            return False
        self.record(t, w, loss, state, estimator, values)
        if self._stop_at is None:
            return False
        self._reached |= loss <= self._stop_at
        stopped = self._reached | self.divergence.flags
        if self._stop_each:
            self.divergence.stop(stopped)
            self._held = stopped
        return bool(stopped.all())

    def _advance(self, t: int) -> None:
        """Set ``next_at`` after a visit of step t: the next scheduled step or check."""
        self.next_at = self._next_visit(t, self._record_at)

    def _next_visit(self, t: int, record_at: int) -> int:
        check_at = t - t % self._check_every + self._check_every
        return check_at if record_at < 0 else min(record_at, check_at)

    def visit_together(
        self,
        steps: list[int],
        params: np.ndarray,
        state: MomentumState,
        loss: np.ndarray,
        distance: np.ndarray | None,
    ) -> tuple[int, int] | None:
        """Visit the steps ``steps`` (k,) at once, as :meth:`visit` one after another would, given
        the parameters (k, B, d) a loop that froze nothing meanwhile saw there, and their losses and
        distances (k, B). A configuration frozen at a visit (diverged, or stopped with ``stop_each``)
        has its later parameters, losses and distances set back to those at its freeze, in place.
        The state is a momentum method's: no ``diverged`` flag, values that stay as they are.
        Return (step, visit index) where the run stops, or None."""
        div, k = self.divergence, len(steps)
        at = np.asarray(steps)
        recorded = np.isin(at, self._schedule[self._recorded : self._recorded + k])
        never = np.full(loss.shape[1], k)
        frozen_before = div.frozen.copy()
        bad = ~(loss <= div.bound)
        bad[:, frozen_before] = False
        first_bad = np.where(bad.any(axis=0), bad.argmax(axis=0), never)
        freeze = first_bad
        if self._stop_at is not None and self._stop_each:
            hit = (loss <= self._stop_at) & recorded[:, None]
            hit[:, frozen_before] = False
            freeze = np.minimum(first_bad, np.where(hit.any(axis=0), hit.argmax(axis=0), never))
            first_bad = np.where(first_bad == freeze, first_bad, never)  # stopped before: kept
        for b in np.flatnonzero(freeze < k - 1):  # a frozen configuration keeps its values
            f = freeze[b]
            for held in (params, loss, distance):
                if held is not None:
                    held[f + 1 :, b] = held[f, b]
        end, stops = k - 1, False  # the last visit made: the run may stop before
        reached = self._reached
        if self._stop_at is not None:
            reached_by = (
                np.logical_or.accumulate((loss <= self._stop_at) & recorded[:, None], axis=0)
                | self._reached
            )
            diverged_by = (first_bad[None, :] <= np.arange(k)[:, None]) | div.flags
            done = (reached_by | diverged_by).all(axis=1) & recorded
            if done.any():
                end, stops = int(done.argmax()), True
            reached = reached_by[end]
        newly = first_bad <= end
        div.flag(newly, at[first_bad[newly]])
        div.last_loss = loss[end]
        rows = np.flatnonzero(recorded[: end + 1])
        if rows.size:
            picked = None if distance is None else distance[rows]
            self._append_rows(at[rows], params[rows], loss[rows], picked, record_of(state))
        self._reached = reached
        if self._stop_at is not None and self._stop_each:
            stopped = reached | div.flags
            div.stop(stopped)
            self._held = stopped
        self._advance(int(at[end]))
        return (int(at[end]), end) if stops else None

    def following(self, t: int) -> int:
        """The visit after step t, were t visited now (for a loop that holds visits back)."""
        schedule = self._schedule
        i = bisect.bisect_right(schedule, t)
        return self._next_visit(t, schedule[i] if i < len(schedule) else -1)

    def result(self) -> dict[str, Any]:
        """``steps``, ``loss``, ``distance``, ``values``, ``params`` and ``time`` of the History."""
        n = self._recorded
        distances = self._distances
        return {
            "steps": np.asarray(self._schedule[:n], dtype=np.int64),
            "loss": self._loss[:n].copy(),
            "distance": None if distances is None else distances[:n].copy(),
            "values": {name: v[:n].copy() for name, v in self._values.items()},
            "params": np.array(self._params) if self._record_params else None,
            "time": self._time[:n].copy(),
        }


def _record_steps(steps: int, every: int | None) -> list[int]:
    """0, every, 2·every, ... and always the last step."""
    points = list(range(0, steps + 1, every)) if every else [0]
    if points[-1] != steps:
        points.append(steps)
    return points


# ------------------------------------------------------------------------------------------ set-up
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

    @property
    def staleness(self) -> np.ndarray:
        return self._engine.staleness(self.step)

    def previous_read_params(self) -> np.ndarray:
        e = self._engine
        prev = np.maximum(e.row(e.previous_read, self.step), 0)
        return e.reads[e.slot[prev], e.rows]

    def has_previous_read(self) -> np.ndarray:
        e = self._engine
        return e.row(e.previous_read, self.step) >= 0


class _Lockstep:
    """The version store ``ring`` (S, B, d) and the per-step index tables of B configurations:
    shared (steps,) or per configuration (steps, B).

    Version v (the parameters after v updates) lives in slot ``slot[v]`` from the step that writes it
    until the last step that reads it (as a gradient's read, as a writer's previous read, or as the
    current parameters); then its slot takes a later version. So S is the most versions ever still to
    be read at once (:func:`_version_slots`), at most 2M + 2 for a trace of M workers, however large
    the largest staleness.

    ``reads`` is the store workers read from: ``ring`` itself, or a transformation's read points
    (same slots); ``published`` (S, B), where kept, the versions published up to each stored one
    (see the module docstring); ``tracked`` whether there is either to keep up (:meth:`track`).
    """

    def __init__(self, traces: list[Trace], steps: int, w0: np.ndarray) -> None:
        batch = w0.shape[0]
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
        self.slot, n_slots = _version_slots(self.read_version, self.previous_read, steps)
        self.ring = np.zeros((n_slots, *w0.shape))
        self.ring[self.slot[0]] = w0  # a trace reads only versions already written
        self.reads = self.ring
        self.published: np.ndarray | None = None
        self.tracked = False
        self._read_point: Callable | None = None

    def row(self, table: np.ndarray, step: int) -> np.ndarray:
        """Row ``step`` of a table as a (B,) array."""
        return np.full(self.batch, table[step]) if self.shared else table[step]

    def track(self, transform: GradientTransformation, state: Any) -> None:
        """Keep what ``transform`` needs beside the parameters: its read points, and the published
        versions where its state may hold arrivals back (``published``)."""
        self._read_point = transform.read_point
        if self._read_point is not None:
            first = self.slot[0]
            self.reads = np.empty_like(self.ring)
            self.reads[first] = self._read_point(state, self.ring[first])
        if published_of(state) is not None:
            self.published = np.zeros(self.ring.shape[:2], dtype=np.int64)
        self.tracked = self._read_point is not None or self.published is not None

    def publish(self, t: int, state: Any) -> None:
        """After arrival t wrote entry t + 1: the versions published up to it, and its read point."""
        new = self.slot[t + 1]
        if self.published is not None:
            self.published[new] = self.published[self.slot[t]] + published_of(state)
        if self._read_point is not None:
            self.reads[new] = self._read_point(state, self.ring[new])

    def staleness(self, t: int) -> np.ndarray:
        """τ of arrival t, (B,): versions published between its read and it."""
        read = self.row(self.read_version, t)
        if self.published is None:
            return t - read
        return self.published[self.slot[t]] - self.published[self.slot[read], self.rows]


def _version_slots(
    read_version: np.ndarray, previous_read: np.ndarray, steps: int
) -> tuple[np.ndarray, int]:
    """The store slot of each version 0..steps, shape (steps + 1,), and the number of slots.

    Step t reads ``read_version[t]`` (and its writer's ``previous_read[t]`` where >= 0) of every
    configuration, and the current version t; it writes version t + 1. A version's last use is the
    last step that reads it (``steps`` for the last version, the result); its slot is free for the
    versions written after that step. Slots are handed out first-free (the most recently freed
    first, warm in cache), so their number is the most versions live at once, counting the one being
    written.
    """
    t = np.arange(steps)
    last_use = np.arange(steps + 1)  # version v is the current parameters of step v
    reads = read_version
    ends = np.broadcast_to(t if reads.ndim == 1 else t[:, None], reads.shape)
    np.maximum.at(last_use, reads.ravel(), ends.ravel())
    known = previous_read >= 0
    np.maximum.at(last_use, previous_read[known], ends[known])
    # versions in the order their slots come free: after step last_use[v], i.e. from step last_use + 1
    order = np.argsort(last_use, kind="stable")
    return compiled_assign_slots()(order, last_use, steps)


class _Streams(Sequence):
    """Configuration b's generator, ``default_rng`` of its seed sequence: ``stream(root(rng), b)``
    for one ``rng``, ``root(rng[b])`` for a sequence of B. The roots are fixed (and recorded) now;
    the generators are made on first use: a seed sequence costs about 8 µs, and deterministic
    problems need none."""

    def __init__(self, rng: Any, batch: int) -> None:
        if isinstance(rng, list):
            if len(rng) != batch:
                raise ValueError(f"rng must be one seed or a sequence of {batch}, got {len(rng)}")
            self._roots: list[np.random.SeedSequence] | None = [
                root(r, f"rng[{i}]") for i, r in enumerate(rng)
            ]
            self._parent = None
            self.seed = tuple(record(seq) for seq in self._roots)
        else:
            self._roots, self._parent = None, root(rng)
            parent = record(self._parent)
            self.seed = tuple(
                SeedRecord(parent.entropy, (*parent.spawn_key, i)) for i in range(batch)
            )
        self._batch = batch
        self._generators: list[np.random.Generator] | None = None
        self._first: list[np.random.Generator] | None = None

    def __len__(self) -> int:
        return self._batch

    @property
    def shared(self) -> bool:
        """Whether every configuration draws from one stream (B > 1 copies of one root: common random
        numbers), so that one draw serves them all."""
        roots = self._roots
        if self._batch < 2 or roots is None:
            return False
        first = roots[0]
        return all(
            seq is first
            or (
                np.array_equal(seq.entropy, first.entropy)
                and seq.spawn_key == first.spawn_key
                and seq.pool_size == first.pool_size
            )
            for seq in roots
        )

    @property
    def first(self) -> list[np.random.Generator]:
        """Configuration 0's generator alone (made once): the one draw of a shared stream."""
        if self._first is None:
            self._first = [self[0] if self._generators else np.random.default_rng(self._roots[0])]
        return self._first

    def __getitem__(self, index: Any) -> Any:
        if self._generators is None:
            if self._roots is None:
                assert self._parent is not None
                self._roots = [stream(self._parent, i) for i in range(self._batch)]
            self._generators = [np.random.default_rng(seq) for seq in self._roots]
        return self._generators[index]


def _staleness_sources(trace: Any, steps: int) -> tuple[list[Any], bool]:
    """The per-configuration staleness sources (one, or B) and whether they are laws (the expected
    mode); None becomes a zero-staleness trace."""
    if trace is None:
        return [Trace.from_staleness(np.zeros(steps, dtype=np.int64))], False
    sources = [trace] if isinstance(trace, Trace | StalenessLaw) else list(trace)
    expected = bool(sources) and isinstance(sources[0], StalenessLaw)
    kind = StalenessLaw if expected else Trace
    if not sources or not all(isinstance(s, kind) for s in sources):
        raise TypeError(
            "trace must be Traces, StalenessLaws (not mixed), a single one of them, or None"
        )
    return sources, expected


def _check_sources(
    problem: Problem, sources: list[Any], expected: bool, steps: int, batch: int
) -> None:
    """One source or B; laws need an affine gradient, traces ``steps`` updates."""
    if len(sources) not in (1, batch):
        raise ValueError(f"trace must be one or {batch} (the batch size), got {len(sources)}")
    if expected and not problem.affine_gradient:
        raise ValueError(
            f"the expected-dynamics mode needs an affine gradient (a quadratic); {problem.name!r} is not"
        )
    short = [] if expected else [len(tr) for tr in sources if len(tr) < steps]
    if short:
        raise ValueError(f"steps must be <= the trace length ({min(short)}), got {steps}")


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


def _resolve_estimate(
    estimate: bool | None, table: _Lockstep | None, recorded: Mapping[str, Any]
) -> bool:
    """Whether to record the total-momentum estimate: by default where every update has a known
    writer and the transformation records ``lr``; asked for without them, a ValueError."""
    possible = table is not None and "lr" in recorded
    if estimate is None:
        return possible and bool((table.writer >= 0).all())  # type: ignore[union-attr]
    if estimate and not possible:
        raise ValueError("estimate_momentum needs a trace with writers and a transform with an lr")
    return bool(estimate)


#: What the engine uses of a problem: :class:`~asyncsim.problems.Problem` has it all, and any object
#: with these attributes serves as well.
PROBLEM_INTERFACE = (
    "dim",
    "name",
    "target",
    "affine_gradient",
    "init_params",
    "loss",
    "distance",
    "draw",
    "gradient",
    "mean_gradient",
)


def check_problem(problem: object) -> None:
    """Raise a TypeError unless ``problem`` is a Problem or has :data:`PROBLEM_INTERFACE`."""
    if isinstance(problem, Problem):
        return
    if isinstance(problem, str):
        raise TypeError(
            f"problem must be a Problem instance, got the name {problem!r} (str); build the problem "
            f"with make_problem({problem!r})"
        )
    missing = [name for name in PROBLEM_INTERFACE if not hasattr(problem, name)]
    if missing:
        raise TypeError(
            f"problem must be a Problem instance (e.g. make_problem('nq50')), got {problem!r} "
            f"({type(problem).__name__}), which lacks the problem interface: {', '.join(missing)}"
        )


def _check_needs(transform: GradientTransformation, sources: list[Any], expected: bool) -> None:
    """Refuse a staleness source that lacks what the transformation needs (realized reads, writer
    ids)."""
    if expected and ("reads" in transform.needs or transform.read_point is not None):
        raise ValueError(
            f"transform {transform.name!r} needs the realized reads (each update's staleness τ and "
            "the parameters its worker read, or a read point), which the expected-dynamics mode "
            "averages over a StalenessLaw; give a Trace (e.g. from asyncsim.cluster.simulate)"
        )
    if "writers" not in transform.needs:
        return
    if expected:
        lacking = "a StalenessLaw (expected dynamics) has no writers"
    elif any((tr.writer < 0).any() for tr in sources):
        lacking = "this trace has unknown writers (-1), as i.i.d. staleness traces do"
    else:
        return
    raise ValueError(
        f"transform {transform.name!r} needs writer ids (e.g. YellowFin's closed loop, which "
        f"measures each writer's momentum), but {lacking}; use a trace from "
        f"asyncsim.cluster.simulate"
    )


# ------------------------------------------------------------------------------------------ config
def _config(
    problem: Problem,
    transform: GradientTransformation,
    trace: Any,
    sources: list[Any],
    steps: int,
    options: dict[str, Any],
) -> dict[str, Any]:
    """``History.config``: what made the run (see :class:`History`)."""
    return {
        "problem": _problem_config(problem),
        "transform": _transform_config(transform),
        "staleness": _staleness_config(trace, sources),
        "steps": steps,
        "options": options,
    }


def _problem_config(problem: Problem) -> dict[str, Any]:
    """The problem's name, class and the parameters it was built with (its dataclass fields that are
    arguments and shown in its repr); a problem that is no dataclass gives its repr."""
    out: dict[str, Any] = {"name": problem.name, "class": type(problem).__name__}
    if dataclasses.is_dataclass(problem):
        out["parameters"] = {
            f.name: _jsonable(getattr(problem, f.name))
            for f in dataclasses.fields(problem)
            if f.init and f.repr and f.name != "name"
        }
    else:
        out["repr"] = repr(problem)
    return out


def _transform_config(transform: GradientTransformation) -> dict[str, Any]:
    hyperparameters = transform.hyperparameters
    return {
        "name": transform.name,
        "hyperparameters": None if hyperparameters is None else _jsonable(dict(hyperparameters)),
        "batch": transform.batch,
    }


def _staleness_config(trace: Any, sources: list[Any]) -> dict[str, Any]:
    if trace is None:
        return {"kind": "none"}
    if isinstance(sources[0], StalenessLaw):
        return {
            "kind": "law",
            "laws": [{"length": int(s.pmf.size), "mean": s.mean} for s in sources],
        }
    return {
        "kind": "trace",
        "traces": [
            {
                "length": len(tr),
                "mean": tr.mean,
                "config": None if tr.config is None else repr(tr.config),
                "seed": None if tr.seed is None else str(tr.seed),
            }
            for tr in sources
        ],
    }


def _jsonable(value: Any) -> Any:
    """``value`` as JSON-able data: numbers, strings, lists and dicts as they are; a NumPy array of
    up to 16 elements as a list, a larger one as its shape, range and BLAKE2b-64 digest; anything
    else as its repr."""
    if value is None or type(value) in (bool, str, float, int):
        return value
    if type(value) in (list, tuple) and all(type(v) is float for v in value):
        return list(value)  # a batch of hyperparameters, quickly
    if isinstance(value, Integral):
        return int(value)
    if isinstance(value, Real):
        return float(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        if value.size <= 16 or value.dtype.kind not in "biuf":
            return _jsonable(value.tolist())
        data = np.ascontiguousarray(value)
        return {
            "shape": list(value.shape),
            "min": _jsonable(value.min()),
            "max": _jsonable(value.max()),
            "digest": hashlib.blake2b(data.tobytes(), digest_size=8).hexdigest(),
        }
    return repr(value)
