"""Problems: gradients against finite differences, reference settings, noise scaling, validation."""

from __future__ import annotations

import numpy as np
import pytest

from asyncsim.problems import (
    DigitsCNN,
    DigitsMLP,
    LeastSquares,
    LogisticRegression,
    NoisyQuadratic,
    make_problem,
    spectrum,
)


def central_difference(f, w: np.ndarray, eps: float) -> np.ndarray:
    """Gradient of a scalar function of one row by central differences, shape (d,)."""
    grad = np.empty(w.size)
    for i in range(w.size):
        e = np.zeros_like(w)
        e[i] = eps
        grad[i] = (f(w + e) - f(w - e)) / (2 * eps)
    return grad


def test_mlp_gradient_matches_finite_differences() -> None:
    mlp = DigitsMLP(hidden=6, batch_size=5)
    rng = np.random.default_rng(1)
    w = mlp.init_params(1) + 0.3 * rng.standard_normal((1, mlp.dim))
    idx = rng.integers(0, mlp.n_samples, size=(1, 5))
    grad = mlp.gradient(w, idx.copy(), 1)[0]

    def minibatch_loss(v: np.ndarray) -> float:
        _, logits = mlp._forward(v[None, :], mlp.features[idx])
        logp = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
        return float(-np.mean(np.sum(logp * mlp.onehot[idx], axis=-1)))

    numeric = central_difference(minibatch_loss, w[0], 1e-5)
    rel = np.linalg.norm(grad - numeric) / np.linalg.norm(numeric)
    assert rel < 1e-6, rel


def test_mlp_mean_gradient_matches_finite_differences_of_full_loss() -> None:
    mlp = DigitsMLP(hidden=4, eval_size=1797)
    w = mlp.init_params(1)
    numeric = central_difference(lambda v: mlp.loss(v[None, :])[0], w[0], 1e-5)
    grad = mlp.mean_gradient(w)[0]
    assert np.linalg.norm(grad - numeric) / np.linalg.norm(numeric) < 1e-6


def cnn_minibatch_loss(cnn: DigitsCNN, idx: np.ndarray, weight: np.ndarray):
    """Σ weight x cross-entropy of one configuration's parameters (d,) on images idx (m,)."""

    def loss(v: np.ndarray) -> float:
        _, logits = cnn._forward(v[None, :], cnn.patches[idx])
        logp = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
        return float(-np.sum(weight * np.sum(logp * cnn.onehot[idx], axis=-1)))

    return loss


@pytest.mark.parametrize("minibatch", ["own", "shared", "aggregated"])
def test_cnn_gradient_matches_finite_differences(minibatch: str) -> None:
    """Below 1e-6 relative in float64, for each of two configurations: own minibatches, one shared
    by both, and two gradients aggregated by one configuration and one by the other."""
    cnn = DigitsCNN(channels=3, batch_size=4, eval_size=50)
    rng = np.random.default_rng(5)
    w = cnn.init_params(2) + 0.3 * rng.standard_normal((2, cnn.dim))
    draws = rng.integers(0, cnn.n_samples, size=(2, 8))
    if minibatch == "shared":
        grads = cnn.gradient(w, draws[:1].copy(), 1)
    else:
        grads = cnn.gradient(w, draws.copy(), np.array([2, 1]) if minibatch == "aggregated" else 1)
    for b in range(2):
        idx = draws[0 if minibatch == "shared" else b]
        used = 8 if minibatch == "aggregated" and b == 0 else 4
        f = cnn_minibatch_loss(cnn, idx[:used], np.full(used, 1.0 / used))
        numeric = central_difference(f, w[b], 1e-5)
        rel = np.linalg.norm(grads[b] - numeric) / np.linalg.norm(numeric)
        assert rel < 1e-6, (b, rel)


def test_cnn_mean_gradient_matches_finite_differences_of_full_loss() -> None:
    cnn = DigitsCNN(channels=2, eval_size=1797)
    w = cnn.init_params(1)
    numeric = central_difference(lambda v: cnn.loss(v[None, :])[0], w[0], 1e-5)
    grad = cnn.mean_gradient(w)[0]
    assert np.linalg.norm(grad - numeric) / np.linalg.norm(numeric) < 1e-6


def test_cnn_blocks_bound_memory_without_changing_results() -> None:
    """The evaluation and the full-data gradient in blocks of 100 samples equal one block of all."""
    blocked, whole = DigitsCNN(channels=2), DigitsCNN(channels=2)
    object.__setattr__(whole, "block", whole.n_samples)
    w = blocked.init_params(3) + 0.2 * np.random.default_rng(6).standard_normal((3, blocked.dim))
    for method in ("loss", "accuracy", "mean_gradient"):
        np.testing.assert_allclose(
            getattr(blocked, method)(w), getattr(whole, method)(w), rtol=1e-12, atol=1e-15
        )


def test_cnn_reference_settings() -> None:
    cnn = make_problem("digits-cnn")
    assert isinstance(cnn, DigitsCNN)
    assert cnn.shapes == ((8, 1, 3, 3), (8,), (10, 128), (10,))
    assert cnn.dim == 1370 and (cnn.batch_size, cnn.eval_size, cnn.target) == (32, 600, 0.05)
    assert np.isclose(cnn.loss(cnn.init_params(1))[0], np.log(10), rtol=0.1)  # near uniform


