"""YellowFin measured against other settings: the closed loop against the open loop, and the tuner
against grid-tuned momentum SGD and Adam (median updates to a problem's target).

These are experiments, not the optimizer: they run the engine on the cluster model's traces and the
sweep's grids, so they sit beside :mod:`asyncsim.sweep`, above :mod:`asyncsim.yellowfin` (which holds
the transformation and nothing more).

Random streams
--------------
``rng`` becomes one root seed sequence (:mod:`asyncsim._rng`), recorded on the result as ``seed``.
Seed ``s`` of a run with M workers draws its event trace from
``stream(root, "workers", M, "seed", s, "trace")`` and its gradient noise from
``stream(root, "workers", M, "seed", s, "noise")``: keyed by value, so adding a seed, a target or a
gain changes no other run, and every configuration of one seed shares its trace and noise (common
random numbers). The grids of :func:`compare_tuners` run as a :class:`~asyncsim.sweep.Sweep`, whose
root seed (an int) is drawn from ``stream(root, "grids")``; the sweep keys its chunks' streams itself,
so the grids and YellowFin see independent traces and noise of the same law.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from asyncsim._rng import SeedRecord, record, root, stream
from asyncsim._validate import check_array, check_int
from asyncsim.cluster import ClusterConfig, simulate
from asyncsim.engine import run
from asyncsim.measure import iterations_to_target
from asyncsim.optim import GradientTransformation
from asyncsim.problems import make_problem
from asyncsim.sweep import Sweep, chunk_streams, run_sweep
from asyncsim.trace import Trace
from asyncsim.yellowfin import yellowfin_tuner

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["LoopComparison", "TunerComparison", "compare_closed_loop", "compare_tuners"]


def _seed_stream(seq: np.random.SeedSequence, m: int, s: int, kind: str) -> np.random.SeedSequence:
    """Seed ``s``'s stream ``kind`` ("trace" or "noise") of a run with ``m`` workers."""
    return stream(seq, "workers", m, "seed", s, kind)


# ------------------------------------------------------------------------------------------ closed loop
@dataclass(frozen=True, eq=False)
class LoopComparison:
    """Iterations to target of the closed loop against the open loop, one problem and worker count.

    Attributes
    ----------
    problem : str
    n_workers : int
        Asynchronous workers M (exponential compute times, event traces from the cluster model).
    targets : float64 (n_targets,)
        The fixed targets μ*; NaN: the tuner's own.
    gains : float64 (n_gains,)
        ``0`` is the open loop; the others are closed-loop gains γ.
    iterations : float64 (n_targets, n_gains)
        Median over seeds of the updates to target (inf where the median run missed it).
    per_seed : float64 (n_targets, n_gains, n_seeds)
        Each seed's updates to target (inf: missed or diverged).
    momentum : float64 (n_targets, n_gains)
        Median over seeds of the applied μ averaged over the second half of the run.
    total_momentum : float64 (n_targets, n_gains)
        The same for the worker-local total-momentum estimate (NaN unless measured).
    diverged : int64 (n_targets, n_gains)
        Seeds flagged diverged.
    steps : int
    seeds : int
    seed : SeedRecord
        The root of the randomness (``seed.sequence()`` as ``rng`` makes the same result).
    options : dict
        The other arguments of :func:`asyncsim.yellowfin.yellowfin_tuner`.
    """

    problem: str
    n_workers: int
    targets: np.ndarray
    gains: np.ndarray
    iterations: np.ndarray
    per_seed: np.ndarray
    momentum: np.ndarray
    total_momentum: np.ndarray
    diverged: np.ndarray
    steps: int
    seeds: int
    seed: SeedRecord
    options: dict = field(default_factory=dict)

    def to_frame(self) -> pd.DataFrame:
        """One row per (target, gain): medians, late momenta, divergences."""
        import pandas as pd

        t, g = np.meshgrid(self.targets, self.gains, indexing="ij")
        return pd.DataFrame(
            {
                "problem": self.problem,
                "n_workers": self.n_workers,
                "target_momentum": t.ravel(),
                "gain": g.ravel(),
                "loop": np.where(g.ravel() > 0, "closed", "open"),
                "iterations": self.iterations.ravel(),
                "momentum": self.momentum.ravel(),
                "total_momentum": self.total_momentum.ravel(),
                "diverged": self.diverged.ravel(),
            }
        )


