"""Objectives with batched gradient oracles over parameters shaped ``(B, d)``.

A problem separates its randomness from its arithmetic so that a batch of B configurations equals B
single runs: ``draw(rngs, steps, max_aggregated)`` draws a block of randomness for ``steps`` updates,
one generator per configuration (shape ``(B, steps, ...)``), and ``gradient(w, randomness,
n_aggregated)`` is then a pure function of its arguments. Reference problems of theory/README.md §5 are
available by name through :func:`make_problem`: ``nq50``, ``q10`` and ``digits-mlp``.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from asyncsim import _kernels
from asyncsim._validate import (
    check_array,
    check_choice,
    check_int,
    check_real,
    check_rng,
)

__all__ = [
    "REFERENCE_PROBLEMS",
    "DigitsCNN",
    "DigitsMLP",
    "LeastSquares",
    "LogisticRegression",
    "NoisyQuadratic",
    "Problem",
    "make_problem",
    "spectrum",
]


class Problem:
    """Base class. Subclasses set ``dim`` and ``name`` and implement the oracle methods."""

    dim: int
    name: str
    #: Loss at or below which a run counts as converged (None: no reference target).
    target: float | None = None
    #: True when the gradient is affine in w, so that the expected-dynamics mode applies.
    affine_gradient: bool = False
    #: True when ``gradient`` also takes randomness with a leading axis of 1 for B > 1 configurations
    #: (one block drawn for all: the engine draws once when every configuration shares a stream) and
    #: gives each configuration what it gives for its own copy of that block.
    broadcast_randomness: bool = False

    def init_params(self, batch: int) -> np.ndarray:
        """Starting parameters, the same for every configuration, shape ``(batch, d)``."""
        raise NotImplementedError

    def loss(self, w: np.ndarray) -> np.ndarray:
        """Exact (or evaluation-set) loss of each configuration, shape ``(B,)``."""
        raise NotImplementedError

    def distance(self, w: np.ndarray) -> np.ndarray | None:
        """‖w - w*‖ per configuration, shape ``(B,)``, or None where the optimum is unknown."""
        return None

    def draw(self, rngs: Sequence[np.random.Generator], steps: int, max_aggregated: int) -> Any:
        """Randomness for ``steps`` updates, leading axes ``(B, steps)``, one generator per configuration;
        None for deterministic problems. The engine hands ``gradient`` the slice ``[:, t]``, which the
        gradient may overwrite (it is used once)."""
        return None

    def gradient(self, w: np.ndarray, randomness: Any, n_aggregated: Any) -> np.ndarray:
        """Stochastic gradient at ``w`` (B, d), averaged over ``n_aggregated`` (int or (B,)) draws."""
        raise NotImplementedError

    def mean_gradient(self, w: np.ndarray) -> np.ndarray:
        """Expected (noiseless, full-data) gradient at ``w``, shape ``(B, d)``."""
        raise NotImplementedError


def _stack_draws(rngs: Sequence[np.random.Generator], draw_one) -> np.ndarray:
    """Draw each configuration's block from its own generator, shape ``(B, steps, ...)``."""
    first = draw_one(rngs[0], None)
    block = np.empty((len(rngs), *first.shape), dtype=first.dtype)
    block[0] = first
    for i, rng in enumerate(rngs[1:], start=1):
        draw_one(rng, block[i])
    return block


