"""Measurements on runs: the total-momentum estimator, iterations and time to target, efficiencies.

The estimator follows theory/README.md §9: worker-local reads, one global EMA
over all writers' writes. One implementation serves the engine's recorded measurement and YellowFin's
closed loop.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from asyncsim._validate import check_array, check_choice, check_int, check_real

__all__ = [
    "MomentumEstimate",
    "contraction_rate",
    "iterations_to_target",
    "momentum_estimate",
    "momentum_estimator_init",
    "momentum_estimator_update",
    "statistical_penalty",
    "time_to_target",
    "trailing_ema",
]


# ------------------------------------------------------------------------------------------ momentum
class MomentumEstimate(NamedTuple):
    """State of the worker-local total-momentum estimator for B configurations and W writers.

    ``pending_num`` holds ``α g^(k) - y^(k)`` and ``pending_den`` ``y^(k) - y^(k-1)`` of each writer's
    last write (W, B, d); the term of write k is completed by the writer's next read ``y^(k+1)``:
    ``n = y^(k+1) - y^(k) + α g^(k)``, ``d = y^(k) - y^(k-1)``. ``num``/``den`` are the EMAs (B, d).
    """

    pending_num: np.ndarray
    pending_den: np.ndarray
    pending_valid: np.ndarray  # (W, B) bool: writer has a complete pending term
    num: np.ndarray
    den: np.ndarray
    terms: np.ndarray  # (B,) EMA updates so far
    beta: float


def momentum_estimator_init(
    params: np.ndarray, n_writers: int, beta: float = 0.99
) -> MomentumEstimate:
    """Empty estimator for parameters ``(B, d)`` written by ``n_writers`` workers (or groups)."""
    check_int("n_writers", n_writers, low=1)
    check_real("beta", beta, low=0.0, high=1.0, high_open=True)
    b, d = params.shape
    return MomentumEstimate(
        np.zeros((n_writers, b, d)),
        np.zeros((n_writers, b, d)),
        np.zeros((n_writers, b), dtype=bool),
        np.zeros((b, d)),
        np.zeros((b, d)),
        np.zeros(b, dtype=np.int64),
        float(beta),
    )


def momentum_estimator_update(
    est: MomentumEstimate, context: Any, grads: np.ndarray, lr: np.ndarray
) -> MomentumEstimate:
    """Account for one write: ``context`` is the engine's step context (writer, read, previous read),
    ``grads`` (B, d) the gradient the writer sent, ``lr`` (B,) the step size the server applied."""
    writer = context.writer
    rows = np.arange(writer.shape[0])
    known = writer >= 0
    slot = np.where(known, writer, 0)
    read = context.read_params
    valid = est.pending_valid[slot, rows] & known
    num, den = est.num, est.den
    if valid.any():
        beta = est.beta
        n = read + est.pending_num[slot, rows]
        d = est.pending_den[slot, rows]
        upd = valid[:, None]
        num = np.where(upd, beta * num + (1.0 - beta) * n, num)
        den = np.where(upd, beta * den + (1.0 - beta) * d, den)
    pending_num, pending_den, pending_valid = est.pending_num, est.pending_den, est.pending_valid
    pending_num[slot, rows] = np.asarray(lr).reshape(-1, 1) * grads - read
    pending_den[slot, rows] = read - context.previous_read_params()
    pending_valid[slot, rows] = context.has_previous_read() & known
    return est._replace(num=num, den=den, terms=est.terms + valid)


def momentum_estimate(est: MomentumEstimate, rel_floor: float = 1e-9) -> np.ndarray:
    """μ̂_T per configuration (B,): median over coordinates of ``num/den``, skipping coordinates whose
    ``|den|`` is below ``rel_floor`` times the row's largest; NaN before the first complete term."""
    mag = np.abs(est.den)
    keep = mag > rel_floor * mag.max(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = est.num / est.den
    if keep.all():
        out = np.median(ratio, axis=1)
    else:  # np.nanmedian row by row, vectorized: NaN sorts last; the middle one or two of k values
        ordered = np.sort(np.where(keep, ratio, np.nan), axis=1)
        k = np.count_nonzero(~np.isnan(ordered), axis=1)
        rows = np.arange(ordered.shape[0])
        low, high = ordered[rows, np.maximum(k - 1, 0) // 2], ordered[rows, k // 2]
        out = np.where(k % 2 == 1, low, (low + high) / 2)
        out[k == 0] = np.nan
    return np.where(est.terms > 0, out, np.nan)


# ------------------------------------------------------------------------------------------ rates
def contraction_rate(
    distance: np.ndarray, steps: np.ndarray, *, window: int = 8, floor: float = 1e-250
) -> np.ndarray:
    """Per-step contraction of a noiseless run: the slope of the log envelope of ``distance``.

    The envelope (a running maximum over ``window`` recorded points) removes the oscillation of complex
    eigenvalues; a least-squares line through its logarithm against ``steps`` gives ``log ρ``. Each
    configuration uses its recorded points up to the first one below ``floor`` (underflow) or not finite.

    Parameters
    ----------
    distance : array (R, B)
        ‖w - w*‖ (or any norm of the error) at the recorded steps.
    steps : array (R,)
        The recorded steps, evenly spaced.

    Returns
    -------
    ndarray (B,)
        ρ, the measured rate per step (NaN where fewer than ``window + 2`` usable points remain).
    """
    window = check_int("window", window, low=1)
    distance = np.asarray(distance, dtype=np.float64)
    steps = np.asarray(steps, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        logd = np.log(distance)
    usable = np.isfinite(logd) & (distance > floor)
    length = np.where(usable.all(axis=0), usable.shape[0], np.argmin(usable, axis=0))
    rates = np.full(distance.shape[1], np.nan)
    for b in range(distance.shape[1]):
        n = length[b]
        if n < window + 2:
            continue
        envelope = np.lib.stride_tricks.sliding_window_view(logd[:n, b], window).max(axis=-1)
        x = steps[window - 1 : n] - steps[window - 1 : n].mean()
        rates[b] = np.exp((x @ (envelope - envelope.mean())) / (x @ x))
    return rates


# ------------------------------------------------------------------------------------------ targets
def trailing_ema(values: np.ndarray, beta: float) -> np.ndarray:
    """Zero-debiased trailing EMA along axis 0 of ``values`` (R, ...), ``β`` in [0, 1)."""
    beta = check_real("beta", beta, low=0.0, high=1.0, high_open=True)
    values = np.asarray(values, dtype=np.float64)
    out = np.empty_like(values)
    acc = np.zeros(values.shape[1:])
    for r in range(values.shape[0]):
        acc = beta * acc + (1.0 - beta) * values[r]
        out[r] = acc / (1.0 - beta ** (r + 1))
    return out


def iterations_to_target(
    history: Any, target: Any, *, ema: float | None = None, metric: str = "loss"
) -> np.ndarray:
    """The first recorded step whose loss is at or below ``target``, per configuration (B,).

    Parameters
    ----------
    history : History
        A run's record; its resolution is its ``record_every``.
    target : float or array (B,)
        Loss target.
    ema : float or None
        For noisy losses: compare a zero-debiased trailing EMA with this β over the recorded points
        instead of the raw loss.
    metric : {"loss", "distance"}
        ``distance`` compares the relative distance ``‖w_t - w*‖ / ‖w_0 - w*‖`` with the target instead
        (the single-run criterion of theory/README.md §3).

    Returns
    -------
    ndarray (B,) float
        Updates until the target was first met; ``inf`` if never, or if the configuration diverged.
    """
    target = check_array("target", target)
    check_choice("metric", metric, ("loss", "distance"))
    if metric == "distance":
        if history.distance is None:
            raise ValueError("metric='distance' needs a problem whose optimum is known")
        loss = history.distance / history.distance[0]
    else:
        loss = np.asarray(history.loss, dtype=np.float64)
    if ema is not None:
        loss = trailing_ema(np.where(np.isfinite(loss), loss, np.inf), ema)
    with np.errstate(invalid="ignore"):
        hit = loss <= target
    first = np.argmax(hit, axis=0)
    out = np.where(hit.any(axis=0), history.steps[first].astype(np.float64), np.inf)
    return np.where(history.diverged, np.inf, out)


def time_to_target(iterations: np.ndarray, apply_time: np.ndarray) -> np.ndarray:
    """Simulated time of the update that met the target: ``apply_time[iterations - 1]`` (0 for 0
    iterations, inf for inf). ``apply_time`` is a trace's clock, shape (n,) or (B, n)."""
    iterations = np.asarray(iterations, dtype=np.float64)
    clock = np.broadcast_to(
        np.asarray(apply_time, dtype=np.float64), (*iterations.shape, np.shape(apply_time)[-1])
    )
    finite = np.isfinite(iterations)
    index = np.where(finite, iterations, 1).astype(np.int64) - 1
    if (index >= clock.shape[-1]).any():
        raise ValueError("iterations exceed the length of apply_time")
    taken = np.take_along_axis(clock, np.maximum(index, 0)[..., None], axis=-1)[..., 0]
    return np.where(finite, np.where(index < 0, 0.0, taken), np.inf)


def statistical_penalty(iterations: Any, baseline: Any) -> np.ndarray:
    """Iterations to target relative to a baseline (e.g. one worker): SE = I / I_baseline."""
    iterations = np.asarray(iterations, dtype=np.float64)
    baseline = check_array("baseline", baseline, low=0.0, low_open=True)
    return iterations / baseline