def compare_closed_loop(
    problem: str,
    *,
    n_workers: int = 16,
    targets: Any = (0.9, 0.669, None),
    gains: Any = (0.01, 0.05, 0.1),
    seeds: int = 4,
    steps: int = 10_000,
    record_every: int = 20,
    measure_total: bool = False,
    rng: Any = 0,
    **options: Any,
) -> LoopComparison:
    """Measure the closed loop against the open loop: median updates to the problem's target.

    All (target, gain, seed) configurations run as one batched engine run; seed ``s`` has its own
    event trace of ``n_workers`` asynchronous workers and its own gradient noise, shared by every
    (target, gain) (common random numbers). The open loop (gain 0) applies ``μ*`` as it is.

    Parameters
    ----------
    problem : str
        A reference problem (``"nq50"``, ``"digits-mlp"``).
    n_workers : int
        Asynchronous workers M ≥ 1.
    targets : sequence of float or None
        Fixed targets μ* in [0, 1); None: the tuner's own.
    gains : sequence of float
        Closed-loop gains γ > 0 (the open loop is added).
    seeds : int
        Replications.
    steps : int
        Budget of updates.
    record_every : int
        Resolution of the iterations to target.
    measure_total : bool
        Also record the engine's total-momentum estimate for every row (a second estimator).
    rng : None, int >= 0, SeedSequence or Generator
        Root of the randomness; seed ``s`` draws from the streams keyed ``("workers", M, "seed", s)``
        (module docstring).
    **options
        Further arguments of :func:`asyncsim.yellowfin.yellowfin_tuner` (e.g. ``variant``,
        ``lr_init``).

    Returns
    -------
    LoopComparison
    """
    seq = root(rng)
    nq = make_problem(problem)
    m = check_int("n_workers", n_workers, low=1)
    n_seeds = check_int("seeds", seeds, low=1)
    steps = check_int("steps", steps, low=1)
    target_list = np.array([np.nan if t is None else t for t in targets], dtype=np.float64)
    gain_list = np.concatenate([[0.0], check_array("gains", gains, low=0.0, low_open=True)])
    traces = [
        simulate(ClusterConfig(m), steps, rng=_seed_stream(seq, m, s, "trace"))
        for s in range(n_seeds)
    ]
    noise = [_seed_stream(seq, m, s, "noise") for s in range(n_seeds)]
    shape = (target_list.size, gain_list.size, n_seeds)
    ti, gi, si = (a.ravel() for a in np.indices(shape))
    history = run(
        nq,
        yellowfin_tuner(
            closed_loop=gain_list[gi] > 0,
            target_momentum=target_list[ti],
            gain=gain_list[gi],
            **options,
        ),
        [traces[i] for i in si],
        steps,
        rng=[noise[i] for i in si],
        record_every=record_every,
        estimate_momentum=measure_total,
        stop_at=nq.target,
    )
    iterations = iterations_to_target(history, nq.target).reshape(shape)
    late = history.steps >= history.steps[-1] // 2
    total = history.values.get("total_momentum", np.full_like(history.loss, np.nan))
    momentum, total = (_finite_mean(v[late]).reshape(shape) for v in (history["momentum"], total))
    return LoopComparison(
        problem=nq.name,
        n_workers=m,
        targets=target_list,
        gains=gain_list,
        iterations=np.median(iterations, axis=2),
        per_seed=iterations,
        momentum=np.median(momentum, axis=2),
        total_momentum=np.median(total, axis=2),
        diverged=history.diverged.reshape(shape).sum(axis=2),
        steps=steps,
        seeds=n_seeds,
        seed=record(seq),
        options=dict(options),
    )


def _finite_mean(values: np.ndarray) -> np.ndarray:
    """Mean over axis 0 of the finite entries (NaN where there are none)."""
    finite = np.isfinite(values)
    count = finite.sum(axis=0)
    total = np.where(finite, values, 0.0).sum(axis=0)
    return np.divide(total, count, out=np.full(total.shape, np.nan), where=count > 0)


# ------------------------------------------------------------------------------------------ tuners
@dataclass(frozen=True, eq=False)
class TunerComparison:
    """Iterations to target of YellowFin against grid-tuned momentum SGD and Adam, one problem.

    Attributes
    ----------
    problem : str
    n_workers : int
        Asynchronous workers M (1: no staleness).
    methods : tuple of str
        ``"yellowfin"``, ``"momentum"`` (heavy ball, best (α, μ) of the grid), ``"adam"`` (best α).
    iterations : float64 (3,)
        Median over seeds of the updates to target (for the grid methods at their best grid point);
        inf where the median run missed the target.
    per_seed : float64 (3, n_seeds)
    best : tuple of dict
        The chosen hyperparameters (empty for YellowFin).
    sweeps : tuple of SweepResult
        The grid sweeps of momentum SGD and Adam (every grid point and seed).
    seed : SeedRecord
        The root of the randomness (``seed.sequence()`` as ``rng`` makes the same result).
    options : dict
        YellowFin's arguments.
    """

    problem: str
    n_workers: int
    methods: tuple[str, ...]
    iterations: np.ndarray
    per_seed: np.ndarray
    best: tuple[dict, ...]
    sweeps: tuple[Any, ...]
    seed: SeedRecord
    options: dict = field(default_factory=dict)

    def to_frame(self) -> pd.DataFrame:
        """One row per method: median iterations and the chosen hyperparameters."""
        import pandas as pd

        rows = [
            {"problem": self.problem, "n_workers": self.n_workers, "method": m, "iterations": it}
            | hp
            for m, it, hp in zip(self.methods, self.iterations, self.best, strict=True)
        ]
        return pd.DataFrame(rows)