@pytest.mark.parametrize("kind", ["least-squares", "logistic"])
def test_linear_models_gradient(kind: str) -> None:
    rng = np.random.default_rng(2)
    x = rng.standard_normal((40, 5))
    if kind == "least-squares":
        problem = LeastSquares(x, x @ rng.standard_normal(5) + 0.1 * rng.standard_normal(40))
    else:
        problem = LogisticRegression(x, (rng.random(40) < 0.5).astype(float), l2=0.01)
    w = rng.standard_normal((1, 5))
    numeric = central_difference(lambda v: problem.loss(v[None, :])[0], w[0], 1e-6)
    np.testing.assert_allclose(problem.mean_gradient(w)[0], numeric, rtol=1e-6, atol=1e-9)
    # every sample drawn once with weight 1/n: the minibatch gradient equals the full gradient
    everything = np.arange(40)[None, :]
    full_batch = type(problem)(**{**_fields(problem), "batch_size": 40})
    np.testing.assert_allclose(
        full_batch.gradient(w, everything, 1), problem.mean_gradient(w), rtol=1e-12
    )


def _fields(problem) -> dict:
    names = ("features", "targets", "batch_size", "w0")
    extra = {"l2": problem.l2} if isinstance(problem, LogisticRegression) else {}
    return {n: getattr(problem, n) for n in names} | extra


def test_mixed_aggregation_uses_k_minibatches() -> None:
    problem = DigitsMLP(hidden=3, batch_size=2)
    rng = np.random.default_rng(0)
    w = problem.init_params(2) + 0.1 * rng.standard_normal((2, problem.dim))
    idx = rng.integers(0, problem.n_samples, size=(2, 6))  # room for k = 3
    mixed = problem.gradient(w, idx.copy(), np.array([1, 3]))
    np.testing.assert_allclose(
        mixed[0], problem.gradient(w[:1], idx[:1, :2].copy(), 1)[0], rtol=1e-12
    )
    np.testing.assert_allclose(mixed[1], problem.gradient(w[1:], idx[1:].copy(), 3)[0], rtol=1e-12)


def test_dense_rotation_has_the_same_spectrum_and_loss_level() -> None:
    h = spectrum(8, 20.0)
    dense = NoisyQuadratic(h, rotation=3)
    np.testing.assert_allclose(np.linalg.eigvalsh(dense.hessian), np.sort(h), rtol=1e-12)
    w = np.random.default_rng(0).standard_normal((4, 8))
    np.testing.assert_allclose(dense.loss(w), 0.5 * np.einsum("bd,bd->b", w, w @ dense.hessian))
    np.testing.assert_allclose(dense.gradient(w, None, 1), w @ dense.hessian, rtol=1e-14)


def test_noise_is_divided_by_root_k() -> None:
    q = NoisyQuadratic([1.0, 2.0], noise=0.5, w_star=[1.0, -1.0])
    w = np.zeros((1, 2))
    z = np.ones((1, 2))
    np.testing.assert_allclose(q.gradient(w, z.copy(), 4), [[-1 + 0.25, 2 + 0.25]], rtol=1e-15)
    per_config = q.gradient(np.zeros((2, 2)), np.ones((2, 2)), np.array([1, 4]))
    np.testing.assert_allclose(per_config[:, 0], [-0.5, -0.75], rtol=1e-15)


def test_draws_do_not_depend_on_the_batch() -> None:
    q = make_problem("nq50")
    rngs = [np.random.default_rng(s) for s in (5, 6)]
    both = q.draw(rngs, 7, 1)
    alone = q.draw([np.random.default_rng(6)], 7, 1)
    np.testing.assert_array_equal(both[1], alone[0])


def test_reference_problems() -> None:
    nq = make_problem("nq50")
    assert nq.dim == 50 and nq.noise == 0.03
    np.testing.assert_allclose(nq.curvatures[[0, -1]], [1.0, 0.01])
    np.testing.assert_allclose(nq.target, 1e-3 * 0.5 * nq.curvatures.sum())
    q = make_problem("q10", kappa=20)
    assert q.dim == 10 and q.noise == 0.0
    np.testing.assert_allclose(q.curvatures[-1], 0.05)
    mlp = make_problem("digits-mlp")
    assert mlp.dim == 64 * 32 + 32 + 32 * 10 + 10 and mlp.target == 0.05
    assert mlp.eval_idx.size == 600 and mlp.features.max() == 1.0
    assert 2.0 < mlp.loss(mlp.init_params(1))[0] < 2.6  # about log 10 at the start


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: NoisyQuadratic([1.0, -1.0]), ValueError, "curvatures"),
        (lambda: NoisyQuadratic([1.0], noise=-0.1), ValueError, "noise"),
        (lambda: NoisyQuadratic([[1.0]]), ValueError, "1-D"),
        (lambda: spectrum(0, 10.0), ValueError, "d must be in"),
        (lambda: spectrum(5, 0.5), ValueError, "kappa"),
        (lambda: spectrum(5, 5.0, "cubic"), ValueError, "shape must be one of"),
        (lambda: make_problem("nq51"), ValueError, "name must be one of"),
        (lambda: LeastSquares(np.ones((3, 2)), np.ones(4)), ValueError, "shapes"),
        (lambda: LogisticRegression(np.ones((3, 2)), np.array([0, 1, 2])), ValueError, "labels"),
        (lambda: DigitsMLP(hidden=0), ValueError, "hidden"),
        (lambda: DigitsCNN(channels=0), ValueError, "channels"),
        (lambda: DigitsCNN(batch_size=0), ValueError, "batch_size"),
        (lambda: DigitsMLP(eval_size=5000), ValueError, "eval_size"),
    ],
)
def test_bad_input(make, error, match) -> None:
    with pytest.raises(error, match=match):
        make()
