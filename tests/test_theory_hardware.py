"""theory.hardware: E[max of k Exp(1)] = H_k and time per update of sync / async / compute groups."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
from numpy.testing import assert_allclose

from theory.hardware import expected_max_exponential, hardware_efficiency, time_per_update


def test_h16() -> None:
    assert_allclose(expected_max_exponential(16), 3.3807, atol=1e-4)
    assert_allclose(expected_max_exponential(16), float(sp.harmonic(16)), rtol=1e-14)


def test_harmonic_numbers_match_sympy() -> None:
    k = np.arange(0, 65)
    assert_allclose(
        expected_max_exponential(k), [float(sp.harmonic(i)) for i in k], rtol=1e-13, atol=1e-15
    )
    assert_allclose(expected_max_exponential(4, rate=2.0), float(sp.harmonic(4)) / 2)


def test_expected_max_monte_carlo() -> None:
    rng = np.random.default_rng(42)
    sizes = np.array([1, 4, 16])
    samples = [rng.exponential(size=(200000, k)).max(axis=1).mean() for k in sizes]
    assert_allclose(samples, expected_max_exponential(sizes), rtol=0.01)


def test_sync_async_and_groups() -> None:
    m = 16
    assert_allclose(time_per_update(m, 1), float(sp.harmonic(16)))  # sync: wait for the slowest
    assert_allclose(time_per_update(m, m), 1 / m)  # async: the minimum of M clocks
    groups = np.array([1, 2, 4, 8, 16])
    expected = [float(sp.harmonic(m // g)) / g for g in groups]
    assert_allclose(time_per_update(m, groups), expected, rtol=1e-13)
    he = hardware_efficiency(m, groups)
    assert_allclose(he, np.array(expected) / expected[0], rtol=1e-13)
    assert he[0] == 1.0 and np.all(np.diff(he) < 0)  # more asynchrony, less time per update


def test_group_time_monte_carlo() -> None:
    """g groups of k workers run rounds (max of k Exp(1)) in parallel; updates per unit time is g/H_k."""
    rng = np.random.default_rng(1)
    m, g, rounds = 8, 2, 50000
    k = m // g
    cycle = rng.exponential(size=(g, rounds, k)).max(axis=2)
    horizon = np.cumsum(cycle, axis=1)[:, -1].min()
    updates = sum(int(np.sum(np.cumsum(c) <= horizon)) for c in cycle)
    assert_allclose(horizon / updates, time_per_update(m, g), rtol=0.01)


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: expected_max_exponential(-1), "size"),
        (lambda: expected_max_exponential(2, rate=0.0), "rate"),
        (lambda: time_per_update(0, 1), "workers"),
        (lambda: time_per_update(2.5, 1), "workers"),
        (lambda: time_per_update(8, 3), "groups"),
        (lambda: time_per_update(8, 16), "groups"),
        (lambda: time_per_update(8, 0), "groups"),
        (lambda: hardware_efficiency(8, 0.5), "groups"),
    ],
)
def test_bad_input_names_the_parameter(call, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        call()