def compare_tuners(
    problem: Any,
    *,
    n_workers: int = 1,
    seeds: int = 4,
    steps: int = 3000,
    record_every: int = 10,
    lrs: Any = None,
    momenta: Any = None,
    adam_lrs: Any = None,
    rng: Any = 0,
    seed: Any = None,
    tuner: Callable[..., GradientTransformation] = yellowfin_tuner,
    **options: Any,
) -> TunerComparison:
    """Measure YellowFin against grid-tuned momentum SGD and Adam: median updates to the target.

    The grids run as one :class:`asyncsim.sweep.Sweep` each, sharing one root seed, and YellowFin runs
    on the grids' own streams (:func:`asyncsim.sweep.chunk_streams`): every method sees the same traces
    and the same noise, seed by seed (common random numbers). A grid method scores its best grid
    point's median over seeds.

    Parameters
    ----------
    problem : str or Problem
        A reference problem (``"nq50"``, ``"digits-mlp"``) or any problem instance.
    n_workers : int
        Asynchronous workers M (event traces of the cluster model; 1: no staleness).
    seeds : int
        Replications (theory/README.md §5: 32 for nq50, 8 for digits-mlp).
    steps : int
        Budget of updates (runs stop once every configuration met the target or diverged).
    record_every : int
        Resolution of the iterations to target.
    lrs, momenta, adam_lrs : sequence of float or None
        Grids; defaults of theory/README.md §5: α = 2^-13 ... 2 by factors √2, the nine μ from -0.9 to
        0.9, and for Adam α = 2^-13 ... 2^-1.
    rng : None, int >= 0, SeedSequence or Generator
        Root of the randomness (module docstring).
    seed : int >= 0 or None
        Deprecated spelling of ``rng`` (a DeprecationWarning; removed in the next release).
    **options
        Arguments of ``tuner``.
    tuner : callable
        The tuner measured: a factory ``(**options) -> GradientTransformation`` (default
        :func:`asyncsim.yellowfin.yellowfin_tuner`).

    Returns
    -------
    TunerComparison
    """
    if seed is not None:
        warnings.warn(
            "compare_tuners(seed=...) is deprecated and will be removed in the next release; "
            "pass rng=... (the same values are accepted)",
            DeprecationWarning,
            stacklevel=2,
        )
        rng = seed
    seq = root(rng)
    m = check_int("n_workers", n_workers, low=1)
    n_seeds = check_int("seeds", seeds, low=1)
    lrs = tuple(2.0 ** np.arange(-13.0, 1.25, 0.5)) if lrs is None else tuple(lrs)
    momenta = tuple(np.linspace(-0.9, 0.9, 9)) if momenta is None else tuple(momenta)
    adam_lrs = tuple(2.0 ** np.arange(-13.0, -0.75, 0.5)) if adam_lrs is None else tuple(adam_lrs)
    staleness = "cluster" if m > 1 else "geometric"
    common: dict[str, Any] = {
        "problem": problem,
        "workers": (m,),
        "staleness": staleness,
        "seeds": n_seeds,
        "steps": steps,
        "record_every": record_every,
        "seed": int(stream(seq, "grids").generate_state(1)[0]),
    }
    sweeps = (
        Sweep(lrs=lrs, momenta=momenta, optimizer="heavy_ball", **common),
        Sweep(lrs=adam_lrs, momenta=(0.0,), optimizer="adam", **common),
    )
    grids = tuple(run_sweep(sweep) for sweep in sweeps)
    nq = sweeps[0].make_problem()
    streams = [chunk_streams(sweeps[0], 0, s) for s in range(n_seeds)]  # the grids' own streams
    traces = [_staleness(staleness, m, steps, trace_seq) for trace_seq, _ in streams]
    history = run(
        nq,
        tuner(**options),
        traces,
        steps,
        rng=[noise_seq for _, noise_seq in streams],
        record_every=record_every,
        estimate_momentum=False,
        stop_at=nq.target,
    )
    per_seed = [iterations_to_target(history, nq.target)]
    best: list[dict] = [{}]
    for grid in grids:
        choice = grid.best()
        lr, mu = float(choice["lr"][0]), float(choice["momentum"][0])
        pick = (grid["lr"] == lr) & (grid["momentum"] == mu)
        per_seed.append(grid["iterations"][pick])
        best.append({"lr": lr} if grid.sweep.optimizer == "adam" else {"lr": lr, "momentum": mu})
    per_seed_arr = np.array(per_seed)
    return TunerComparison(
        problem=nq.name,
        n_workers=m,
        methods=("yellowfin", "momentum", "adam"),
        iterations=np.median(per_seed_arr, axis=1),
        per_seed=per_seed_arr,
        best=tuple(best),
        sweeps=grids,
        seed=record(seq),
        options=dict(options),
    )


def _staleness(kind: str, m: int, steps: int, seq: np.random.SeedSequence) -> Trace:
    """The staleness the grids of a :class:`~asyncsim.sweep.Sweep` with ``staleness=kind`` see at
    M workers (asynchronous), drawn from ``seq``: i.i.d. with the queueing law or the event trace."""
    if kind == "geometric":
        return Trace.geometric(m, steps, rng=seq)
    return simulate(ClusterConfig(m), steps, rng=seq)
