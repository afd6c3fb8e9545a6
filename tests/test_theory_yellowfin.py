"""theory.yellowfin: the SingleStep solution, its accuracy and a brute-force check."""

from __future__ import annotations

import mpmath
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose
from scipy.optimize import minimize_scalar

from theory.momentum import heavy_ball_optimum
from theory.yellowfin import (
    _root_pair,
    cardano_root,
    cubic_root,
    single_step,
    single_step_objective,
)


@pytest.mark.parametrize(
    ("inputs", "mu", "alpha", "constrained"),
    [
        ((1, 4, 1, 1), 0.1683014, 0.3478104, False),
        ((1, 100, 1, 1), 0.6694215, 0.0330579, True),
        ((2, 8, 0.5, 0.25), 0.25, 0.125, False),
    ],
)
def test_examples(inputs, mu: float, alpha: float, constrained: bool) -> None:
    sol = single_step(*inputs)
    assert_allclose([sol.mu, sol.alpha], [mu, alpha], rtol=0, atol=1e-6)
    assert bool(sol.constrained) is constrained


def test_example_p_and_root() -> None:
    sol = single_step(2, 8, 0.5, 0.25)
    assert_allclose([sol.p, sol.root], [0.25, 0.5], rtol=1e-15)


def test_binding_constraint_is_the_optimal_heavy_ball() -> None:
    sol = single_step(1.0, 100.0, 1.0, 1.0)
    opt = heavy_ball_optimum(1.0, 100.0)
    assert_allclose([sol.mu, sol.alpha, sol.mu_lower], [opt.mu, opt.alpha, opt.mu], rtol=1e-14)


