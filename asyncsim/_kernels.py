"""Fused loops for the engine's hottest cases, compiled with numba on first use (cached on disk):
the whole step of heavy ball on a diagonal quadratic, the momentum update after any gradient, the
digits networks' gradients and losses one configuration at a time (matrix products through BLAS on one
thread, the elementwise work fused around them, in cache), and the version store's slot assignment.

numba is optional (the ``fast`` extra): :func:`quadratic_momentum` returns None where it is absent,
or where ``ASYNCSIM_KERNELS=numpy`` is set, and the engine then runs its NumPy path. A kernel does the
same floating-point operations in the same order as that path (no fast-math, no contraction into fused
multiply-adds), so its results equal it to the last bit (with BLAS on one thread in the NumPy path
too), except in the networks' kernels: they take e^x from :func:`_exp_block`, a polynomial the
compiler vectorises (the one function compiled with fused multiply-adds), within 2 ulp of ``np.exp``
(the scalar ``exp`` of the C library, which the evaluation's tanh spent most of its time in), and
the CNN's convolution sums in another order: equal to rtol 1e-12.
``tests/test_engine_reference.py`` runs both.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = [
    "assign_slots",
    "cnn_gradient",
    "cnn_losses",
    "compiled_assign_slots",
    "mlp_gradient",
    "mlp_losses",
    "momentum_apply",
    "quadratic_momentum",
    "quadratic_momentum_flat",
]


def _quadratic_momentum_steps(
    ring: np.ndarray,
    version_slot: np.ndarray,
    read_slot: np.ndarray,
    t0: int,
    t1: int,
    curvatures: np.ndarray,
    w_star: np.ndarray,
    shifted: bool,
    has_noise: bool,
    noise: np.ndarray,
    noise_start: int,
    noise_factor: np.ndarray,
    lr: np.ndarray,
    momentum: np.ndarray,
    velocity: np.ndarray,
    frozen: np.ndarray,
    nesterov: bool,
) -> None:
    """Steps ``t0 .. t1 - 1`` of heavy ball (or Nesterov's form) on a diagonal quadratic, in place.

    ``ring`` (S, B, d) holds version v in slot ``version_slot[v]``; step t reads slot
    ``read_slot[t, b]`` (one column: shared by every configuration) and writes version t + 1.
    ``noise`` (1 or B, n, d) is the drawn block whose row 0 is step ``noise_start`` (with
    ``has_noise``; else a placeholder), scaled per step and configuration by ``noise_factor[t, b]``
    (one column: shared). Per element, as the NumPy path: ``g = h x + (σ/√k) z``,
    ``u ← μ u - α g``, update ``u`` (Nesterov: ``μ u - α g``), ``w ← w + update``; a ``frozen``
    configuration keeps its parameters.
    """
    batch, dim = ring.shape[1], ring.shape[2]
    shared_read = read_slot.shape[1] == 1
    shared_factor = noise_factor.shape[1] == 1
    shared_noise = noise.shape[0] == 1
    for t in range(t0, t1):
        cur, new = version_slot[t], version_slot[t + 1]  # slots, indexed in place (no views)
        row = t - noise_start if has_noise else 0
        for b in range(batch):
            if frozen[b]:  # the update is computed and dropped by the NumPy path: keep cur
                for i in range(dim):
                    ring[new, b, i] = ring[cur, b, i]
                continue
            read = read_slot[t, 0 if shared_read else b]
            alpha, mu = lr[b], momentum[b]
            factor = noise_factor[t, 0 if shared_factor else b]
            nb = 0 if shared_noise else b
            for i in range(dim):
                x = ring[read, b, i] - w_star[i] if shifted else ring[read, b, i]
                g = x * curvatures[i]
                if has_noise:
                    g = g + noise[nb, row, i] * factor
                step = alpha * g
                v = mu * velocity[b, i]
                v = v - step
                velocity[b, i] = v
                if nesterov:
                    ring[new, b, i] = ring[cur, b, i] + (mu * v - step)
                else:
                    ring[new, b, i] = ring[cur, b, i] + v


def _quadratic_momentum_flat(
    flat: np.ndarray,
    version_slot: np.ndarray,
    read_slot: np.ndarray,
    t0: int,
    t1: int,
    curvatures: np.ndarray,
    w_star: np.ndarray,
    shifted: bool,
    lr: np.ndarray,
    momentum: np.ndarray,
    velocity: np.ndarray,
    frozen_rows: np.ndarray,
    dim: int,
    nesterov: bool,
) -> None:
    """:func:`_quadratic_momentum_steps` without noise, every configuration reading the same slot,
    over the flat (B·d) rows of ``flat`` (S, B·d) in one loop per step: for small d, where a loop per
    configuration costs more than its arithmetic. ``curvatures``, ``w_star``, ``lr`` and ``momentum``
    come expanded to B·d; ``frozen_rows`` lists the configurations that keep their parameters."""
    n = flat.shape[1]
    for t in range(t0, t1):
        cur = flat[version_slot[t]]
        new = flat[version_slot[t + 1]]
        read = flat[read_slot[t]]
        for j in range(n):
            x = read[j] - w_star[j] if shifted else read[j]
            step = lr[j] * (x * curvatures[j])
            v = momentum[j] * velocity[j]
            v = v - step
            velocity[j] = v
            new[j] = cur[j] + ((momentum[j] * v - step) if nesterov else v)
        for b in frozen_rows:
            for i in range(b * dim, (b + 1) * dim):
                new[i] = cur[i]


def _momentum_apply(
    grads: np.ndarray,
    cur: np.ndarray,
    new: np.ndarray,
    lr: np.ndarray,
    momentum: np.ndarray,
    velocity: np.ndarray,
    frozen: np.ndarray,
    nesterov: bool,
) -> None:
    """One heavy-ball (or Nesterov) update from gradients ``grads`` (B, d), in one pass: per element,
    as the NumPy path, ``u ← μ u - α g`` (in ``velocity``, in place), ``new = cur + u`` (Nesterov:
    ``cur + μ u - α g``); a ``frozen`` configuration keeps ``cur``."""
    batch, dim = grads.shape
    for b in range(batch):
        alpha, mu = lr[b], momentum[b]
        g, vel, c, n = grads[b], velocity[b], cur[b], new[b]
        keep = frozen[b]
        for i in range(dim):
            step = alpha * g[i]
            v = mu * vel[i]
            v = v - step
            vel[i] = v
            update = mu * v - step if nesterov else v
            n[i] = c[i] if keep else c[i] + update


_EXP_HIGH = 709.782712893384  # log of the largest float64: e^x overflows to inf above
_EXP_LOW = -708.0  # e^x is normal above (subnormal below, from about -708.4): 0 is within 4e-308
_LOG2E = 1.4426950408889634
_LN2_HIGH = 6.93147180369123816490e-01  # ln 2 in two parts: k · _LN2_HIGH is exact for |k| < 2^11
_LN2_LOW = 1.90821492927058770002e-10
_ROUNDER = 6755399441055744.0  # 1.5 · 2^52: x + it rounds x to an integer held in its low bits
_ROUNDER_BITS = int(np.float64(_ROUNDER).view(np.int64))
_EXP_BLOCK = 256  # values per pass, in L1


def _exp(values: np.ndarray) -> None:
    """``values`` (contiguous, any shape) ← e^values in place, block after block of
    :func:`_exp_block`."""
    flat = values.reshape(values.size)
    rounded = np.empty(_EXP_BLOCK)
    for start in range(0, flat.size, _EXP_BLOCK):
        _exp_block(flat[start : start + _EXP_BLOCK], rounded)


def _exp_block(block: np.ndarray, rounded: np.ndarray) -> None:
    """``block`` (1-d, contiguous; best kept in L1) ← e^block in place, within 2 ulp
    of ``np.exp`` (equal in about 6 cases of 10), in loops the compiler vectorises, where
    ``math.exp`` is a scalar call (about 10 ns a value here; this, about 1.7); ``rounded``, at least
    as long, is scratch. Overflow gives inf and NaN stays NaN as in NumPy; below -708 it gives 0 where
    NumPy gives a subnormal. The one function compiled with contraction into fused multiply-adds
    (where the processor has them): a value then takes 1.7 ns where it took 2.6, at the same
    accuracy.

    e^x = 2^k e^r with k = round(x / ln 2) and |r| <= ln 2 / 2; e^r by its Taylor polynomial of
    degree 13 (truncation below 1e-18) in Estrin's scheme, 2^k by writing k into a float's exponent
    bits."""
    bits = rounded.view(np.int64)
    n = block.size
    for i in range(n):
        x = block[i]
        c = min(max(x, _EXP_LOW), _EXP_HIGH)
        y = c * _LOG2E + _ROUNDER
        k = y - _ROUNDER
        r = (c - k * _LN2_HIGH) - k * _LN2_LOW
        r2 = r * r  # Estrin's scheme: independent products, not one chain of 13
        r4 = r2 * r2
        low = ((1.0 + r) + r2 * (1.0 / 2.0 + r * (1.0 / 6.0))) + r4 * (
            (1.0 / 24.0 + r * (1.0 / 120.0)) + r2 * (1.0 / 720.0 + r * (1.0 / 5040.0))
        )
        high = (
            (1.0 / 40320.0 + r * (1.0 / 362880.0)) + r2 * (1.0 / 3628800.0 + r * (1.0 / 39916800.0))
        ) + r4 * (1.0 / 479001600.0 + r * (1.0 / 6227020800.0))
        p = low + (r4 * r4) * high
        p = np.inf if x > _EXP_HIGH else p
        p = 0.0 if x < _EXP_LOW else p
        block[i] = x if x != x else p
        rounded[i] = y
    for i in range(n):  # 2^(k - 1): k - 1 + 1023 is a valid exponent for every k of the range
        bits[i] = (bits[i] - _ROUNDER_BITS + 1022) << 52
    for i in range(n):
        block[i] = (block[i] * 2.0) * rounded[i]


def _pairwise_sum(row: np.ndarray) -> float:
    """Σ row for a short contiguous row (fewer than 128 values), in NumPy's pairwise order: eight
    running sums combined as ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7)), then the rest."""
    n = row.size
    if n < 8:
        total = 0.0
        for k in range(n):
            total += row[k]
        return total
    s0, s1, s2, s3 = row[0], row[1], row[2], row[3]
    s4, s5, s6, s7 = row[4], row[5], row[6], row[7]
    whole = n - n % 8
    for k in range(8, whole, 8):
        s0 += row[k]
        s1 += row[k + 1]
        s2 += row[k + 2]
        s3 += row[k + 3]
        s4 += row[k + 4]
        s5 += row[k + 5]
        s6 += row[k + 6]
        s7 += row[k + 7]
    total = ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))
    for k in range(whole, n):
        total += row[k]
    return total


def _softmax_residual(logits: np.ndarray, onehot: np.ndarray, weight: np.ndarray) -> None:
    """``logits`` (m, c), max-shifted and contiguous, ← (softmax - onehot) x weight (m,) in place,
    as the NumPy paths: exp, divide by the row's pairwise sum, subtract the label, multiply."""
    classes = logits.shape[1]
    _exp(logits)
    for i in range(logits.shape[0]):
        row = logits[i]
        total = _pairwise_sum(row)
        for k in range(classes):
            row[k] = (row[k] / total - onehot[i, k]) * weight[i]


