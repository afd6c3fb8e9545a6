"""The robust region of the heavy ball (YellowFin's lemma): inside it the contraction rate is √μ
whatever the step size."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Executor
from typing import Any

import numpy as np
import pandas as pd

import theory
from asyncsim.engine import run
from asyncsim.experiments._schedule import Runner
from asyncsim.experiments.momentum import curvatures_of
from asyncsim.experiments.result import ExperimentResult, conduct, documented
from asyncsim.experiments.settings import settings_from
from asyncsim.measure import contraction_rate
from asyncsim.optim import heavy_ball
from asyncsim.problems import make_problem

__all__ = ["robust_region"]


def _data(s: dict, problem: Any, optimizer: Any) -> pd.DataFrame:
    h = curvatures_of(problem)
    if h is None:
        raise TypeError(
            f"problem must be a quadratic with known curvatures (a NoisyQuadratic), got {problem!r}"
        )
    h_min, h_max = float(h.min()), float(h.max())

    def radius(alpha: np.ndarray, mu: np.ndarray) -> np.ndarray:
        return theory.spectral_radius(alpha[..., None], mu[..., None], h).max(axis=-1)

    n_alpha, n_mu = s["grid"]
    alphas = np.geomspace(0.02, 5.0, n_alpha)
    mus = np.linspace(0.0, 0.98, n_mu)
    a, m = (v.ravel() for v in np.meshgrid(alphas, mus))
    heat = pd.DataFrame({"kind": "radius", "lr": a, "momentum": m, "rate": radius(a, m)})
    edge_mu = np.linspace(0.0, 0.99, 100)
    low = theory.robust_region(edge_mu, h_min)[0]
    high = theory.robust_region(edge_mu, h_max)[1]
    bounds = pd.DataFrame({"kind": "bounds", "momentum": edge_mu, "lower": low, "upper": high})
    measured_mu, measured_lr = [], []
    for mu in s["momenta"]:
        lo, hi = theory.robust_region(mu, h_min)[0], theory.robust_region(mu, h_max)[1]
        inside = np.geomspace(lo * 1.15, hi / 1.15, s["inside"])
        below = lo * np.array([0.25, 0.5])
        measured_lr += [*below, *inside]
        measured_mu += [mu] * (below.size + inside.size)
    lr, mu = np.array(measured_lr), np.array(measured_mu)
    instance = make_problem(problem) if isinstance(problem, str) else problem
    hist = run(
        instance, optimizer(lr, mu), None, s["steps"], record_every=1, estimate_momentum=False
    )
    if hist.distance is None:
        raise TypeError(f"problem {problem!r} must know its optimum (distance)")
    rate = contraction_rate(hist.distance[20:], hist.steps[20:])
    lo_all = theory.robust_region(mu, h_min)[0]
    hi_all = theory.robust_region(mu, h_max)[1]
    measured = pd.DataFrame(
        {
            "kind": "measured",
            "lr": lr,
            "momentum": mu,
            "rate": np.where(hist.diverged, np.inf, rate),
            "predicted": radius(lr, mu),
            "sqrt_momentum": np.sqrt(mu),
            "inside": (lr >= lo_all) & (lr <= hi_all),
        }
    )
    curve_lr = np.geomspace(0.01, 5.0, 200)
    curves = [
        pd.DataFrame(
            {
                "kind": "curve",
                "lr": curve_lr,
                "momentum": mu_c,
                "rate": radius(curve_lr, np.full_like(curve_lr, mu_c)),
            }
        )
        for mu_c in s["momenta"]
    ]
    data = pd.concat([heat, bounds, measured, *curves], ignore_index=True)
    data.attrs["curvatures"] = h.tolist()
    return data


def _compute(
    s: dict, root: int, runner: Runner, problem: Any, optimizer: Any
) -> tuple[pd.DataFrame, dict[str, Any]]:
    return runner.call(_data, s, problem, optimizer), {}


@documented
def robust_region(
    problem: Any = "q10",
    *,
    optimizer: Any = heavy_ball,
    momenta: Sequence[float] | None = None,
    inside: int | None = None,
    steps: int | None = None,
    scale: str = "quick",
    rng: Any = None,
    jobs: int = 1,
    executor: Executor | None = None,
    progress: bool | None = None,
) -> ExperimentResult:
    """The heavy ball's contraction rate inside and below the robust region
    (1-√μ)²/h_min ≤ α ≤ (1+√μ)²/h_max of a noiseless quadratic (theory/README.md §6).

    ``data`` kinds: ``radius`` (theory's spectral radius on an (α, μ) grid), ``bounds`` (the
    region's edges against μ), ``measured`` (per (α, μ): the measured rate of ‖w - w*‖, theory's
    radius, √μ, and whether α is inside), ``curve`` (theory's radius against α per μ).

    Parameters
    ----------
    problem : str or Problem
        A quadratic with known ``curvatures`` (default ``q10`` with κ = 5); noiseless for a clean rate.
    optimizer : callable
        A factory ``(lr, momentum) -> GradientTransformation`` with (B,) arrays (default the heavy
        ball, which the lemma is about).
    momenta : sequence of float or None
        The μ measured.
    inside : int or None
        Step sizes measured inside the region per μ (two more below it).
    steps : int or None
        Updates per run."""
    arguments = dict(locals())
    s = settings_from("robust_region", arguments, skip=("problem", "optimizer"))
    return conduct("robust_region", _compute, s, arguments, inputs=("problem", "optimizer"))
