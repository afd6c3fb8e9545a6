"""The expected iterate under geometric staleness (AbM Thm 3, 5, 6, 7): measured with the engine's
expected-dynamics mode (the gradient replaced by ``Σ_l q_l ∇f(w_{t-l})``, the exact expected
recursion of theory/README.md §2-3) on a noiseless quadratic, beside theory's rates.

Two experiments: :func:`implicit_momentum_equivalence` (expected stale SGD is momentum SGD with
momentum 1 - 1/M and step α/M; with explicit μ the total is 1 - (1 - μ)/M only to first order) and
:func:`mean_iterate_momentum` (the optimal explicit momentum of the mean iterate against M, AbM
Fig. 6).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Executor
from typing import Any

import numpy as np
import pandas as pd

import theory
from asyncsim.engine import History, run
from asyncsim.experiments._schedule import Runner
from asyncsim.experiments.momentum import curvatures_of
from asyncsim.experiments.result import ExperimentResult, conduct, documented
from asyncsim.experiments.settings import settings_from
from asyncsim.measure import contraction_rate, iterations_to_target
from asyncsim.optim import heavy_ball
from asyncsim.problems import Problem, make_problem
from asyncsim.trace import StalenessLaw

__all__ = ["implicit_momentum_equivalence", "mean_iterate_momentum"]

#: Relative distance, as a multiple of the law's truncated tail, below which no rate is fit.
#: :meth:`~asyncsim.trace.StalenessLaw.geometric` truncates the law where its tail falls below
#: ``tail``, which leaves modes of about that relative size decaying at about 1 - 1/M: far below
#: the start they can dominate a faster true rate (measured on q10: 0.94 instead of 0.92 at M = 16).
_FLOOR_OVER_TAIL = 1e3


def _instance(problem: Any) -> Problem:
    """A reference name as a problem (noiseless: the expected mode needs no noise), or the instance."""
    if not isinstance(problem, str):
        return problem
    made = make_problem(problem)
    return make_problem(problem, noise=0.0) if getattr(made, "noise", 0.0) else made


def _curvatures(problem: Problem) -> np.ndarray:
    h = curvatures_of(problem)
    if h is None:
        raise TypeError(
            f"problem must be a quadratic with known curvatures (a NoisyQuadratic, or a problem "
            f"with a curvatures attribute), got {problem!r}"
        )
    return h


def _rates(history: History, skip: float, floor: float = 0.0) -> np.ndarray:
    """The contraction rate of ‖w - w*‖ per configuration, fit over its recorded points from the
    first ``skip`` of them (the transient) to the last above ``floor`` times the starting distance
    and before divergence (NaN with too few points, inf if it diverged before the window)."""
    if history.distance is None:
        raise TypeError(f"problem {history.problem!r} must know its optimum (distance)")
    relative = history.distance / history.distance[0]
    frozen = history.steps[:, None] >= np.where(
        history.diverged_at >= 0, history.diverged_at, np.inf
    )
    usable = np.isfinite(relative) & (relative > floor) & ~frozen
    length = np.where(usable.all(axis=0), usable.shape[0], np.argmin(usable, axis=0))
    rates = np.full(relative.shape[1], np.nan)
    for b, n in enumerate(length):
        start = int(skip * n)
        rates[b] = contraction_rate(relative[start:n, b : b + 1], history.steps[start:n])[0]
    return np.where(history.diverged & ~np.isfinite(rates), np.inf, rates)


def _law(m: int, tail: float) -> tuple[StalenessLaw, float]:
    """The geometric law of M workers truncated at ``tail``, and the floor of its rates (none
    when M = 1: one term, nothing truncated)."""
    return StalenessLaw.geometric(m, tail=tail), 0.0 if m == 1 else _FLOOR_OVER_TAIL * tail


def _relative(measured: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.abs(measured - predicted) / predicted


# ------------------------------------------------------------------------------------------ Thm 3/5/6
def _equivalence(s: dict, problem: Any, optimizer: Any, m: int) -> pd.DataFrame:
    """One M: every (μ, effective step) in one expected-mode run and one realized heavy-ball run."""
    instance = _instance(problem)
    h = _curvatures(instance)
    mu, step = (a.ravel() for a in np.meshgrid(s["momenta"], s["effective_steps"], indexing="ij"))
    alpha = step * m / h.max()
    mu_s = float(theory.implicit_momentum(m))
    total = theory.total_momentum(mu, m)
    law, floor = _law(m, s["tail"])
    expected = run(
        instance,
        optimizer(alpha, mu),
        law,
        s["steps"],
        record_every=1,
        estimate_momentum=False,
    )
    realized = run(
        instance,
        optimizer(alpha / m, total),
        None,
        s["steps"],
        record_every=1,
        estimate_momentum=False,
    )
    measured = _rates(expected, s["skip"], floor)
    hb = _rates(realized, s["skip"])
    predicted = theory.spectral_radius(alpha[:, None] / m, total[:, None], h).max(axis=-1)
    exact = theory.expected_rate(alpha, mu, mu_s, h)
    return pd.DataFrame(
        {
            "workers": m,
            "momentum": mu,
            "total_momentum": total,
            "effective_step": step,
            "lr": alpha,
            "measured": measured,
            "predicted": predicted,
            "relative_difference": _relative(measured, predicted),
            "heavy_ball": hb,
            "heavy_ball_difference": _relative(measured, hb),
            "exact": exact,
            "exact_difference": _relative(measured, exact),
            "diverged": expected.diverged,
        }
    )


def _compute_equivalence(
    s: dict, root: int, runner: Runner, problem: Any, optimizer: Any
) -> tuple[pd.DataFrame, dict[str, Any]]:
    frames = runner.map(_equivalence, [(s, problem, optimizer, m) for m in s["workers"]])
    data = pd.concat(frames, ignore_index=True)
    return data, {"per_case": data.copy()}


@documented
def implicit_momentum_equivalence(
    problem: Any = "q10",
    *,
    optimizer: Any = heavy_ball,
    workers: Sequence[int] | None = None,
    momenta: Sequence[float] | None = None,
    effective_steps: Sequence[float] | None = None,
    steps: int | None = None,
    skip: float | None = None,
    tail: float | None = None,
    scale: str = "quick",
    rng: Any = None,
    jobs: int = 1,
    executor: Executor | None = None,
    progress: bool | None = None,
) -> ExperimentResult:
    """Expected stale SGD is momentum SGD (AbM Thm 3, 5; Thm 6 with explicit momentum): under i.i.d.
    geometric staleness of M workers the expected iterate follows the heavy ball with momentum
    1 - 1/M (with explicit μ: the total 1 - (1 - μ)/M, theory/README.md §2) and step α/M.

    Per M, explicit μ and step α, the engine's expected-dynamics mode (a
    :class:`~asyncsim.trace.StalenessLaw` ``geometric(M)``, no noise) runs ``optimizer(α, μ)``; the
    contraction rate of ‖E w_t - w*‖ (:func:`~asyncsim.measure.contraction_rate`, past the first
    ``skip`` of the points above 1e3 times the law's truncated tail) is held against theory's
    spectral radius of the heavy ball with (α/M, 1 - (1 - μ)/M) over the problem's curvatures
    (``predicted``), against the measured rate of a realized heavy-ball run with those parameters
    (``heavy_ball``), and against the exact rate of the expected recursion, the largest root of the
    cubic of theory/README.md §3 (``exact``).

    What holds: at μ = 0 the expected recursion *is* the heavy ball with (α/M, 1 - 1/M) for t ≥ 1
    (only the first step differs: w_1 = w_0 - α∇f(w_0)), so every rate agrees. With explicit μ the
    lag polynomial is (1 - μB)(1 - (1 - 1/M)B), a third-order recursion; the total momentum matches
    it at B = 1 only, so ``predicted`` is a first-order approximation and ``exact`` the rate itself
    (with μ > 0 and large M the expected iterate can diverge where the heavy ball converges).

    ``data``: one row per (M, μ, α) with ``effective_step`` = α h_max/M, the measured rate, the
    three references and the relative differences to each (``relative_difference`` to
    ``predicted``), and the divergence flag. ``raw["per_case"]`` the same table (the runs are
    deterministic: there are no seeds to resample).

    Parameters
    ----------
    problem : str or Problem
        A quadratic with known ``curvatures``, affine gradient and ``distance`` (default ``q10``; a
        reference name runs noiseless).
    optimizer : callable
        A factory ``(lr, momentum) -> GradientTransformation`` taking (B,) arrays (default the heavy
        ball, which the theorems are about); it also runs the realized comparison.
    workers : sequence of int or None
        The M.
    momenta : sequence of float or None
        The explicit μ.
    effective_steps : sequence of float or None
        The steps as α h_max / M (α = effective_step · M / h_max): the same effective step at every M.
    steps : int or None
        Updates per run.
    skip : float or None
        Fraction of each run's points left out of its rate (the transient); the rate is fit down to
        a relative distance of 1e3 ``tail`` (the truncated law leaves modes of the tail's size).
    tail : float or None
        Where the geometric law is truncated (:meth:`~asyncsim.trace.StalenessLaw.geometric`).

    References
    ----------
    I. Mitliagkas, C. Zhang, S. Hadjis, C. Ré, "Asynchrony begets Momentum, with an Application to
    Deep Learning", Allerton 2016, arXiv:1605.09774, Theorems 3, 5 and 6."""
    arguments = dict(locals())
    s = settings_from("implicit_momentum", arguments, skip=("problem", "optimizer"))
    inputs = ("problem", "optimizer")
    return conduct(
        "implicit_momentum_equivalence", _compute_equivalence, s, arguments, inputs=inputs
    )


# ------------------------------------------------------------------------------------------ Thm 7
def _grid_search(s: dict, problem: Any, optimizer: Any, m: int) -> tuple[dict, pd.DataFrame]:
    """One M: every (α, μ) of the grid in one expected-mode run; the best by updates to the relative
    distance (ties by the rate) and by the rate, beside theory's optimum."""
    instance = _instance(problem)
    h = _curvatures(instance)
    mu, step = (a.ravel() for a in np.meshgrid(s["momenta"], s["effective_steps"], indexing="ij"))
    alpha = step * m / h.max()
    budget = int(s["budget"][m])
    law, floor = _law(m, s["tail"])
    history = run(
        instance,
        optimizer(alpha, mu),
        law,
        budget,
        record_every=1,
        estimate_momentum=False,
    )
    iterations = iterations_to_target(history, s["target"], metric="distance")
    rate = _rates(history, s["skip"], floor)
    ranked = np.where(np.isfinite(rate), rate, np.inf)
    by_updates = int(np.lexsort((ranked, iterations))[0])
    by_rate = int(np.argmin(ranked))
    mu_s = float(theory.implicit_momentum(m))
    optimum = theory.optimal_explicit_momentum(mu_s, h)
    on_grid = theory.optimal_explicit_momentum(
        mu_s, h, mu_grid=np.asarray(s["momenta"]), alpha_grid=np.unique(alpha)
    )
    row = {
        "workers": m,
        "implicit": mu_s,
        "momentum": mu[by_updates],
        "lr": alpha[by_updates],
        "iterations": iterations[by_updates],
        "momentum_by_rate": mu[by_rate],
        "rate": ranked[by_rate],
        "theory_momentum": float(optimum.mu_l),
        "theory_lr": float(optimum.alpha),
        "theory_rate": float(optimum.rate),
        "theory_grid_momentum": float(on_grid.mu_l),
        "difference": mu[by_updates] - float(optimum.mu_l),
        "difference_by_rate": mu[by_rate] - float(optimum.mu_l),
    }
    cases = pd.DataFrame(
        {
            "workers": m,
            "momentum": mu,
            "effective_step": step,
            "lr": alpha,
            "iterations": iterations,
            "rate": rate,
            "exact": theory.expected_rate(alpha, mu, mu_s, h),
        }
    )
    return row, cases


def _compute_mean_iterate(
    s: dict, root: int, runner: Runner, problem: Any, optimizer: Any
) -> tuple[pd.DataFrame, dict[str, Any]]:
    results = runner.map(_grid_search, [(s, problem, optimizer, m) for m in s["budget"]])
    data = pd.DataFrame([row for row, _ in results])
    return data, {"per_case": pd.concat([cases for _, cases in results], ignore_index=True)}


@documented
def mean_iterate_momentum(
    problem: Any = "q10",
    *,
    optimizer: Any = heavy_ball,
    budget: dict[int, int] | None = None,
    momenta: Sequence[float] | None = None,
    effective_steps: Sequence[float] | None = None,
    target: float | None = None,
    skip: float | None = None,
    tail: float | None = None,
    scale: str = "quick",
    rng: Any = None,
    jobs: int = 1,
    executor: Executor | None = None,
    progress: bool | None = None,
) -> ExperimentResult:
    """The optimal explicit momentum of the mean iterate against M (AbM Thm 7, Fig. 6): a grid
    search over (α, μ) in the engine's expected-dynamics mode (geometric staleness of M workers, the
    exact expected recursion) on a noiseless quadratic, beside theory's optimum
    ``optimal_explicit_momentum(1 - 1/M, curvatures).mu_l`` (theory/README.md §3).

    Per M the grid's best μ is the one with the fewest updates until
    ‖E w_t - w*‖ ≤ ``target`` ‖w_0 - w*‖ (ties broken by the measured rate), and, separately, the
    one with the smallest measured contraction rate (the criterion theory optimizes).

    ``data``: one row per M: the best (μ, α) and its updates, the best μ by rate and its rate,
    theory's continuous optimum (μ, α, rate), theory's optimum on the same grid
    (``theory_grid_momentum``), and the differences of the measured μ from theory's continuous μ
    (``difference``, ``difference_by_rate``). ``raw["per_case"]``: every grid point's updates,
    measured rate and theory's exact rate (deterministic runs: no seeds).

    Parameters
    ----------
    problem : str or Problem
        A quadratic with known ``curvatures``, affine gradient and ``distance`` (default ``q10``; a
        reference name runs noiseless, e.g. ``"nq50"`` with noise 0).
    optimizer : callable
        A factory ``(lr, momentum) -> GradientTransformation`` taking (B,) arrays.
    budget : dict of int to int or None
        Updates per M (its keys are the worker counts).
    momenta : sequence of float or None
        The fine μ grid.
    effective_steps : sequence of float or None
        The α grid as α h_max / M (α = effective_step · M / h_max).
    target : float or None
        The relative distance (default 1e-6).
    skip, tail : float or None
        As :func:`implicit_momentum_equivalence`: the transient left out of each rate, and the
        truncation of the law (rates are fit down to a relative distance of 1e3 ``tail``).

    References
    ----------
    I. Mitliagkas, C. Zhang, S. Hadjis, C. Ré, "Asynchrony begets Momentum, with an Application to
    Deep Learning", Allerton 2016, arXiv:1605.09774, Theorem 7 and Fig. 6."""
    arguments = dict(locals())
    s = settings_from("mean_iterate", arguments, skip=("problem", "optimizer"))
    s["momenta"] = tuple(float(v) for v in s["momenta"])
    s["effective_steps"] = tuple(float(v) for v in s["effective_steps"])
    inputs = ("problem", "optimizer")
    return conduct("mean_iterate_momentum", _compute_mean_iterate, s, arguments, inputs=inputs)