def _cross_entropy(logits: np.ndarray, labels: np.ndarray, out: np.ndarray) -> None:
    """``out`` (m,) ← -log softmax(logits)[label] for max-shifted contiguous logits (m, c), as the
    NumPy paths: log of the row's pairwise sum of exponentials, minus the label's logit."""
    for i in range(logits.shape[0]):
        out[i] = logits[i, labels[i]]
    _exp(logits)
    for i in range(logits.shape[0]):
        out[i] = math.log(_pairwise_sum(logits[i])) - out[i]


def _bias_tanh(pre: np.ndarray, bias: np.ndarray) -> None:
    """``pre`` (m, h), contiguous, ← tanh(pre + bias) in place, as the NumPy paths:
    1 + (-2 / (1 + e^{2 (pre + bias)})), a group of rows at a time, in L1."""
    units = pre.shape[1]
    group = max(1, _EXP_BLOCK // units)
    rounded = np.empty(group * units)
    for start in range(0, pre.shape[0], group):
        rows = pre[start : start + group]
        for i in range(rows.shape[0]):
            for j in range(units):
                rows[i, j] = (rows[i, j] + bias[j]) * 2.0
        flat = rows.reshape(rows.size)
        _exp_block(flat, rounded)
        for i in range(flat.size):
            flat[i] = 1.0 + -2.0 / (flat[i] + 1.0)


def _shift_by_max(logits: np.ndarray, bias: np.ndarray) -> None:
    """``logits`` (m, c) ← logits + bias, minus each row's max, in place."""
    for i in range(logits.shape[0]):
        top = -np.inf
        for k in range(logits.shape[1]):
            z = logits[i, k] + bias[k]
            logits[i, k] = z
            top = max(top, z)
        for k in range(logits.shape[1]):
            logits[i, k] -= top


def _mlp_layers(w: np.ndarray, x: np.ndarray, hidden: np.ndarray, logits: np.ndarray) -> None:
    """One configuration's forward pass: ``hidden`` (m, h) ← tanh(x W1 + b1), ``logits`` (m, c) ←
    hidden W2 + b2 shifted by each row's max; w (d,) flattened as ``[W1, b1, W2, b2]``."""
    units, classes = hidden.shape[1], logits.shape[1]
    n1 = x.shape[1] * units
    n2 = n1 + units
    n3 = n2 + units * classes
    np.dot(x, w[:n1].reshape((x.shape[1], units)), hidden)
    _bias_tanh(hidden, w[n1:n2])
    np.dot(hidden, w[n2:n3].reshape((units, classes)), logits)
    _shift_by_max(logits, w[n3:])


def _mlp_gradient(
    w: np.ndarray,
    x: np.ndarray,
    onehot: np.ndarray,
    weight: np.ndarray,
    units: int,
    out: np.ndarray,
) -> None:
    """The MLP's weighted minibatch gradients ``out`` (B, d) of parameters w (B, d), each
    configuration in one pass that stays in cache, as the NumPy path of
    ``asyncsim.problems.DigitsMLP``: x (B or 1, m, 64), onehot (B or 1, m, c), weight (B or 1, m);
    one leading row is shared by every configuration."""
    m, features, classes = x.shape[1], x.shape[2], onehot.shape[2]
    n1 = features * units
    n2 = n1 + units
    n3 = n2 + units * classes
    hidden = np.empty((m, units))
    dlogits = np.empty((m, classes))
    dhidden = np.empty((m, units))
    for b in range(w.shape[0]):
        wb, g = w[b], out[b]
        xb = x[b if x.shape[0] > 1 else 0]
        yb = onehot[b if onehot.shape[0] > 1 else 0]
        cb = weight[b if weight.shape[0] > 1 else 0]
        _mlp_layers(wb, xb, hidden, dlogits)
        _softmax_residual(dlogits, yb, cb)
        np.dot(dlogits, wb[n2:n3].reshape((units, classes)).T, dhidden)
        for i in range(m):
            for j in range(units):
                dhidden[i, j] *= 1.0 - hidden[i, j] * hidden[i, j]
        np.dot(xb.T, dhidden, g[:n1].reshape((features, units)))
        np.dot(hidden.T, dlogits, g[n2:n3].reshape((units, classes)))
        for j in range(units):
            g[n1 + j] = 0.0
        for k in range(classes):
            g[n3 + k] = 0.0
        for i in range(m):  # bias gradients: column sums, row after row as NumPy adds them
            for j in range(units):
                g[n1 + j] += dhidden[i, j]
            for k in range(classes):
                g[n3 + k] += dlogits[i, k]


def _mlp_losses(
    w: np.ndarray, x: np.ndarray, labels: np.ndarray, units: int, classes: int, out: np.ndarray
) -> None:
    """Cross-entropy ``out`` (B, m) of each configuration (w (B, d)) on shared samples x (m, 64)
    with integer labels (m,), as the NumPy path of ``asyncsim.problems.DigitsMLP.loss``."""
    m = x.shape[0]
    hidden = np.empty((m, units))
    logits = np.empty((m, classes))
    for b in range(w.shape[0]):
        _mlp_layers(w[b], x, hidden, logits)
        _cross_entropy(logits, labels, out[b])


def _cnn_layers(
    w: np.ndarray, patches: np.ndarray, act: np.ndarray, features: np.ndarray, logits: np.ndarray
) -> None:
    """One configuration's forward pass of ``asyncsim.problems.DigitsCNN``: ``act`` (m·64, c) ←
    tanh(patches (m·64, 9) K^T + bias), ``features`` (m, 16 c) ← its 2x2 means channel by channel,
    ``logits`` (m, 10) ← features D^T + d, shifted by each row's max; w (d,) flattened as
    ``[K (c, 1, 3, 3), bias (c), D (10, 16 c), d (10)]``."""
    channels, classes = act.shape[1], logits.shape[1]
    n1 = 9 * channels
    n2 = n1 + channels
    n3 = n2 + classes * 16 * channels
    np.dot(patches, w[:n1].reshape((channels, 9)).T, act)
    _bias_tanh(act, w[n1:n2])
    for i in range(features.shape[0]):
        for c in range(channels):
            for y in range(4):
                for x in range(4):
                    top = i * 64 + 16 * y + 2 * x  # pixel (2y, 2x) of image i
                    block = act[top, c] + act[top + 1, c] + act[top + 8, c] + act[top + 9, c]
                    features[i, 16 * c + 4 * y + x] = block / 4.0
    np.dot(features, w[n2:n3].reshape((classes, 16 * channels)).T, logits)
    _shift_by_max(logits, w[n3:])


def _cnn_gradient(
    w: np.ndarray, patches: np.ndarray, onehot: np.ndarray, weight: np.ndarray, out: np.ndarray
) -> None:
    """The CNN's weighted minibatch gradients ``out`` (B, d), one configuration at a time, as the
    NumPy path of ``asyncsim.problems.DigitsCNN``: patches (B or 1, m·64, 9), onehot (B or 1, m, c),
    weight (B or 1, m); one leading row is shared by every configuration. Samples after a
    configuration's last nonzero weight are skipped (a batch that aggregates unequal numbers of
    gradients draws for the largest)."""
    m, classes = onehot.shape[1], onehot.shape[2]
    channels = (w.shape[1] - classes) // (1 + 9 + 16 * classes)
    n1 = 9 * channels
    n2 = n1 + channels
    n3 = n2 + classes * 16 * channels
    act = np.empty((m * 64, channels))
    features = np.empty((m, 16 * channels))
    dlogits = np.empty((m, classes))
    dfeatures = np.empty((m, 16 * channels))
    for b in range(w.shape[0]):
        wb, g = w[b], out[b]
        cb = weight[b if weight.shape[0] > 1 else 0]
        n = m  # samples up to the last weighted one
        while n > 1 and cb[n - 1] == 0.0:
            n -= 1
        xb = patches[b if patches.shape[0] > 1 else 0][: n * 64]
        used_act, used_dlogits = act[: n * 64], dlogits[:n]
        _cnn_layers(wb, xb, used_act, features[:n], used_dlogits)
        _softmax_residual(used_dlogits, onehot[b if onehot.shape[0] > 1 else 0], cb)
        dense = wb[n2:n3].reshape((classes, 16 * channels))
        np.dot(used_dlogits.T, features[:n], g[n2:n3].reshape((classes, 16 * channels)))
        np.dot(used_dlogits, dense, dfeatures[:n])
        for k in range(classes):
            total = 0.0
            for i in range(n):
                total += dlogits[i, k]
            g[n3 + k] = total
        for c in range(channels):
            g[n1 + c] = 0.0
        for i in range(n):  # back through the pooling and tanh, in place of the activations
            for p in range(64):
                cell = 4 * ((p // 8) // 2) + (p % 8) // 2  # its 2x2 block's feature index
                for c in range(channels):
                    a = act[i * 64 + p, c]
                    d = dfeatures[i, 16 * c + cell] * 0.25 * (1.0 - a * a)
                    act[i * 64 + p, c] = d
                    g[n1 + c] += d
        np.dot(used_act.T, xb, g[:n1].reshape((channels, 9)))


def _cnn_losses(w: np.ndarray, patches: np.ndarray, labels: np.ndarray, out: np.ndarray) -> None:
    """Cross-entropy ``out`` (B, m) of each configuration on shared patches (m·64, 9) with integer
    labels (m,), as the NumPy path of ``asyncsim.problems.DigitsCNN.loss``, 32 images at a time
    (the activations stay in cache)."""
    m, block = labels.size, 32
    channels = (w.shape[1] - 10) // (1 + 9 + 160)
    act = np.empty((block * 64, channels))
    features = np.empty((block, 16 * channels))
    logits = np.empty((block, 10))
    for b in range(w.shape[0]):
        for start in range(0, m, block):
            n = min(block, m - start)
            rows = patches[start * 64 : (start + n) * 64]
            _cnn_layers(w[b], rows, act[: n * 64], features[:n], logits[:n])
            _cross_entropy(logits[:n], labels[start : start + n], out[b, start : start + n])


def assign_slots(order: np.ndarray, free_from: np.ndarray, steps: int) -> tuple[np.ndarray, int]:
    """Store slots of versions 0..steps, first-free with the most recently freed first: step t writes
    version t + 1 once the versions whose ``free_from`` (last use) is below t gave their slots back,
    taken in ``order`` (versions sorted by last use). Returns (slot (steps + 1,), slot count)."""
    slot = np.zeros(steps + 1, dtype=np.int64)
    free = np.empty(steps + 1, dtype=np.int64)  # a stack of free slots
    n_free, n_slots, k = 0, 1, 0
    for step in range(steps):
        while free_from[order[k]] < step:
            free[n_free] = slot[order[k]]
            n_free += 1
            k += 1
        if n_free > 0:
            n_free -= 1
            slot[step + 1] = free[n_free]
        else:
            slot[step + 1] = n_slots
            n_slots += 1
    return slot, n_slots


#: Functions the kernels call: compiled, and put in their place, before any kernel is.
_HELPERS = (
    "_exp_block",
    "_exp",
    "_pairwise_sum",
    "_bias_tanh",
    "_softmax_residual",
    "_cross_entropy",
    "_shift_by_max",
    "_mlp_layers",
    "_cnn_layers",
)


@functools.cache
def _compiled(name: str) -> Callable | None:
    try:
        import numba
    except ImportError:
        return None

    def jit(function: Callable, fastmath: Any = False) -> Callable:
        return numba.njit(cache=True, fastmath=fastmath, error_model="numpy")(function)

    for helper in _HELPERS:
        if not isinstance(globals()[helper], numba.core.dispatcher.Dispatcher):
            contract = {"contract"} if helper == "_exp_block" else False
            globals()[helper] = jit(globals()[helper], contract)
    kernel = jit(globals()[name])
    return _on_one_blas_thread(kernel) if name in _CALLING_BLAS else kernel


#: Kernels whose matrix products go through BLAS (numba's np.dot calls scipy's).
_CALLING_BLAS = ("_mlp_gradient", "_mlp_losses", "_cnn_gradient", "_cnn_losses")


@functools.cache
def _blas_libraries() -> list:
    """threadpoolctl's controllers of the BLAS libraries loaded, scipy's (which numba calls) among
    them."""
    import scipy.linalg.cython_blas  # noqa: F401  (loads scipy's BLAS)
    from threadpoolctl import ThreadpoolController

    return [lib for lib in ThreadpoolController().lib_controllers if lib.user_api == "blas"]


def _on_one_blas_thread(kernel: Callable) -> Callable:
    """``kernel`` run with BLAS on one thread. Its products are small, yet large enough that
    OpenBLAS splits some over threads that then mostly wait: on a loaded machine a CNN run spent
    twice its CPU time so, and ran slower. Setting and restoring costs about 25 µs a call, and
    nothing where BLAS already runs one thread (a sweep's processes)."""

    @functools.wraps(kernel)
    def call(*args: Any) -> None:
        threaded = [(lib, n) for lib in _blas_libraries() if (n := lib.num_threads) > 1]
        for lib, _ in threaded:
            lib.set_num_threads(1)
        try:
            kernel(*args)
        finally:
            for lib, n in threaded:
                lib.set_num_threads(n)

    return call


def _kernel(name: str) -> Callable | None:
    if os.environ.get("ASYNCSIM_KERNELS", "numba") == "numpy":
        return None
    return _compiled(name)


def quadratic_momentum() -> Callable | None:
    """The compiled :func:`_quadratic_momentum_steps`, or None (numba absent, or
    ``ASYNCSIM_KERNELS=numpy``)."""
    return _kernel("_quadratic_momentum_steps")


def quadratic_momentum_flat() -> Callable | None:
    """The compiled :func:`_quadratic_momentum_flat`, or None."""
    return _kernel("_quadratic_momentum_flat")


def momentum_apply() -> Callable | None:
    """The compiled :func:`_momentum_apply`, or None (numba absent, or ``ASYNCSIM_KERNELS=numpy``)."""
    return _kernel("_momentum_apply")


def cnn_gradient() -> Callable | None:
    """The compiled :func:`_cnn_gradient`, or None (numba absent, or ``ASYNCSIM_KERNELS=numpy``)."""
    return _kernel("_cnn_gradient")


def cnn_losses() -> Callable | None:
    """The compiled :func:`_cnn_losses`, or None (numba absent, or ``ASYNCSIM_KERNELS=numpy``)."""
    return _kernel("_cnn_losses")


def mlp_gradient() -> Callable | None:
    """The compiled :func:`_mlp_gradient`, or None (numba absent, or ``ASYNCSIM_KERNELS=numpy``)."""
    return _kernel("_mlp_gradient")


def mlp_losses() -> Callable | None:
    """The compiled :func:`_mlp_losses`, or None (numba absent, or ``ASYNCSIM_KERNELS=numpy``)."""
    return _kernel("_mlp_losses")


def compiled_assign_slots() -> Callable:
    """:func:`assign_slots` compiled, or as it is (plain Python, about 1 µs a step) where numba is
    absent."""
    return _kernel("assign_slots") or assign_slots
