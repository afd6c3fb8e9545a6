"""Predictions of theory/ held against measurements of the engine (issue: theory meets asyncsim).

theory/ never imports asyncsim; this test brings them together.
"""

from __future__ import annotations

import numpy as np
import pytest

from asyncsim.engine import run
from asyncsim.measure import contraction_rate
from asyncsim.optim import heavy_ball
from asyncsim.problems import make_problem
from asyncsim.sweep import Sweep, run_sweep
from asyncsim.trace import StalenessLaw
from theory import expected_rate, optimal_explicit_momentum, robust_region, spectral_radius

# The μ grid of theory/README.md §5.
MU_GRID = np.array([-0.9, -0.675, -0.45, -0.225, 0.0, 0.225, 0.45, 0.675, 0.9])
SPACING = 0.225


def measured_rates(problem, lrs, mus, law, steps: int) -> np.ndarray:
    """Contraction per step of each (α, μ) configuration, inf where the run diverged."""
    hist = run(problem, heavy_ball(lrs, mus), law, steps, record_every=1, estimate_momentum=False)
    rates = contraction_rate(hist.distance[20:], hist.steps[20:])
    return np.where(hist.diverged, np.inf, rates)


def test_heavy_ball_contraction_equals_spectral_radius_inside_and_outside_the_region() -> None:
    q = make_problem("q10", kappa=5)
    h = q.curvatures
    alpha, mu = (a.ravel() for a in np.meshgrid(np.geomspace(0.05, 3.0, 15), [0.0, 0.3, 0.6, 0.8]))
    predicted = spectral_radius(alpha[:, None], mu[:, None], h[None, :]).max(axis=1)
    low, high = robust_region(mu[:, None], h[None, :])
    # away from the region's edges (a repeated eigenvalue adds a factor t there), and measurable
    margin = np.minimum(np.abs(alpha[:, None] / low - 1), np.abs(alpha[:, None] / high - 1)).min(
        axis=1
    )
    keep = (margin > 0.05) & (predicted < 0.99) & (predicted > 0.3)
    inside = ((alpha[:, None] >= low) & (alpha[:, None] <= high)).all(axis=1)
    assert keep[inside].sum() >= 5 and keep[~inside].sum() >= 15, "the grid must cover both cases"
    rates = measured_rates(q, alpha[keep], mu[keep], None, 1500)
    np.testing.assert_allclose(rates, predicted[keep], rtol=5e-3)
    np.testing.assert_allclose(rates[inside[keep]], np.sqrt(mu[keep][inside[keep]]), rtol=5e-3)


@pytest.mark.parametrize("kappa", [5, 20])
@pytest.mark.parametrize("mu_s", [0.0, 0.5, 0.75, 0.875])
def test_expected_dynamics_rate_and_its_best_momentum(kappa: int, mu_s: float) -> None:
    q = make_problem("q10", kappa=kappa)
    m = round(1 / (1 - mu_s))
    alphas = 2.0 ** np.arange(-4, 5.01, 0.5)
    alpha, mu = (a.ravel() for a in np.meshgrid(alphas, MU_GRID, indexing="ij"))
    rates = measured_rates(q, alpha, mu, StalenessLaw.geometric(m), 1500)
    predicted = expected_rate(alpha, mu, mu_s, q.curvatures)
    measurable = (predicted > 0.3) & (predicted < 0.99)
    # a finite horizon measures repeated and near-equal roots slightly slow: rtol 1e-2
    np.testing.assert_allclose(rates[measurable], predicted[measurable], rtol=1e-2)
    # the grid's best explicit momentum, measured, against the theory's optimum over the same grid
    measured_best = mu[np.nanargmin(np.where(np.isfinite(rates), rates, np.inf))]
    theory_best = optimal_explicit_momentum(mu_s, q.curvatures, mu_grid=MU_GRID, alpha_grid=alphas)
    assert abs(measured_best - float(theory_best.mu_l)) <= SPACING + 1e-12


@pytest.mark.slow
@pytest.mark.parametrize("kappa", [5, 20])
def test_single_run_optimum_lags_the_mean_iterate_optimum(kappa: int) -> None:
    """Realized runs want more momentum than the mean iterate: the single-run optimum (median over
    seeds of iterations to ‖w - w*‖ ≤ 1e-6 ‖w_0 - w*‖, theory/README.md §3) is never below the
    expected-dynamics optimum on the same grids, and at μ_S = 0 the two agree."""
    alphas = tuple(2.0 ** np.arange(-3, 3.01, 0.5))
    sweep = Sweep(
        "q10",
        lrs=alphas,
        momenta=tuple(MU_GRID),
        workers=(1, 2, 4, 8),
        seeds=32,  # the landscape is flat at M = 8: fewer seeds let noise pick the optimum
        steps=3000,
        record_every=5,
        target=1e-6,
        metric="distance",
        problem_options=(("kappa", kappa),),
    )
    single = run_sweep(sweep).best()["momentum"]
    curvatures = make_problem("q10", kappa=kappa).curvatures
    mu_s = 1 - 1 / np.array(sweep.workers)
    mean_iterate = optimal_explicit_momentum(
        mu_s, curvatures, mu_grid=MU_GRID, alpha_grid=alphas
    ).mu_l
    assert abs(single[0] - mean_iterate[0]) <= SPACING + 1e-12
    assert np.all(single >= mean_iterate - 1e-12), (single, mean_iterate)
    assert np.all(np.diff(single) <= SPACING + 1e-12)  # non-increasing up to one grid step