def _reference_roots(p_values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``r`` and ``1 - r`` at 60 digits (mpmath)."""
    mpmath.mp.dps = 60
    r_ref, s_ref = [], []
    for value in p_values:
        p_mp = mpmath.mpf(float(value))
        roots = mpmath.polyroots([-1, 3, -(3 + p_mp), 1], maxsteps=400, extraprec=400)
        (root,) = [
            mpmath.re(z) for z in roots if abs(mpmath.im(z)) < 1e-40 and 0 < mpmath.re(z) < 1
        ]
        r_ref.append(float(root))
        s_ref.append(float(1 - root))
    return np.array(r_ref), np.array(s_ref)


def test_cubic_root_relative_accuracy_over_p_1e_minus12_to_1e20() -> None:
    p_values = np.logspace(-12, 20, 97)
    r_ref, s_ref = _reference_roots(p_values)
    r, s = _root_pair(p_values)
    assert_allclose(r, r_ref, rtol=1e-13, atol=0)
    assert_allclose(s, s_ref, rtol=1e-13, atol=0)  # so alpha = (1 - r)**2 / h_min is accurate too
    assert_allclose(cubic_root(p_values), r)


def test_cardano_agrees_for_moderate_p_and_fails_for_large_p() -> None:
    moderate = np.logspace(-6, 4, 41)
    assert_allclose(cardano_root(moderate), cubic_root(moderate), rtol=1e-9)
    big = np.array([1e16])
    r_ref, _ = _reference_roots(big)
    assert abs(cardano_root(big)[0] / r_ref[0] - 1) > 1e-3  # the closed form is useless here
    assert abs(cubic_root(big)[0] / r_ref[0] - 1) < 1e-13


def test_limits_c_to_0_and_d_to_0() -> None:
    no_noise = single_step(1.0, 4.0, 0.0, 1.0)  # C = 0: p = inf, r = 0, mu = mu_lb
    assert no_noise.p == np.inf and no_noise.root == 0.0
    assert no_noise.constrained and no_noise.mu == no_noise.mu_lower
    at_optimum = single_step(1.0, 4.0, 1.0, 0.0)  # D = 0: p = 0, r = 1, mu = 1, alpha = 0
    assert at_optimum.p == 0.0 and at_optimum.root == 1.0
    assert at_optimum.mu == 1.0 and at_optimum.alpha == 0.0
    # and continuously so
    tiny = np.logspace(-30, -10, 5)
    assert_allclose(single_step(1.0, 4.0, tiny, 1.0).mu, no_noise.mu, rtol=1e-12)
    assert_allclose(single_step(1.0, 4.0, 1.0, tiny).root, 1.0, rtol=0, atol=1e-6)


def test_vectorized_broadcasting() -> None:
    sol = single_step(np.array([1.0, 2.0])[:, None], 10.0, np.logspace(-3, 3, 7), 1.0)
    assert sol.mu.shape == sol.alpha.shape == sol.constrained.shape == (2, 7)
    single = single_step(2.0, 10.0, 1e-3, 1.0)
    assert_allclose(sol.alpha[1, 0], single.alpha)


def _brute_force(h_min: float, h_max: float, var: float, dist: float) -> tuple[float, float]:
    """Minimize ``mu D**2 + alpha**2 C`` over ``r = sqrt(mu)`` in ``[r_lb, 1]`` with
    ``alpha = (1 - r)**2 / h_min``: a grid of 20001 points, then a bounded scalar minimization around
    the best one. Returns ``(mu, alpha)``."""
    r_lb = (np.sqrt(h_max) - np.sqrt(h_min)) / (np.sqrt(h_max) + np.sqrt(h_min))
    scale = dist**2 + var / h_min**2  # keep the objective O(1)

    def objective(r: np.ndarray) -> np.ndarray:
        return single_step_objective(np.asarray(r) ** 2, h_min, var, dist) / scale

    grid = np.linspace(r_lb, 1.0, 20001)
    best = int(np.argmin(objective(grid)))
    low, high = grid[max(best - 1, 0)], grid[min(best + 1, grid.size - 1)]
    if high > low:
        res = minimize_scalar(
            objective, bounds=(low, high), method="bounded", options={"xatol": 1e-12}
        )
        r = res.x if res.fun <= objective(grid[best]) else grid[best]
    else:
        r = grid[best]
    return float(r**2), float((1 - r) ** 2 / h_min)


@settings(deadline=None, max_examples=60)
@given(
    st.floats(1e-2, 1e2),  # h_min
    st.floats(1.0, 1e4),  # kappa
    st.floats(1e-3, 1e3),  # C
    st.floats(1e-3, 1e3),  # D
)
def test_single_step_equals_brute_force(
    h_min: float, kappa: float, var: float, dist: float
) -> None:
    """Over h_min in [1e-2, 1e2], kappa in [1, 1e4], C and D in [1e-3, 1e3]: mu and alpha h_min (both
    in [0, 1]) agree with the brute-force minimizer to 1e-6, and the objective is no worse."""
    h_max = h_min * kappa
    sol = single_step(h_min, h_max, var, dist)
    mu_bf, alpha_bf = _brute_force(h_min, h_max, var, dist)
    assert_allclose(sol.mu, mu_bf, rtol=0, atol=1e-6)
    assert_allclose(sol.alpha * h_min, alpha_bf * h_min, rtol=0, atol=1e-6)
    ours = single_step_objective(sol.mu, h_min, var, dist)
    theirs = single_step_objective(mu_bf, h_min, var, dist)
    assert ours <= theirs * (1 + 1e-12)


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: single_step(0.0, 1.0, 1.0, 1.0), "h_min"),
        (lambda: single_step(-1.0, 1.0, 1.0, 1.0), "h_min"),
        (lambda: single_step(2.0, 1.0, 1.0, 1.0), "h_max"),
        (lambda: single_step(1.0, 2.0, -1.0, 1.0), "C"),
        (lambda: single_step(1.0, 2.0, 1.0, -1.0), "D"),
        (lambda: single_step(1.0, 2.0, 0.0, 0.0), "C and D"),
        (lambda: cubic_root(-1.0), "p"),
        (lambda: cardano_root(0.0), "p"),
        (lambda: single_step_objective(1.5, 1.0, 1.0, 1.0), "mu"),
        (lambda: single_step_objective(0.5, 0.0, 1.0, 1.0), "h_min"),
    ],
)
def test_bad_input_names_the_parameter(call, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        call()
