"""Optimizers: closed-form single steps, batching of hyperparameters, validation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asyncsim.optim import (
    GradientTransformation,
    adam,
    chain,
    heavy_ball,
    nesterov,
    record_of,
    scale,
    sgd,
)

RNG = np.random.default_rng(0)
W = RNG.standard_normal((3, 4))
G1, G2 = RNG.standard_normal((2, 3, 4))


def two_steps(t: GradientTransformation) -> tuple[np.ndarray, np.ndarray]:
    state = t.init(W)
    u1, state = t.update(G1, state, W, None)
    u2, state = t.update(G2, state, W + u1, None)
    return u1, u2


def test_sgd_step() -> None:
    u1, u2 = two_steps(sgd(0.1))
    np.testing.assert_allclose(u1, -0.1 * G1, rtol=1e-15)
    np.testing.assert_allclose(u2, -0.1 * G2, rtol=1e-15)


def test_heavy_ball_is_polyak() -> None:
    lr, mu = np.array([0.1, 0.2, 0.3]), np.array([-0.5, 0.0, 0.9])
    u1, u2 = two_steps(heavy_ball(lr, mu))
    np.testing.assert_allclose(u1, -lr[:, None] * G1, rtol=1e-15)
    np.testing.assert_allclose(u2, mu[:, None] * u1 - lr[:, None] * G2, rtol=1e-15)


def test_nesterov_look_ahead_form() -> None:
    u1, u2 = two_steps(nesterov(0.1, 0.9))
    v1 = -0.1 * G1
    np.testing.assert_allclose(u1, 0.9 * v1 - 0.1 * G1, rtol=1e-15)
    v2 = 0.9 * v1 - 0.1 * G2
    np.testing.assert_allclose(u2, 0.9 * v2 - 0.1 * G2, rtol=1e-15)


def test_adam_matches_textbook() -> None:
    b1, b2, eps, lr = 0.9, 0.999, 1e-8, 0.01
    u1, u2 = two_steps(adam(lr, b1, b2, eps))
    m, v = np.zeros_like(W), np.zeros_like(W)
    for i, (g, u) in enumerate(((G1, u1), (G2, u2)), start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        expected = -lr * (m / (1 - b1**i)) / (np.sqrt(v / (1 - b2**i)) + eps)
        np.testing.assert_allclose(u, expected, rtol=1e-12)


def test_chain_of_scale_and_sgd() -> None:
    u1, _ = two_steps(chain(scale(2.0), sgd(0.1)))
    np.testing.assert_allclose(u1, -0.2 * G1, rtol=1e-15)
    state = chain(scale(2.0), heavy_ball(0.1, 0.5)).init(W)
    assert set(record_of(state)) == {"lr", "momentum"}


def test_implied_batch() -> None:
    assert heavy_ball(np.ones(5) * 0.1, 0.5).batch == 5
    assert heavy_ball(0.1, 0.5).batch is None
    assert chain(scale(1.0), sgd([0.1, 0.2])).batch == 2
    with pytest.raises(ValueError, match="share one batch size"):
        heavy_ball([0.1, 0.2], [0.1, 0.2, 0.3])


@settings(max_examples=25, deadline=None)
@given(
    lrs=st.lists(st.floats(1e-4, 1.0), min_size=1, max_size=5),
    mu=st.floats(-0.95, 0.95),
)
def test_batched_hyperparameters_equal_single(lrs: list[float], mu: float) -> None:
    w = np.tile(W[:1], (len(lrs), 1))
    g = np.tile(G1[:1], (len(lrs), 1))
    t = heavy_ball(np.array(lrs), mu)
    u, _ = t.update(g, t.init(w), w, None)
    for i, lr in enumerate(lrs):
        single = heavy_ball(lr, mu)
        u_i, _ = single.update(g[:1], single.init(w[:1]), w[:1], None)
        np.testing.assert_array_equal(u[i], u_i[0])


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: sgd(0.0), r"lr must be finite and in \(0, inf\)"),
        (lambda: sgd(-1.0), "lr"),
        (lambda: sgd(np.nan), "lr"),
        (lambda: heavy_ball(0.1, 1.0), r"momentum must be finite and in \(-1, 1\)"),
        (lambda: heavy_ball(0.1, -1.0), "momentum"),
        (lambda: nesterov(0.1, 1.5), "momentum"),
        (lambda: adam(0.1, b1=1.0), r"b1 must be a finite number in \[0, 1\)"),
        (lambda: adam(0.1, eps=0.0), "eps"),
    ],
)
def test_bad_hyperparameters(make, match) -> None:
    with pytest.raises(ValueError, match=match):
        make()


def test_hyperparameter_shape_mismatch() -> None:
    with pytest.raises(ValueError, match=r"lr must be a scalar or have shape \(3,\)"):
        sgd([0.1, 0.2]).init(W)
    with pytest.raises(TypeError, match="chain"):
        chain(0.1)
