"""theory.momentum: robust region, spectral radius and the optimal heavy ball."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose

from theory import momentum
from theory.momentum import (
    covered_condition_number,
    curvature_range,
    heavy_ball_optimum,
    momentum_eigenvalues,
    momentum_operator,
    robust_region,
    spectral_radius,
)
from theory.numeric import lambdify_numpy
from theory.symbols import alpha, h, mu, x

# Properties: mu in [0, 1), curvature h in [1e-3, 1e3].
MOMENTA = st.floats(0.0, 1.0, exclude_max=True)
CURVATURES = st.floats(1e-3, 1e3)
FRACTIONS = st.floats(0.0, 1.0)


def test_robust_region_examples() -> None:
    assert_allclose(robust_region(0.81, 1.0), (0.01, 3.61), atol=1e-12)
    assert_allclose(robust_region(0.25, 2.0), (0.125, 1.125), atol=1e-12)


def test_optimal_heavy_ball_examples() -> None:
    opt = heavy_ball_optimum(0.01, 1.0)
    # Exactly: sqrt(mu*) = 9/11, alpha* = 4/1.1**2 = 400/121; the spec prints them rounded.
    assert_allclose([opt.mu, opt.alpha, opt.rate], [81 / 121, 400 / 121, 9 / 11], rtol=1e-14)
    assert_allclose(opt.mu, 0.669421, atol=1e-6)
    assert round(float(opt.alpha), 5) == 3.30579
    assert_allclose(heavy_ball_optimum(1.0, 100.0).alpha, 0.0330579, atol=1e-6)


def test_optimum_puts_the_range_on_the_region_edges() -> None:
    h_min, h_max = np.array([0.01, 1.0, 2.0]), np.array([1.0, 100.0, 2.0])
    opt = heavy_ball_optimum(h_min, h_max)
    assert_allclose(robust_region(opt.mu, h_min)[0], opt.alpha)
    assert_allclose(robust_region(opt.mu, h_max)[1], opt.alpha)
    assert_allclose(covered_condition_number(opt.mu), h_max / h_min)
    assert_allclose(curvature_range(opt.alpha, opt.mu), (h_min, h_max))
    # The worst spectral radius over the range is the rate; a smaller mu does worse.
    curv = np.linspace(h_min, h_max, 101)
    assert_allclose(spectral_radius(opt.alpha, opt.mu, curv).max(axis=0), opt.rate, atol=1e-7)
    worse = spectral_radius(opt.alpha[:2], 0.99 * opt.mu[:2], curv[:, :2]).max(axis=0)
    assert np.all(worse > opt.rate[:2])


@settings(deadline=None)
@given(MOMENTA, CURVATURES, FRACTIONS)
def test_spectral_radius_is_sqrt_mu_inside_the_region(m: float, c: float, frac: float) -> None:
    low, high = robust_region(m, c)
    step = low + frac * (high - low)
    if step <= 0.0:  # mu rounds to 1 only at the lower edge: alpha must stay positive
        return
    assert_allclose(spectral_radius(step, m, c), np.sqrt(m), rtol=0, atol=1e-7)


@settings(deadline=None)
@given(
    st.floats(0.0, 0.99),
    CURVATURES,
    st.floats(1e-3, 1.0),
    st.booleans(),
)
def test_spectral_radius_is_larger_outside_the_region(
    m: float, c: float, margin: float, above: bool
) -> None:
    """At least a relative ``margin >= 1e-3`` beyond an edge the radius exceeds ``sqrt(mu)`` by a
    relative 1e-6. (Below the lower edge the excess is about ``(1 - sqrt(mu)) sqrt(margin/sqrt(mu))``,
    which vanishes as ``mu -> 1``: hence ``mu <= 0.99`` here.)"""
    low, high = robust_region(m, c)
    step = high * (1 + margin) if above else low * (1 - margin)
    if step <= 0.0:
        return
    radius = spectral_radius(step, m, c)
    assert radius > np.sqrt(m) * (1 + 1e-6)
    assert radius > np.sqrt(m)


def test_operator_matches_sympy() -> None:
    values = {alpha: 0.3, mu: 0.5, h: 2.0}
    expected = np.array(momentum.OPERATOR.subs(values).tolist(), dtype=float)
    assert_allclose(momentum_operator(0.3, 0.5, 2.0), expected)
    assert momentum_operator(np.ones(4), 0.5, np.ones((3, 1))).shape == (3, 4, 2, 2)


def test_eigenvalues_match_lambdified_roots_and_linalg() -> None:
    rng = np.random.default_rng(3)
    a = 10 ** rng.uniform(-3, 1, 500)
    m = rng.uniform(-0.95, 0.999, 500)
    c = 10 ** rng.uniform(-2, 2, 500)
    eig = momentum_eigenvalues(a, m, c)
    # The sympy roots of the characteristic polynomial, lambdified, at complex inputs (complex sqrt).
    roots = [lambdify_numpy(root, (alpha, mu, h)) for root in sp.solve(momentum.CHARPOLY, x)]
    symbolic = np.stack([f(a + 0j, m + 0j, c + 0j) for f in roots], axis=-1)
    key = np.sort_complex
    assert_allclose(key(eig), key(symbolic), rtol=1e-7, atol=1e-9)
    linalg = np.linalg.eigvals(momentum_operator(a, m, c))
    assert_allclose(key(eig), key(linalg), rtol=1e-6, atol=1e-9)
    assert_allclose(spectral_radius(a, m, c), np.abs(linalg).max(axis=-1), rtol=1e-6, atol=1e-9)
    assert_allclose(np.abs(eig).max(axis=-1), spectral_radius(a, m, c), rtol=1e-12)
    assert_allclose(np.prod(eig, axis=-1).real, m, rtol=1e-9, atol=1e-12)  # det A = mu


def test_negative_momentum_is_allowed_where_the_formula_does_not_need_mu_in_0_1() -> None:
    assert_allclose(spectral_radius(1.0, -0.5, 1.0), np.abs(np.roots([1, 0.5, -0.5])).max())


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: robust_region(1.0, 1.0), "mu"),
        (lambda: robust_region(-0.1, 1.0), "mu"),
        (lambda: robust_region(0.5, 0.0), "h"),
        (lambda: robust_region(0.5, -1.0), "h"),
        (lambda: curvature_range(0.0, 0.5), "alpha"),
        (lambda: curvature_range(1.0, 1.5), "mu"),
        (lambda: covered_condition_number(1.0), "mu"),
        (lambda: spectral_radius(-1.0, 0.5, 1.0), "alpha"),
        (lambda: spectral_radius(1.0, 0.5, 0.0), "h"),
        (lambda: spectral_radius(1.0, np.inf, 1.0), "mu"),
        (lambda: momentum_eigenvalues(1.0, 0.5, -2.0), "h"),
        (lambda: momentum_operator(0.0, 0.5, 1.0), "alpha"),
        (lambda: heavy_ball_optimum(0.0, 1.0), "h_min"),
        (lambda: heavy_ball_optimum(1.0, 0.5), "h_max"),
    ],
)
def test_bad_input_names_the_parameter(call, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        call()
