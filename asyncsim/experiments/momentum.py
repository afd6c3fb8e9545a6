"""Asynchrony begets momentum: the best explicit momentum against the number of workers, and the
statistical penalty of asynchrony under three ways of tuning it (AbM §5; the "Tune your momentum"
post).

Every function here runs a :class:`~asyncsim.sweep.Sweep` (workers × α × μ × seeds) over any problem
and optimizer; where the problem is a quadratic with known curvatures, theory's expected-dynamics
predictions are added beside the measurement (theory/README.md §3).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Executor, Future
from typing import Any

import numpy as np
import pandas as pd

import theory
from asyncsim.cluster import ClusterConfig
from asyncsim.experiments._schedule import Runner, root_seed, runner
from asyncsim.experiments.result import ExperimentResult, conduct, documented
from asyncsim.experiments.settings import NEAR_OPTIMAL, settings, settings_from
from asyncsim.sweep import Sweep, SweepResult

__all__ = ["TUNINGS", "best_momentum", "momentum_sweep", "penalty", "single_run_momentum"]

TUNINGS: tuple[tuple[str, Any], ...] = (
    ("μ = 0.9 fixed", (0.9,)),
    ("tuned over μ ≥ 0", "nonnegative"),
    ("tuned over all μ", None),
)
"""The tuning rules of :func:`penalty`: (label, the momenta allowed: a tuple, "nonnegative", or None
for all)."""


def _grid_sweep(
    s: dict,
    root: int,
    problem: Any,
    optimizer: Any,
    cluster: ClusterConfig | None,
    **fields: Any,
) -> Sweep:
    """The sweep of settings ``s`` (workers, lrs, momenta, seeds, steps, record_every, target):
    geometric staleness without a cluster, the cluster's traces with one."""
    return Sweep(
        problem,
        lrs=s["lrs"],
        momenta=s["momenta"],
        workers=s["workers"],
        staleness="geometric" if cluster is None else "cluster",
        cluster=cluster,
        seeds=s["seeds"],
        steps=s["steps"],
        record_every=s["record_every"],
        target=s.get("target"),
        optimizer=optimizer,
        seed=root,
        **fields,
    )


_INPUTS = ("problem", "optimizer", "cluster")
"""The inputs of the grid experiments, beside their grid."""

_GRID = ("workers", "lrs", "momenta", "seeds", "steps", "record_every", "target")
"""The grid arguments of :func:`momentum_sweep`, :func:`best_momentum` and :func:`penalty`."""


