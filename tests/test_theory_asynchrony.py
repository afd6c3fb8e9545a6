"""theory.asynchrony: the expected-iterate rate and the optimal explicit momentum."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
from numpy.testing import assert_allclose

from theory import asynchrony
from theory.asynchrony import (
    _cubic_roots,
    additive_rule,
    expected_rate,
    optimal_explicit_momentum,
    predicted_penalty,
)
from theory.momentum import heavy_ball_optimum, spectral_radius
from theory.numeric import lambdify_numpy
from theory.symbols import alpha, lam, mu_L, mu_S, t

MU_S = np.array([0.0, 0.5, 0.75, 0.875, 0.9])
MU_GRID = np.array([-0.9, -0.675, -0.45, -0.225, 0.0, 0.225, 0.45, 0.675, 0.9])


def q10(kappa: float) -> np.ndarray:
    return np.logspace(0, -np.log10(kappa), 10)


def test_cubic_roots_match_numpy_roots() -> None:
    rng = np.random.default_rng(7)
    coeffs = rng.normal(size=(3000, 3)) * rng.choice([1e-3, 1.0, 30.0], size=(3000, 3))
    coeffs[:300, 2] = 0.0  # a zero root
    coeffs[300:600, 1:] = 0.0  # a double zero root
    coeffs[600:700] = [-3.0, 3.0, -1.0]  # (x - 1)**3: a triple root
    coeffs[700:800] = [-2.0, 1.0, 0.0]  # x (x - 1)**2
    ours = _cubic_roots(coeffs[:, 0], coeffs[:, 1], coeffs[:, 2])
    reference = np.array([np.roots([1.0, *c]) for c in coeffs])
    scale = np.maximum(1.0, np.abs(reference).max(axis=1))
    assert_allclose(
        np.abs(ours).max(axis=1) / scale, np.abs(reference).max(axis=1) / scale, rtol=0, atol=1e-5
    )  # a triple root is only determined to cbrt(eps)
    simple = slice(800, None)
    assert_allclose(
        np.abs(ours[simple]).max(axis=1) / scale[simple],
        np.abs(reference[simple]).max(axis=1) / scale[simple],
        rtol=0,
        atol=1e-12,
    )


def test_rate_is_one_over_smallest_root_of_g() -> None:
    """gamma = max_i 1/|t*_i| with t*_i the smallest-magnitude root of the lambdified g_i(t),
    including mu_S mu_L = 0 where g loses degree (np.roots drops leading zeros)."""
    coefficients = [
        lambdify_numpy(c, (alpha, mu_L, mu_S, lam))
        for c in sp.Poly(asynchrony.RECIPROCAL_POLY, t).all_coeffs()
    ]
    rng = np.random.default_rng(11)
    eig = np.array([0.05, 0.3, 1.0])
    for _ in range(200):
        a, m_l = 10 ** rng.uniform(-2, 1), rng.choice([0.0, rng.uniform(-0.95, 0.95)])
        m_s = rng.choice([0.0, rng.uniform(0.0, 0.97)])
        inverse = []
        for value in eig:
            poly = [float(f(a, m_l, m_s, value)) for f in coefficients]
            inverse.append(1.0 / np.abs(np.roots(poly)).min())
        assert_allclose(expected_rate(a, m_l, m_s, eig), max(inverse), rtol=1e-8)


def _expected_iterates(a: float, m_l: float, m_s: float, value: float, steps: int) -> np.ndarray:
    """E[w_t] on a 1-D quadratic: the gradient averaged over the geometric staleness law (truncated
    where its tail is below 1e-14), reads before 0 clipped to w_0, explicit momentum mu_L."""
    support = 1 if m_s == 0 else int(np.ceil(np.log(1e-14) / np.log(m_s))) + 1
    q = (1 - m_s) * m_s ** np.arange(support)
    w = np.ones(steps + 1)
    for s in range(steps):
        read = q @ w[np.maximum(s - np.arange(support), 0)]
        velocity = w[s] - w[s - 1] if s > 0 else 0.0
        w[s + 1] = w[s] + m_l * velocity - a * value * read
    return w


@pytest.mark.parametrize(
    ("a", "m_l", "m_s", "value"),
    [(0.5, 0.3, 0.5, 1.0), (2.0, -0.3, 0.75, 0.2), (0.2, 0.0, 0.875, 1.0), (1.0, 0.6, 0.0, 0.3)],
)
def test_rate_matches_the_exact_expected_recursion(a, m_l, m_s, value) -> None:
    w = _expected_iterates(a, m_l, m_s, value, 1600)
    late, early = (
        np.abs(w[1400:1600]).max(),
        np.abs(w[1000:1200]).max(),
    )  # envelopes 400 steps apart
    measured = (late / early) ** (1 / 400)
    assert abs(measured - expected_rate(a, m_l, m_s, [value])) < 2e-3


def test_no_staleness_is_the_heavy_ball() -> None:
    rng = np.random.default_rng(5)
    a, m = 10 ** rng.uniform(-2, 0.5, 300), rng.uniform(-0.9, 0.99, 300)
    eig = np.array([0.01, 0.1, 1.0])
    heavy = spectral_radius(a[:, None], m[:, None], eig).max(axis=1)
    assert_allclose(expected_rate(a, m, 0.0, eig), heavy, rtol=1e-7)


def test_no_explicit_momentum_is_the_heavy_ball_with_implicit_momentum() -> None:
    rng = np.random.default_rng(6)
    a, m_s = 10 ** rng.uniform(-2, 0.5, 300), rng.uniform(0.0, 0.97, 300)
    eig = np.array([0.02, 1.0])
    heavy = spectral_radius((a * (1 - m_s))[:, None], m_s[:, None], eig).max(axis=1)
    assert_allclose(expected_rate(a, 0.0, m_s, eig), heavy, rtol=1e-7)


def test_rate_table_shape() -> None:
    table = expected_rate(np.logspace(-2, 0, 7)[:, None], MU_GRID, 0.5, q10(5))
    assert table.shape == (7, MU_GRID.size)


@pytest.mark.parametrize(
    "spectrum", [q10(5), q10(20), np.logspace(0, -2, 50)], ids=["q10-5", "q10-20", "nq50"]
)
def test_optimum_at_mu_s_0_is_the_heavy_ball_optimum(spectrum: np.ndarray) -> None:
    opt = optimal_explicit_momentum(0.0, spectrum)
    heavy = heavy_ball_optimum(spectrum.min(), spectrum.max())
    assert_allclose(opt.mu_l, heavy.mu, atol=1e-7)
    assert_allclose(opt.alpha, heavy.alpha, rtol=1e-7)
    assert_allclose(opt.rate, heavy.rate, atol=1e-9)


@pytest.mark.parametrize("kappa", [5, 20])
def test_optimal_explicit_momentum_q10(kappa: float) -> None:
    """Positive at mu_S = 0, negative from mu_S = 0.5 on, decreasing, about -0.3 at mu_S = 0.9."""
    opt = optimal_explicit_momentum(MU_S, q10(kappa))
    assert opt.mu_l.shape == MU_S.shape
    assert opt.mu_l[0] > 0
    assert np.all(opt.mu_l[1:] < 0)
    assert np.all(np.diff(opt.mu_l) < 0)
    assert -0.35 < opt.mu_l[-1] < -0.25
    assert np.all(np.diff(opt.rate) > 0)  # more asynchrony, slower mean
    # No grid point of (mu_L, alpha) beats the continuous optimum.
    alphas = np.logspace(-3, 2, 400)[:, None, None]
    table = expected_rate(alphas, MU_GRID[None, :, None], MU_S, q10(kappa))
    assert np.all(opt.rate <= table.min(axis=(0, 1)) + 1e-12)


def test_best_grid_point_is_the_argmin_of_the_table() -> None:
    alphas = 2.0 ** np.arange(-13, 2, 0.5)
    for m_s in (0.0, 0.75):
        opt = optimal_explicit_momentum(m_s, q10(20), mu_grid=MU_GRID, alpha_grid=alphas)
        table = expected_rate(alphas[:, None], MU_GRID[None, :], m_s, q10(20))
        i, j = np.unravel_index(np.argmin(table), table.shape)
        assert (opt.alpha, opt.mu_l) == (alphas[i], MU_GRID[j])
        assert_allclose(opt.rate, table[i, j], rtol=1e-14)


def test_one_grid_restricts_one_parameter() -> None:
    spectrum, alphas = q10(20), np.logspace(-1, 1.5, 30)
    free = optimal_explicit_momentum(0.75, spectrum)
    on_mu = optimal_explicit_momentum(0.75, spectrum, mu_grid=MU_GRID)
    on_alpha = optimal_explicit_momentum(0.75, spectrum, alpha_grid=alphas)
    assert on_mu.mu_l in MU_GRID and on_alpha.alpha in alphas
    assert free.rate <= on_mu.rate + 1e-12 and free.rate <= on_alpha.rate + 1e-12
    dense = expected_rate(np.logspace(-2, 2, 2000)[:, None], MU_GRID, 0.75, spectrum).min()
    assert on_mu.rate <= dense + 1e-12
    assert_allclose(expected_rate(on_mu.alpha, on_mu.mu_l, 0.75, spectrum), on_mu.rate)


def test_additive_rule() -> None:
    assert_allclose(additive_rule(0.9, [0.0, 0.5, 0.75, 0.875]), [0.9, 0.4, 0.15, 0.025])


def test_predicted_penalty() -> None:
    spectrum = q10(20)
    workers = np.array([1, 2, 4, 8])
    optimal = predicted_penalty(workers, spectrum)
    assert_allclose(optimal[0], 1.0, atol=1e-9)
    assert np.all(optimal[1:] > 1.0)
    for rule in ("additive", "fixed"):  # the optimal choice of mu_L can only do better
        assert np.all(predicted_penalty(workers, spectrum, rule=rule) >= optimal * (1 - 1e-9))
    single, four = optimal_explicit_momentum([0.0, 0.75], spectrum).rate
    assert_allclose(optimal[2], np.log(single) / np.log(four))


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: expected_rate(0.0, 0.0, 0.5, [1.0]), "alpha"),
        (lambda: expected_rate(1.0, 0.0, 1.0, [1.0]), "mu_s"),
        (lambda: expected_rate(1.0, 0.0, -0.5, [1.0]), "mu_s"),
        (lambda: expected_rate(1.0, 0.0, 0.5, [0.0, 1.0]), "eigenvalues"),
        (lambda: expected_rate(1.0, 0.0, 0.5, []), "eigenvalues"),
        (lambda: expected_rate(1.0, np.nan, 0.5, [1.0]), "mu_l"),
        (lambda: optimal_explicit_momentum(1.2, [1.0]), "mu_s"),
        (lambda: optimal_explicit_momentum(0.5, [-1.0]), "eigenvalues"),
        (lambda: optimal_explicit_momentum(0.5, [1.0], alpha_grid=[0.0, 1.0]), "alpha_grid"),
        (lambda: optimal_explicit_momentum(0.5, [1.0], mu_grid=[]), "mu_grid"),
        (lambda: additive_rule(1.0, 0.5), "mu_star"),
        (lambda: additive_rule(0.9, 1.0), "mu_s"),
        (lambda: predicted_penalty(0, [1.0]), "workers"),
        (lambda: predicted_penalty(2, [1.0], rule="best"), "rule"),
    ],
)
def test_bad_input_names_the_parameter(call, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        call()