def spectrum(d: int, kappa: float, shape: str = "logspace") -> np.ndarray:
    """Curvatures from 1 down to 1/κ, shape ``(d,)``: ``logspace`` (geometric), ``linspace``, or
    ``two-cluster`` (half at 1, half at 1/κ).

    >>> spectrum(3, 100.0)
    array([1.  , 0.1 , 0.01])
    """
    d = check_int("d", d, low=1)
    kappa = check_real("kappa", kappa, low=1.0)
    check_choice("shape", shape, ("logspace", "linspace", "two-cluster"))
    if shape == "logspace":
        return np.logspace(0.0, -np.log10(kappa), d)
    if shape == "linspace":
        return np.linspace(1.0, 1.0 / kappa, d)
    return np.where(np.arange(d) < (d + 1) // 2, 1.0, 1.0 / kappa)


# ------------------------------------------------------------------------------------------ quadratic
@dataclass(frozen=True, eq=False)
class NoisyQuadratic(Problem):
    """``f(w) = ½ (w - w*)ᵀ H (w - w*)`` with additive Gaussian gradient noise.

    The gradient is ``H (w - w*) + σ z / √k`` with ``z ~ N(0, I)`` when an update aggregates k gradients.

    Parameters
    ----------
    curvatures : array (d,)
        Eigenvalues of H, all > 0.
    noise : float
        Noise standard deviation σ ≥ 0 per coordinate of one gradient.
    w0, w_star : float or array (d,)
        Start and optimum (a scalar fills every coordinate).
    rotation : int >= 0 or None
        None: H is diagonal (elementwise arithmetic). An int seeds a random orthogonal Q, H = Q diag Qᵀ
        (dense arithmetic, one (B, d) @ (d, d) product per gradient).
    target_fraction : float
        Target loss as a fraction of ``f(w0)``.
    """

    curvatures: Any
    noise: float = 0.0
    w0: Any = 1.0
    w_star: Any = 0.0
    rotation: int | None = None
    target_fraction: float = 1e-3
    name: str = "quadratic"
    hessian: np.ndarray | None = field(init=False, default=None)
    dim: int = field(init=False, repr=False)
    target: float | None = field(init=False, repr=False)
    shifted: bool = field(init=False, repr=False)
    affine_gradient = True
    broadcast_randomness = True

    def __post_init__(self) -> None:
        h = check_array("curvatures", self.curvatures, low=0.0, low_open=True)
        if h.ndim != 1 or h.size == 0:
            raise ValueError(f"curvatures must be a non-empty 1-D array, got shape {h.shape}")
        d = h.size
        set_ = object.__setattr__
        set_(self, "curvatures", h)
        set_(self, "dim", d)
        set_(self, "noise", check_real("noise", self.noise, low=0.0))
        check_real("target_fraction", self.target_fraction, low=0.0, low_open=True)
        for name in ("w0", "w_star"):
            set_(self, name, _vector(name, getattr(self, name), d))
        set_(self, "shifted", bool(self.w_star.any()))
        rotation = check_rng("rotation", self.rotation, seed_sequence=False, generator=False)
        set_(self, "rotation", rotation)
        if rotation is not None:
            q, r = np.linalg.qr(np.random.default_rng(rotation).standard_normal((d, d)))
            q *= np.sign(np.diag(r))
            set_(self, "hessian", (q * h) @ q.T)
        set_(self, "target", self.target_fraction * float(self.loss(self.w0[None, :])[0]))

    def init_params(self, batch: int) -> np.ndarray:
        return np.tile(self.w0, (check_int("batch", batch, low=1), 1))

    def _hx(self, x: np.ndarray) -> np.ndarray:
        return x * self.curvatures if self.hessian is None else x @ self.hessian

    def loss(self, w: np.ndarray) -> np.ndarray:
        x = w - self.w_star if self.shifted else w  # w - 0 is w
        return 0.5 * np.einsum("bd,bd->b", x, self._hx(x))

    def distance(self, w: np.ndarray) -> np.ndarray:
        return _row_norms(w - self.w_star if self.shifted else w)

    def draw(self, rngs, steps, max_aggregated):
        if self.noise == 0.0:
            return None
        return _stack_draws(rngs, lambda rng, out: rng.standard_normal((steps, self.dim), out=out))

    def mean_gradient(self, w: np.ndarray) -> np.ndarray:
        return self._hx(w - self.w_star)

    def gradient(self, w, randomness, n_aggregated):
        g = self._hx(w - self.w_star if self.shifted else w)
        if randomness is None:
            return g
        if np.ndim(n_aggregated):
            factor: Any = (self.noise / np.sqrt(n_aggregated))[:, None]
        else:
            factor = self.noise / math.sqrt(n_aggregated)
        if randomness.shape[0] != g.shape[0]:  # one block for every configuration
            g += randomness * factor  # g + σ z / √k, the same sum as below (addition commutes)
            return g
        randomness *= factor
        randomness += g
        return randomness


# ------------------------------------------------------------------------------------------ data
class _MinibatchProblem(Problem):
    """Shared minibatch machinery: indices drawn with replacement, k gradients = k·m samples."""

    n_samples: int
    batch_size: int
    broadcast_randomness = True

    def draw(self, rngs, steps, max_aggregated):
        m = self.batch_size * max_aggregated

        def draw_one(rng, out):
            idx = rng.integers(0, self.n_samples, size=(steps, m))
            if out is not None:
                out[...] = idx
            return idx

        return _stack_draws(rngs, draw_one)

    def _weights(self, randomness: np.ndarray, n_aggregated: Any) -> tuple[np.ndarray, np.ndarray]:
        """The sample indices in use and their weights (B, m'), each row summing to one."""
        k = np.asarray(n_aggregated)
        if k.ndim == 0 or (k == k.flat[0]).all():
            used = randomness[:, : self.batch_size * int(k.flat[0])]
            return used, np.full(used.shape, 1.0 / used.shape[1])
        counts = self.batch_size * k[:, None]
        cols = np.arange(randomness.shape[1])[None, :]
        return randomness, np.where(cols < counts, 1.0 / counts, 0.0)


@dataclass(frozen=True, eq=False)
class LeastSquares(_MinibatchProblem):
    """``f(w) = (1/2n) ‖X w - y‖²`` with minibatch gradients of ``batch_size`` rows (with replacement).

    Parameters
    ----------
    features : array (n, d)
    targets : array (n,)
    batch_size : int
    w0 : float or array (d,)
    target_fraction : float
        Target excess loss f(w) - f(w*) as a fraction of the initial excess loss.
    """

    features: Any
    targets: Any
    batch_size: int = 32
    w0: Any = 0.0
    target_fraction: float = 1e-3
    name: str = "least-squares"
    w_star: np.ndarray = field(init=False, repr=False)
    optimal_loss: float = field(init=False, repr=False)
    target: float | None = field(init=False, repr=False)
    affine_gradient = True

    def __post_init__(self) -> None:
        _set_data(self)
        w_star, *_ = np.linalg.lstsq(self.features, self.targets, rcond=None)
        object.__setattr__(self, "w_star", w_star)
        object.__setattr__(self, "optimal_loss", float(self._full_loss(w_star[None, :])[0]))
        initial = float(self._full_loss(self.w0[None, :])[0])
        object.__setattr__(
            self, "target", self.optimal_loss + self.target_fraction * (initial - self.optimal_loss)
        )

    def init_params(self, batch: int) -> np.ndarray:
        return np.tile(self.w0, (check_int("batch", batch, low=1), 1))

    def _full_loss(self, w: np.ndarray) -> np.ndarray:
        r = w @ self.features.T - self.targets
        return 0.5 * np.mean(r * r, axis=-1)

    def loss(self, w: np.ndarray) -> np.ndarray:
        return self._full_loss(w)

    def distance(self, w: np.ndarray) -> np.ndarray:
        return _row_norms(w - self.w_star)

    def mean_gradient(self, w: np.ndarray) -> np.ndarray:
        return (w @ self.features.T - self.targets) @ self.features / self.n_samples

    def gradient(self, w, randomness, n_aggregated):
        idx, weight = self._weights(randomness, n_aggregated)
        if idx.shape[0] != w.shape[0]:  # one minibatch for every configuration: two products
            xs = self.features[idx[0]]  # (m, d)
            resid = (w @ xs.T - self.targets[idx[0]]) * weight
            return resid @ xs
        xb = self.features[idx]  # (B, m, d)
        resid = (np.matmul(xb, w[:, :, None])[..., 0] - self.targets[idx]) * weight
        return np.matmul(resid[:, None, :], xb)[:, 0, :]


@dataclass(frozen=True, eq=False)
class LogisticRegression(_MinibatchProblem):
    """Binary logistic regression, labels in {0, 1}: ``f(w) = mean(log(1 + e^z) - y z) + (λ/2)‖w‖²``,
    ``z = X w``, with minibatch gradients of ``batch_size`` rows (with replacement)."""

    features: Any
    targets: Any
    batch_size: int = 32
    w0: Any = 0.0
    l2: float = 0.0
    target: float | None = None
    name: str = "logistic-regression"

    def __post_init__(self) -> None:
        _set_data(self)
        if not np.isin(self.targets, (0.0, 1.0)).all():
            raise ValueError("targets must be labels in {0, 1} for logistic regression")
        object.__setattr__(self, "l2", check_real("l2", self.l2, low=0.0))
        target = check_real("target", self.target, low=0.0, low_open=True, optional=True)
        object.__setattr__(self, "target", target)

    def init_params(self, batch: int) -> np.ndarray:
        return np.tile(self.w0, (check_int("batch", batch, low=1), 1))

    def loss(self, w: np.ndarray) -> np.ndarray:
        z = w @ self.features.T
        data = np.mean(np.logaddexp(0.0, z) - self.targets * z, axis=-1)
        return data + 0.5 * self.l2 * np.einsum("bd,bd->b", w, w)

    def mean_gradient(self, w: np.ndarray) -> np.ndarray:
        resid = _sigmoid(w @ self.features.T) - self.targets
        return resid @ self.features / self.n_samples + self.l2 * w

    def gradient(self, w, randomness, n_aggregated):
        idx, weight = self._weights(randomness, n_aggregated)
        if idx.shape[0] != w.shape[0]:  # one minibatch for every configuration: two products
            xs = self.features[idx[0]]
            resid = (_sigmoid(w @ xs.T) - self.targets[idx[0]]) * weight
            return resid @ xs + self.l2 * w
        xb = self.features[idx]
        resid = (_sigmoid(np.matmul(xb, w[:, :, None])[..., 0]) - self.targets[idx]) * weight
        return np.matmul(resid[:, None, :], xb)[:, 0, :] + self.l2 * w


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _row_norms(x: np.ndarray) -> np.ndarray:
    """‖x‖ along the last axis: the sum ``np.linalg.norm(x, axis=-1)`` does for real x, without its
    argument handling, which cost a third of a recorded step on nq50."""
    return np.sqrt(np.add.reduce(x * x, axis=-1))


def _bias_tanh(pre: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """tanh(pre + bias) in place, pre (B, m, h), bias (B, h), as 1 + (-2 / (1 + e^{2 (pre + bias)})).

    Absolute error below 1e-15 against ``np.tanh``, which is 3-4x slower: its float64 loop is scalar
    on CPUs without AVX-512, and the MLP spends most of its time there. e^{2x} overflows to inf for
    x > 354, which gives exactly 1. The compiled MLP kernels do the same operations in the same order.
    """
    pre += bias[:, None, :]
    pre *= 2.0
    with np.errstate(over="ignore"):
        np.exp(pre, out=pre)
    pre += 1.0
    np.divide(-2.0, pre, out=pre)
    pre += 1.0
    return pre


_WORK = threading.local()
_WORK_LIMIT = 1 << 21  # elements (16 MB): larger arrays are allocated for each call


def _work(name: str, shape: tuple[int, ...]) -> np.ndarray:
    """A float64 work array kept between calls, one per name and thread (contents undefined).

    Allocated anew at each step, the MLP's temporaries (about 15 MB a step at B = 256) cost page
    faults that took a quarter of a gradient's time. Arrays above 16 MB (the evaluation's at large B)
    are not kept: memory stays bounded by the minibatch work.
    """
    array = getattr(_WORK, name, None)
    if array is None or array.shape != shape:
        array = np.empty(shape)
        if array.size <= _WORK_LIMIT:
            setattr(_WORK, name, array)
    return array


def _set_data(problem: Any) -> None:
    x = check_array("features", problem.features)
    y = check_array("targets", problem.targets)
    if x.ndim != 2 or y.shape != (x.shape[0],):
        raise ValueError(
            f"features must be (n, d) and targets (n,), got shapes {x.shape} and {y.shape}"
        )
    set_ = object.__setattr__
    set_(problem, "features", x)
    set_(problem, "targets", y)
    set_(problem, "n_samples", x.shape[0])
    set_(problem, "dim", x.shape[1])
    set_(problem, "batch_size", check_int("batch_size", problem.batch_size, low=1))
    set_(problem, "w0", _vector("w0", problem.w0, x.shape[1]))


def _vector(name: str, value: Any, d: int) -> np.ndarray:
    """A finite scalar or length-``d`` array as a float64 array of shape ``(d,)``."""
    arr = check_array(name, value)
    if arr.ndim != 0 and arr.shape != (d,):
        raise ValueError(
            f"{name} must be a scalar or an array of length d = {d}, got shape {arr.shape}"
        )
    return np.broadcast_to(arr, (d,)).astype(np.float64)


# ------------------------------------------------------------------------------------------ digits
@dataclass(frozen=True, eq=False)
class _DigitsClassifier(_MinibatchProblem):
    """What the digits networks share: scikit-learn's bundled digits (1797 8x8 images, inputs in
    [0, 1]), minibatches drawn from all of them, the loss on a fixed evaluation subset, parameters
    flattened per configuration in the order of ``layers()``, Glorot-uniform weights and zero biases.
    A subclass gives ``layers()`` and its ``_forward`` / ``_batch_gradient``."""

    batch_size: int = 32
    eval_size: int = 600
    target: float | None = 0.05
    seed: int = 0
    features: np.ndarray = field(init=False, repr=False)
    onehot: np.ndarray = field(init=False, repr=False)
    labels: np.ndarray = field(init=False, repr=False)
    eval_idx: np.ndarray = field(init=False, repr=False)
    shapes: tuple[tuple[int, ...], ...] = field(init=False, repr=False)
    bounds: tuple[tuple[int, int], ...] = field(init=False, repr=False)
    w0: np.ndarray = field(init=False, repr=False)
    #: Samples per block of the full-data gradient (bounds its memory); the MLP takes all at once.
    block: int = field(init=False, repr=False, default=1797)

    def layers(self) -> list[tuple[tuple[int, ...], float]]:
        """Each parameter block's shape and the half-width of its uniform initial values."""
        raise NotImplementedError

    def __post_init__(self) -> None:
        check_int("batch_size", self.batch_size, low=1)
        target = check_real("target", self.target, low=0.0, low_open=True, optional=True)
        object.__setattr__(self, "target", target)
        seed = check_rng("seed", self.seed, none=False, seed_sequence=False, generator=False)
        object.__setattr__(self, "seed", seed)
        from sklearn.datasets import load_digits  # slow to import: after the cheap checks

        digits = load_digits()
        x = digits.data / 16.0
        y = digits.target
        check_int("eval_size", self.eval_size, low=1, high=x.shape[0])
        rng = np.random.default_rng(seed)
        eval_idx = np.sort(rng.permutation(x.shape[0])[: self.eval_size])
        layers = self.layers()
        set_ = object.__setattr__
        set_(self, "features", x)
        set_(self, "onehot", np.eye(10)[y])
        set_(self, "labels", y)
        set_(self, "eval_idx", eval_idx)
        set_(self, "n_samples", x.shape[0])
        set_(self, "shapes", tuple(shape for shape, _ in layers))
        ends = np.cumsum([int(np.prod(shape)) for shape in self.shapes])
        set_(self, "dim", int(ends[-1]))
        set_(self, "bounds", tuple(zip((0, *ends[:-1].tolist()), ends.tolist(), strict=True)))
        parts = [rng.uniform(-a, a, size=int(np.prod(shape))) for shape, a in layers]
        set_(self, "w0", np.concatenate(parts))

    def init_params(self, batch: int) -> np.ndarray:
        return np.tile(self.w0, (check_int("batch", batch, low=1), 1))

    def unflatten(self, w: np.ndarray) -> list[np.ndarray]:
        """Split ``(B, d)`` parameters into views of shape ``(B, *shape)``, one per block of
        ``layers()``."""
        return [
            w[:, a:z].reshape(w.shape[0], *s)
            for (a, z), s in zip(self.bounds, self.shapes, strict=True)
        ]

    def accuracy(self, w: np.ndarray) -> np.ndarray:
        """Fraction of the evaluation subset classified correctly, shape ``(B,)``."""
        _, logits = self._forward(w, self._inputs(self.eval_idx))
        return np.mean(logits.argmax(axis=-1) == self.labels[self.eval_idx], axis=-1)

    def _inputs(self, idx: np.ndarray) -> np.ndarray:
        """The network's inputs for sample indices idx (any shape), leading axes those of idx."""
        return np.take(self.features, idx, axis=0, out=_work("x", (*idx.shape, 64)), mode="clip")

    def _forward(self, w: np.ndarray, x: np.ndarray) -> tuple[Any, np.ndarray]:
        """What the backward pass needs, and the max-shifted logits (B, m, 10)."""
        raise NotImplementedError

    def _batch_gradient(
        self, w: np.ndarray, x: np.ndarray, onehot: np.ndarray, weight: np.ndarray
    ) -> np.ndarray:
        """Σ weight x per-sample gradient, (B, d), over inputs x and labels onehot, per
        configuration (leading axis B) or shared (no leading axis); weight (B or 1, m)."""
        raise NotImplementedError

    def gradient(self, w, randomness, n_aggregated):
        idx, weight = self._weights(randomness, n_aggregated)
        if idx.shape[0] != w.shape[0]:  # one minibatch for every configuration
            idx = idx[0]
        onehot = np.take(
            self.onehot, idx, axis=0, out=_work("onehot", (*idx.shape, 10)), mode="clip"
        )
        return self._batch_gradient(w, self._inputs(idx), onehot, weight)

    def mean_gradient(self, w: np.ndarray) -> np.ndarray:
        """The full-data gradient, in blocks of ``block`` samples."""
        n = self.n_samples
        total = np.zeros_like(w)
        for start in range(0, n, self.block):
            idx = np.arange(start, min(start + self.block, n))
            weight = np.full((1, idx.size), 1.0 / n)
            total += self._batch_gradient(w, self._inputs(idx), self.onehot[idx], weight)
        return total


def _glorot(fan_in: int, fan_out: int) -> float:
    return math.sqrt(6.0 / (fan_in + fan_out))


# ------------------------------------------------------------------------------------------ MLP
@dataclass(frozen=True, eq=False)
class DigitsMLP(_DigitsClassifier):
    """A tanh MLP classifier on scikit-learn's bundled digits (1797 8x8 images, inputs in [0, 1]).

    Layers ``64 - hidden - 10``, softmax cross-entropy, minibatch SGD on all 1797 images; the loss is
    measured on a fixed evaluation subset. Parameters are flattened per configuration as
    ``[W1 (64, h), b1 (h), W2 (h, 10), b2 (10)]``. Forward and backward are written by hand and batched
    over configurations: one batched matrix multiply per layer.

    Parameters
    ----------
    hidden : int
        Hidden units (32 in the reference problem).
    batch_size : int
        Minibatch size of one gradient (32).
    eval_size : int
        Size of the fixed evaluation subset (600).
    target : float or None
        Evaluation loss counted as converged (0.05), finite and > 0; None: no target.
    seed : int >= 0
        Seeds the initial weights (Glorot uniform) and the evaluation subset; the same for every
        configuration.
    """

    hidden: int = 32
    name: str = "digits-mlp"

    def __post_init__(self) -> None:
        check_int("hidden", self.hidden, low=1)
        super().__post_init__()

    def layers(self) -> list[tuple[tuple[int, ...], float]]:
        h = self.hidden
        return [((64, h), _glorot(64, h)), ((h,), 0.0), ((h, 10), _glorot(h, 10)), ((10,), 0.0)]

    def _forward(self, w: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Hidden activations (B, m, h) and max-shifted logits (B, m, 10) for inputs x (B, m, 64), or
        for shared inputs x (m, 64) evaluated by every configuration (both work arrays)."""
        w1, b1, w2, b2 = self.unflatten(w)
        rows = (w.shape[0], x.shape[-2])
        # shared x (m, 64) broadcasts: B products (m, 64) @ (64, h)
        pre = np.matmul(x, w1, out=_work("hidden", (*rows, self.hidden)))
        hidden = _bias_tanh(pre, b1)
        logits = np.matmul(hidden, w2, out=_work("logits", (*rows, 10)))
        logits += b2[:, None, :]
        logits -= logits.max(axis=-1, keepdims=True)
        return hidden, logits

    def loss(self, w: np.ndarray) -> np.ndarray:
        kernel = _kernels.mlp_losses()
        if kernel is not None:
            losses = np.empty((w.shape[0], self.eval_size))
            x, labels = self.features[self.eval_idx], self.labels[self.eval_idx]
            kernel(np.ascontiguousarray(w), x, labels, self.hidden, 10, losses)
            return np.mean(losses, axis=-1)
        _, logits = self._forward(w, self.features[self.eval_idx])
        picked = np.take_along_axis(logits, self.labels[self.eval_idx][None, :, None], axis=-1)
        log_norm = np.log(np.exp(logits, out=logits).sum(axis=-1))
        return np.mean(log_norm - picked[..., 0], axis=-1)

    def _batch_gradient(self, w: np.ndarray, x: np.ndarray, onehot: np.ndarray, weight: np.ndarray):
        """Weighted-mean gradient over per-configuration samples x (B, m, 64), onehot (B, m, 10), or
        over samples shared by every configuration, x (m, 64), onehot (m, 10); weight (B or 1, m)."""
        kernel = _kernels.mlp_gradient()
        if kernel is not None:
            out = np.empty(w.shape)
            shared = x.ndim == 2
            x, onehot = (x[None], onehot[None]) if shared else (x, onehot)
            kernel(np.ascontiguousarray(w), x, onehot, weight, self.hidden, out)
            return out
        w2 = self.unflatten(w)[2]
        hidden, logits = self._forward(w, x)
        prob = np.exp(logits, out=logits)
        prob /= prob.sum(axis=-1, keepdims=True)
        prob -= onehot
        dlogits = prob
        dlogits *= weight[..., None]
        dhidden = np.matmul(dlogits, w2.transpose(0, 2, 1), out=_work("dhidden", hidden.shape))
        slope = np.multiply(hidden, hidden, out=_work("slope", hidden.shape))
        np.subtract(1.0, slope, out=slope)
        dhidden *= slope
        out = np.empty_like(w)
        g1, gb1, g2, gb2 = self.unflatten(out)
        np.matmul(np.swapaxes(x, -1, -2), dhidden, out=g1)  # shared x (m, 64) broadcasts
        dhidden.sum(axis=1, out=gb1)
        np.matmul(hidden.transpose(0, 2, 1), dlogits, out=g2)
        dlogits.sum(axis=1, out=gb2)
        return out


# ------------------------------------------------------------------------------------------ CNN
@dataclass(frozen=True, eq=False)
class DigitsCNN(_DigitsClassifier):
    """A small convolutional classifier on scikit-learn's bundled digits (8x8 images in [0, 1]).

    One 3x3 convolution with ``channels`` output channels (padding 1, stride 1) and tanh, 2x2 average
    pooling to (channels, 4, 4), a dense layer to 10 classes, softmax cross-entropy. Parameters are
    flattened per configuration in the order and layout of the equivalent PyTorch module
    (``Conv2d(1, c, 3, padding=1)``, ``AvgPool2d(2)``, ``Linear(16 c, 10)``, flattening channel by
    channel): ``[conv weight (c, 1, 3, 3), conv bias (c), dense weight (10, 16 c), dense bias (10)]``.
    Forward and backward are written by hand and batched over configurations; the convolution is a
    matrix multiply over the 3x3 patches of each image (made once).

    Parameters
    ----------
    channels : int
        Convolution channels (8 in the reference problem).
    batch_size : int
        Minibatch size of one gradient (32).
    eval_size : int
        Size of the fixed evaluation subset (600).
    target : float or None
        Evaluation loss counted as converged (0.05), finite and > 0; None: no target.
    seed : int >= 0
        Seeds the initial weights (Glorot uniform, as fans of the convolution count its 9 taps) and
        the evaluation subset; the same for every configuration.
    """

    channels: int = 8
    name: str = "digits-cnn"
    patches: np.ndarray = field(init=False, repr=False)
    #: Samples per block of the evaluation and the full-data gradient (bounds their memory).
    block: int = field(init=False, repr=False, default=100)

    def __post_init__(self) -> None:
        check_int("channels", self.channels, low=1)
        super().__post_init__()
        padded = np.pad(self.features.reshape(-1, 8, 8), ((0, 0), (1, 1), (1, 1)))
        taps = [padded[:, dy : dy + 8, dx : dx + 8] for dy in range(3) for dx in range(3)]
        object.__setattr__(self, "patches", np.stack(taps, axis=-1).reshape(-1, 64, 9))

    def layers(self) -> list[tuple[tuple[int, ...], float]]:
        c = self.channels
        return [
            ((c, 1, 3, 3), _glorot(9, 9 * c)),
            ((c,), 0.0),
            ((10, 16 * c), _glorot(16 * c, 10)),
            ((10,), 0.0),
        ]

    def _inputs(self, idx: np.ndarray) -> np.ndarray:
        """The 3x3 patches of the images idx, shape ``(*idx.shape, 64, 9)``."""
        return self.patches[idx]

    def _forward(self, w: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Convolution activations (B, m, 64, c) and max-shifted logits (B, m, 10) for patches x
        (B, m, 64, 9), or (m, 64, 9) shared by every configuration."""
        kernel, bias, dense, dense_bias = self.unflatten(w)
        b, c = w.shape[0], self.channels
        taps = kernel.reshape(b, 1, c, 9).transpose(0, 1, 3, 2)  # (B, 1, 9, c)
        pre = np.matmul(x, taps)  # (B, m, 64, c)
        m = pre.shape[1]
        act = _bias_tanh(pre.reshape(b, m * 64, c), bias).reshape(b, m, 64, c)
        pooled = act.reshape(b, m, 4, 2, 4, 2, c).mean(axis=(3, 5))  # (B, m, 4, 4, c)
        features = pooled.transpose(0, 1, 4, 2, 3).reshape(b, m, 16 * c)  # channel by channel
        logits = np.matmul(features, dense.transpose(0, 2, 1))
        logits += dense_bias[:, None, :]
        logits -= logits.max(axis=-1, keepdims=True)
        return (act, features), logits

    def loss(self, w: np.ndarray) -> np.ndarray:
        kernel = _kernels.cnn_losses()
        if kernel is not None:
            losses = np.empty((w.shape[0], self.eval_size))
            patches = self.patches[self.eval_idx].reshape(-1, 9)
            kernel(np.ascontiguousarray(w), patches, self.labels[self.eval_idx], losses)
            return np.mean(losses, axis=-1)
        losses = []
        for start in range(0, self.eval_size, self.block):
            idx = self.eval_idx[start : start + self.block]
            _, logits = self._forward(w, self.patches[idx])
            picked = np.take_along_axis(logits, self.labels[idx][None, :, None], axis=-1)[..., 0]
            losses.append(np.log(np.exp(logits).sum(axis=-1)) - picked)
        return np.mean(np.concatenate(losses, axis=-1), axis=-1)

    def accuracy(self, w: np.ndarray) -> np.ndarray:
        """Fraction of the evaluation subset classified correctly, shape ``(B,)``."""
        right = [
            self._forward(w, self.patches[idx])[1].argmax(axis=-1) == self.labels[idx]
            for idx in np.array_split(self.eval_idx, -(-self.eval_size // self.block))
        ]
        return np.mean(np.concatenate(right, axis=-1), axis=-1)

    def _batch_gradient(self, w: np.ndarray, x: np.ndarray, onehot: np.ndarray, weight: np.ndarray):
        """Weighted-sum gradient over per-configuration patches x (B, m, 64, 9) and onehot
        (B, m, 10), or over patches x (m, 64, 9) and onehot (m, 10) shared by every configuration;
        weight (B or 1, m)."""
        kernel = _kernels.cnn_gradient()
        if kernel is not None:
            out = np.empty(w.shape)
            rows = 1 if x.ndim == 3 else w.shape[0]
            onehot, weight = onehot.reshape(rows, -1, 10), weight.reshape(-1, weight.shape[-1])
            kernel(np.ascontiguousarray(w), x.reshape(rows, -1, 9), onehot, weight, out)
            return out
        b, c = w.shape[0], self.channels
        dense = self.unflatten(w)[2]
        (act, features), logits = self._forward(w, x)
        m = act.shape[1]
        prob = np.exp(logits, out=logits)
        prob /= prob.sum(axis=-1, keepdims=True)
        prob -= onehot
        dlogits = prob
        dlogits *= weight[..., None]
        out = np.empty_like(w)
        g_kernel, g_bias, g_dense, g_dense_bias = self.unflatten(out)
        np.matmul(dlogits.transpose(0, 2, 1), features, out=g_dense)
        dlogits.sum(axis=1, out=g_dense_bias)
        dpooled = np.matmul(dlogits, dense).reshape(b, m, c, 4, 1, 4, 1)
        dpooled = dpooled.transpose(0, 1, 3, 4, 5, 6, 2) * 0.25  # (B, m, 4, 1, 4, 1, c)
        dact = np.broadcast_to(dpooled, (b, m, 4, 2, 4, 2, c)).reshape(b, m, 64, c)
        dpre = dact * (1.0 - act * act)
        dpre.sum(axis=(1, 2), out=g_bias)
        # Σ over samples and positions of patch x dpre: (B, 9, m·64) @ (B, m·64, c)
        patches = np.broadcast_to(x, (b, m, 64, 9)).reshape(b, m * 64, 9)
        taps = np.matmul(patches.transpose(0, 2, 1), dpre.reshape(b, m * 64, c))  # (B, 9, c)
        g_kernel[:] = taps.transpose(0, 2, 1).reshape(b, c, 1, 3, 3)
        return out


# ------------------------------------------------------------------------------------------ registry
#: The names :func:`make_problem` takes.
REFERENCE_PROBLEMS = ("nq50", "q10", "digits-mlp", "digits-cnn")


def make_problem(name: str, **options: Any) -> Problem:
    """A reference problem of theory/README.md §5 by name.

    - ``nq50``: d = 50, h = logspace(0, -2, 50), σ = 0.03, w0 = 1, target 1e-3 f(w0); options override
      (``noise``, ``rotation``, ...).
    - ``q10``: noiseless, d = 10, h = logspace(0, -log10 κ, 10); option ``kappa`` (5 or 20; default 5).
    - ``digits-mlp``: :class:`DigitsMLP` with the reference settings; options override.
    - ``digits-cnn``: :class:`DigitsCNN` with the reference settings; options override.

    >>> make_problem("nq50").dim
    50
    """
    check_choice("name", name, REFERENCE_PROBLEMS)
    settings: dict[str, Any]
    if name == "nq50":
        settings = {"curvatures": spectrum(50, 100.0), "noise": 0.03, "name": "nq50"}
        return NoisyQuadratic(**(settings | options))
    if name == "q10":
        kappa = options.pop("kappa", 5.0)
        settings = {
            "curvatures": spectrum(10, kappa),
            "noise": 0.0,
            "name": f"q10-k{kappa:g}",
        }
        return NoisyQuadratic(**(settings | options))
    if name == "digits-cnn":
        return DigitsCNN(**options)
    return DigitsMLP(**options)