def _grid_settings(scale: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """The nq50 grid of ``scale``, with the grid ``arguments`` (a function's locals) not None."""
    s = settings("nq50", scale, **{name: arguments[name] for name in _GRID})
    s.setdefault("target", None)
    return s


def momentum_sweep(
    problem: Any = "nq50",
    *,
    optimizer: Any = "heavy_ball",
    cluster: ClusterConfig | None = None,
    workers: Sequence[int] | None = None,
    lrs: Sequence[float] | None = None,
    momenta: Sequence[float] | None = None,
    seeds: int | None = None,
    steps: int | None = None,
    record_every: int | None = None,
    target: float | None = None,
    scale: str = "quick",
    rng: Any = None,
    jobs: int = 1,
    executor: Executor | None = None,
    progress: bool | None = None,
) -> SweepResult:
    """The grid search behind :func:`best_momentum` and :func:`penalty` (compute it once and pass it
    to both as ``sweep=``): M × α × μ × seeds, at the nq50 settings of the scale (M = 1 ... 16, the
    nine μ of theory/README.md §5, 128 seeds) unless overridden. Arguments as :func:`best_momentum`."""
    s = _grid_settings(scale, locals())
    with runner(jobs, executor, progress) as where:
        return where.sweep(_grid_sweep(s, root_seed(rng), problem, optimizer, cluster))


def grid_optimum(result: SweepResult, tolerance: float = NEAR_OPTIMAL) -> pd.DataFrame:
    """Per staleness point: the best (α, μ) by median iterations, and the band of μ within
    ``tolerance`` of the best (each μ at its own best α)."""
    med = result.median_iterations()  # (points, lrs, momenta)
    per_mu = med.min(axis=1)
    momenta = np.asarray(result.sweep.momenta)
    best = result.best()
    rows = []
    for p, (m, g) in enumerate(result.sweep.points()):
        near = momenta[per_mu[p] <= (1.0 + tolerance) * per_mu[p].min()]
        rows.append(
            {
                "workers": m if result.sweep.groups is None else g,
                "momentum": best["momentum"][p],
                "lr": best["lr"][p],
                "iterations": best["iterations"][p],
                "band_low": near.min() if near.size else np.nan,
                "band_high": near.max() if near.size else np.nan,
            }
        )
    return pd.DataFrame(rows)


def curvatures_of(problem: Any) -> np.ndarray | None:
    """Hessian eigenvalues of a quadratic problem (theory's input), or None for other problems."""
    from asyncsim.problems import make_problem

    instance = make_problem(problem) if isinstance(problem, str) else problem
    values = getattr(instance, "curvatures", None)
    return None if values is None else np.asarray(values, dtype=np.float64)


def _theory_explicit(curvatures: np.ndarray, workers: np.ndarray) -> pd.DataFrame:
    """Expected-dynamics optimum of the explicit momentum (and the additive rule) per M."""
    mu_s = theory.implicit_momentum(workers)
    opt = theory.optimal_explicit_momentum(mu_s, curvatures)
    single = theory.optimal_explicit_momentum(0.0, curvatures)
    return pd.DataFrame(
        {
            "workers": workers,
            "momentum": opt.mu_l,
            "lr": opt.alpha,
            "rate": opt.rate,
            "additive_rule": theory.additive_rule(float(single.mu_l), mu_s),
        }
    )


def _name(problem: Any) -> str:
    return (
        problem
        if isinstance(problem, str)
        else str(getattr(problem, "name", type(problem).__name__))
    )


def _tidy(data: pd.DataFrame) -> pd.DataFrame:
    data.insert(2, "implicit", 1.0 - 1.0 / data["workers"])
    return data[["problem", "kind", *[c for c in data.columns if c not in ("problem", "kind")]]]


def _compute_best(
    s: dict,
    root: int,
    runner: Runner,
    problem: Any,
    optimizer: Any,
    cluster: ClusterConfig | None,
    predict: bool,
    sweep: SweepResult | Future | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    if sweep is None:
        sweep = runner.sweep(_grid_sweep(s, root, problem, optimizer, cluster))
    grid = sweep.result() if isinstance(sweep, Future) else sweep
    name = _name(problem)
    frames = [grid_optimum(grid).assign(problem=name, kind="grid")]
    h = curvatures_of(problem) if predict else None
    if h is not None and cluster is None:
        workers = np.asarray(grid.sweep.workers)
        fine = np.unique(np.round(np.concatenate([np.geomspace(1, workers.max(), 13), workers]), 9))
        rows = runner.call(_theory_explicit, h, fine)
        frames += [
            rows.drop(columns="additive_rule").assign(problem=name, kind="expected-dynamics"),
            rows[["workers"]].assign(
                momentum=rows["additive_rule"], problem=name, kind="additive-rule"
            ),
        ]
    return _tidy(pd.concat(frames, ignore_index=True)), {"sweep": grid}


@documented
def best_momentum(
    problem: Any = "nq50",
    *,
    optimizer: Any = "heavy_ball",
    cluster: ClusterConfig | None = None,
    workers: Sequence[int] | None = None,
    lrs: Sequence[float] | None = None,
    momenta: Sequence[float] | None = None,
    seeds: int | None = None,
    steps: int | None = None,
    record_every: int | None = None,
    target: float | None = None,
    sweep: SweepResult | Future | None = None,
    predict: bool = True,
    scale: str = "quick",
    rng: Any = None,
    jobs: int = 1,
    executor: Executor | None = None,
    progress: bool | None = None,
) -> ExperimentResult:
    """The best explicit momentum against the number of workers M (asynchrony begets momentum).

    ``data`` rows of kind ``grid``: per M the (α, μ) with the fewest median updates to the target,
    and the band of μ within 5% of it; for a quadratic with known curvatures under i.i.d. geometric
    staleness, rows ``expected-dynamics`` (the optimal explicit μ of the expected dynamics,
    theory/README.md §3) and ``additive-rule`` (μ* - (1 - 1/M)). ``raw["sweep"]`` is the grid.

    Parameters
    ----------
    problem : str or Problem
        A reference problem name or any problem instance.
    optimizer : str or callable
        A name or a factory ``(lr, momentum, **options)`` (:class:`asyncsim.sweep.Sweep`).
    cluster : ClusterConfig or None
        None: i.i.d. geometric staleness; a config: the cluster model's traces (its worker count set
        per point).
    workers, lrs, momenta, seeds, steps, record_every, target
        The grid (default: the nq50 grid of the scale) and the loss target (default: the problem's).
    sweep : SweepResult or None
        A precomputed :func:`momentum_sweep` (the other grid arguments are then unused).
    predict : bool
        Add theory's rows for a quadratic (about two seconds per M of a fine grid of 13 or more)."""
    arguments = dict(locals())
    s = _grid_settings(scale, arguments)
    inputs = (*_INPUTS, "predict")
    return conduct("best_momentum", _compute_best, s, arguments, inputs=inputs, shared=("sweep",))


def _compute_single_run(
    s: dict, root: int, runner: Runner, problem: Any, optimizer: Any
) -> tuple[pd.DataFrame, dict[str, Any]]:
    options = (("noise", 0.0),) if isinstance(problem, str) else ()
    sweeps = [
        Sweep(
            problem,
            lrs=s["lrs"],
            momenta=s["momenta"],
            workers=(m,),
            seeds=1 if m == 1 else s["seeds"],
            steps=budget,
            record_every=s["record_every"],
            target=s["target"],
            metric="distance",
            optimizer=optimizer,
            problem_options=options,
            seed=root,
        )
        for m, budget in s["budget"].items()
    ]
    futures = [runner.background(runner.sweep, sweep) for sweep in sweeps]
    grids = [f.result() for f in futures]
    data = pd.concat([grid_optimum(g) for g in grids], ignore_index=True)
    return _tidy(data.assign(problem=_name(problem), kind="single-run")), {"sweeps": grids}


@documented
def single_run_momentum(
    problem: Any = "nq50",
    *,
    optimizer: Any = "heavy_ball",
    budget: dict[int, int] | None = None,
    lrs: Sequence[float] | None = None,
    momenta: Sequence[float] | None = None,
    seeds: int | None = None,
    record_every: int | None = None,
    target: float | None = None,
    scale: str = "quick",
    rng: Any = None,
    jobs: int = 1,
    executor: Executor | None = None,
    progress: bool | None = None,
) -> ExperimentResult:
    """The single-run optimum of theory/README.md §3: per M, the (α, μ) with the fewest median
    updates to a relative distance ‖w - w*‖ ≤ ``target`` ‖w_0 - w*‖ (default 1e-6) on a noiseless
    problem (a reference name runs with ``noise = 0``), i.i.d. geometric staleness.

    Parameters
    ----------
    problem : str or Problem
        Must know its optimum (``distance``).
    optimizer : str or callable
        As :func:`best_momentum`.
    budget : dict of int to int or None
        Updates per M (its keys are the worker counts; M = 1 runs one seed).
    lrs, momenta, seeds, record_every, target
        The grid and the relative distance."""
    arguments = dict(locals())
    s = settings_from("single_run", arguments, skip=("problem", "optimizer", "momenta"))
    s["momenta"] = settings("nq50", scale)["momenta"] if momenta is None else tuple(momenta)
    inputs = ("problem", "optimizer")
    return conduct("single_run_momentum", _compute_single_run, s, arguments, inputs=inputs)


def _compute_penalty(
    s: dict,
    root: int,
    runner: Runner,
    problem: Any,
    optimizer: Any,
    cluster: ClusterConfig | None,
    sweep: SweepResult | Future | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    if sweep is None:
        sweep = runner.sweep(_grid_sweep(s, root, problem, optimizer, cluster))
    grid = sweep.result() if isinstance(sweep, Future) else sweep
    workers = np.array(grid.sweep.workers)
    momenta = np.array(grid.sweep.momenta)
    frames = []
    for label, allowed in TUNINGS:
        chosen = momenta[momenta >= 0] if allowed == "nonnegative" else allowed
        best = grid.best(momenta=chosen)
        with np.errstate(invalid="ignore"):  # NaN where neither run reached the target
            ratio = best["iterations"] / best["iterations"][0]
        frames.append(
            pd.DataFrame(
                {
                    "tuning": label,
                    "workers": workers,
                    "momentum": best["momentum"],
                    "lr": best["lr"],
                    "iterations": best["iterations"],
                    "penalty": ratio,
                }
            )
        )
    h = curvatures_of(problem)
    if h is not None and cluster is None:
        predicted = runner.call(theory.predicted_penalty, workers, h)
        frames.append(
            pd.DataFrame(
                {
                    "tuning": "theory: tuned μ (expected dynamics)",
                    "workers": workers,
                    "penalty": predicted,
                }
            )
        )
    return pd.concat(frames, ignore_index=True), {"sweep": grid}


@documented
def penalty(
    problem: Any = "nq50",
    *,
    optimizer: Any = "heavy_ball",
    cluster: ClusterConfig | None = None,
    workers: Sequence[int] | None = None,
    lrs: Sequence[float] | None = None,
    momenta: Sequence[float] | None = None,
    seeds: int | None = None,
    steps: int | None = None,
    record_every: int | None = None,
    target: float | None = None,
    sweep: SweepResult | Future | None = None,
    scale: str = "quick",
    rng: Any = None,
    jobs: int = 1,
    executor: Executor | None = None,
    progress: bool | None = None,
) -> ExperimentResult:
    """The statistical penalty of asynchrony (median updates to the target at M over those at the
    first M) under the three tuning rules of :data:`TUNINGS`: μ fixed at 0.9, tuned over μ ≥ 0, tuned
    over all μ (negative allowed); for a quadratic under geometric staleness, theory's prediction
    for tuned μ beside them. Arguments as :func:`best_momentum` (the grid must hold μ = 0.9)."""
    arguments = dict(locals())
    s = _grid_settings(scale, arguments)
    return conduct("penalty", _compute_penalty, s, arguments, inputs=_INPUTS, shared=("sweep",))
