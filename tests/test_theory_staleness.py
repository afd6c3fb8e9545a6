"""theory.staleness: the geometric law and its implicit momentum, numerically."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose

from theory import staleness
from theory.staleness import (
    effective_step,
    implicit_momentum,
    staleness_mean,
    staleness_pmf,
    staleness_tail,
    staleness_variance,
    total_momentum,
    workers_from_momentum,
)


def test_pmf_example_m4() -> None:
    expected = [0.25, 0.1875, 0.140625, 0.10546875, 0.0791015625, 0.059326171875]
    assert_allclose(staleness_pmf(np.arange(6), 4), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("workers", [1, 2, 4, 16, 32])
def test_moments_and_tail_match_the_pmf(workers: int) -> None:
    lag = np.arange(20000)
    pmf = staleness_pmf(lag, workers)
    assert_allclose(pmf.sum(), 1.0, atol=1e-12)
    assert_allclose(staleness_mean(workers), (lag * pmf).sum(), rtol=1e-10)
    assert_allclose(staleness_mean(workers), workers - 1)
    second = (lag**2 * pmf).sum() - (lag * pmf).sum() ** 2
    assert_allclose(staleness_variance(workers), second, rtol=1e-9, atol=1e-12)
    assert_allclose(staleness_tail(5, workers), pmf[5:].sum(), atol=1e-12)


def test_implicit_momentum_and_effective_step() -> None:
    workers = np.array([1, 2, 4, 8, 16, 32])
    assert_allclose(implicit_momentum(workers), 1 - 1 / workers)
    assert_allclose(workers_from_momentum(implicit_momentum(workers)), workers)
    assert_allclose(effective_step(0.32, workers), 0.32 / workers)


def test_total_momentum_spec_values() -> None:
    """The estimator's predicted readings in theory/README.md §9 (M = 4 and 16, mu = -0.5, 0, 0.5)."""
    mu = np.array([-0.5, 0.0, 0.5])
    assert_allclose(total_momentum(mu, 4), [0.625, 0.75, 0.875])
    assert_allclose(total_momentum(mu, 16), [0.90625, 0.9375, 0.96875])
    mu_s = implicit_momentum(16)
    assert_allclose(total_momentum(mu, 16), mu + mu_s - mu * mu_s)


def test_broadcasting_shapes() -> None:
    assert staleness_pmf(np.arange(5)[:, None], np.array([2, 4, 8])).shape == (5, 3)
    assert staleness_mean(4).shape == ()


def test_queueing_model_gives_the_geometric_law() -> None:
    """Event-driven M workers with Exp(1) compute times (seeded): the empirical law is the pmf."""
    rng = np.random.default_rng(20240601)
    workers, writes = 4, 40000
    finish = rng.exponential(size=workers)
    read_version = np.zeros(workers, dtype=int)
    tau = np.empty(writes, dtype=int)
    for version in range(writes):
        writer = int(np.argmin(finish))
        tau[version] = version - read_version[writer]
        read_version[writer] = version + 1
        finish[writer] += rng.exponential()
    tau = tau[100:]
    counts = np.bincount(tau, minlength=6)[:6] / tau.size
    assert_allclose(counts, staleness_pmf(np.arange(6), workers), atol=0.01)
    assert abs(tau.mean() - staleness_mean(workers)) < 0.1


def test_expected_recursion_is_momentum_numerically() -> None:
    """Plain SGD averaged over geometric staleness follows the momentum form exactly for t >= 1 on a
    1-D quadratic, once the law has no mass before t = 0 (reads clipped at w_0 break it only there)."""
    mu_s, alpha, lam, steps = 0.75, 0.05, 1.0, 60
    support = 400
    q = (1 - mu_s) * mu_s ** np.arange(support)
    w = np.ones(steps + 1)
    for t in range(steps):
        past = w[np.maximum(t - np.arange(support), 0)]
        w[t + 1] = w[t] - alpha * lam * q @ past
    # For t well past the start, the reads older than t carry weight mu_s**t: negligible at t >= 40.
    t = np.arange(40, steps)
    predicted = mu_s * (w[t] - w[t - 1]) - (1 - mu_s) * alpha * lam * w[t]
    assert_allclose(w[t + 1] - w[t], predicted, rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: staleness_pmf(0, 0.5), "workers"),
        (lambda: staleness_pmf(-1, 4), "lag"),
        (lambda: staleness_pmf(1.5, 4), "lag"),
        (lambda: staleness_mean(0), "workers"),
        (lambda: staleness_variance(np.nan), "workers"),
        (lambda: staleness_tail(2, -3), "workers"),
        (lambda: implicit_momentum(0.99), "workers"),
        (lambda: effective_step(0.0, 4), "alpha"),
        (lambda: effective_step(-0.1, 4), "alpha"),
        (lambda: workers_from_momentum(1.0), "mu_s"),
        (lambda: workers_from_momentum(-0.1), "mu_s"),
        (lambda: total_momentum(0.5, 0), "workers"),
    ],
)
def test_bad_input_names_the_parameter(call, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        call()


def test_error_message_states_value_and_range() -> None:
    with pytest.raises(ValueError, match=r"workers must be .* in \[1, inf\), got 0.5"):
        staleness.staleness_mean(0.5)
