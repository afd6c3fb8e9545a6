r"""YellowFin, the automatic momentum tuner [YF]_, as a batched transformation; open and closed loop.

Each step the tuner measures, from the gradient alone, a curvature range ``[h_min, h_max]``, the gradient
variance ``C`` and the distance to the optimum ``D`` (zero-debiased moving averages with ``β = 0.999``), and
solves SingleStep for the momentum and step size that put the whole range in the robust region of the
momentum operator (theory/README.md §6-7):

.. math::
    p = \frac{(D+ε)^2 (h_{min}+ε)^2}{2 (C+ε)}, \quad (1 - r)^3 = p\, r, \quad
    μ_t = \max\Big(r^2, \big(\tfrac{\sqrt{κ} - 1}{\sqrt{κ} + 1}\big)^2\Big), \quad
    α_t = \frac{(1 - \sqrt{μ_t})^2}{h_{min} + ε}, \quad κ = \frac{h_{max}+ε}{h_{min}+ε}.

The paper's algorithm and the authors' shipped optimizer (JianGoForIt/YellowFin_Pytorch @ b87aed1,
``tuner_utils/yellowfin.py``) differ in six choices; :func:`yellowfin_tuner` offers both as named
variants (``"paper"``, the default, and ``"official"``) and each choice on its own (theory/README.md
§8):

============  ================================================  ============================================
choice        ``paper``                                         ``official``
============  ================================================  ============================================
update form   heavy ball ``w ← w - α g + μ (w - w_prev)``       framework ``v ← μ v + g``, ``w ← w - α v``
smoothing     applies ``β``-EMAs of ``α_t, μ_t`` (t ≥ 1)        applies ``α_t, μ_t`` as they are
envelope      EMA of the window's min / max                     EMA of their logarithms, then ``exp``
slow start    none                                              ``α_t · min(1, (t+1)/(10 K))``
initial       ``(α_0, μ_0) = (10⁻⁴, 0)`` (paper: ``(1, 0)``)     ``(10⁻⁴, 0)``
clipping      off                                               the three ``adapt_clip`` heuristics
============  ================================================  ============================================

**Initial step α₀** (``lr_init``). The paper starts at α₀ = 1; the default here is the shipped code's
α₀ = 10⁻⁴, in both variants. With smoothing (``paper``) the applied α stays near α₀ for the first
``1/(1 - β)`` = 1000 or so updates, so α₀ must be a stable step of the problem on its own: α₀ h ≲ 0.01
for its largest curvature h. On nq50 (h = 1) α₀ = 0.1 raised the loss 6x in 1 of 3 seeds and α₀ = 1 23x
and 122x in 2 of 3, with one worker; the digits MLP took α₀ = 1 synchronously and met its target 2-3x
sooner than from 10⁻⁴. The default suits curvatures up to about 100; divide α₀ by the curvature beyond.
Under asynchrony the open loop's own α, not α₀, sets the limit: at M = 16 the paper variant diverged on
nq50 from every α₀ in [10⁻⁴, 1] within 3000 updates, and raised the digits MLP's loss 10x or more in 1
of 3 seeds from 10⁻⁴ (all 3 from α₀ = 1, to 22-31x, never reaching the divergence bound). The closed
loop is the remedy the paper proposes; :attr:`asyncsim.engine.History.blew_up` flags such a blow-up.
The ``official`` variant applies α₀ at t = 0 only and ramps the tuned α in over 10 K updates, so α₀
matters little there (3 seeds, 3000 updates each; quoted from runs at ``rng`` 0-14).

The **closed loop** of [YF]_ compensates for the momentum that asynchrony adds [AbM]_: the worker-local
total-momentum estimator of :mod:`asyncsim.measure` (the same code the engine records with) gives ``μ̂_T``;
the applied momentum follows ``μ ← clip(μ + γ (μ* - μ̂_T), μ_low, μ_high)`` from ``μ = μ*``, where the
target ``μ*`` and the step ``α`` are the open-loop tuner's. Its fixed point under M asynchronous workers is
``μ = 1 - M (1 - μ*)`` and its time constant about ``M/γ`` updates.

The shipped code's failure modes are flags here, never silent fixes: a non-finite statistic marks that
configuration ``diverged`` (the engine freezes it), each clipping heuristic records when it fires, and the
closed loop records when its clamp binds. There is no checkpoint restore and no exception handling. Zero
or floating-point-zero gradients leave the statistics at the guard ε (``h_max ≤ 2ε``), where the cubic's
``p`` comes near ε³ = 10⁻¹⁸ and the shipped closed form's guard ``u + ε`` vanishes: in float64 it gives a
root of -9.7 there (μ = 94, α = 5.7·10⁶ after 30 zero gradients, as this module did before; gradients of
10⁻²⁰ gave μ = 1.0025); the shipped optimizer itself, in float32, applies μ = 1.0000017 from its second
step. Both unflagged.
Here the root is accurate for every ``p ≥ 0``, so the tuner returns the SingleStep solution at the floor
(μ = 1 - 2·10⁻⁶, α = 5·10⁻⁷ before the slow start), and the step is flagged ``no_signal``.

The per-step formulas (:func:`single_step`, :func:`stat_protect`, :func:`tune`,
:func:`closed_loop_momentum`) take an array namespace ``xp`` (NumPy by default, ``jax.numpy`` in
:mod:`asyncsim.optax`); :mod:`asyncsim.torch` calls them on NumPy scalars. The three implementations share
them and differ only in how they hold the per-coordinate vectors.

This module is the optimizer and nothing more (it imports only :mod:`asyncsim.optim`,
:mod:`asyncsim.measure` and the argument checks); the experiments that measure it against other
settings are in :mod:`asyncsim.comparisons`. Until the next release the module is also callable, and
``yellowfin`` is the factory's old name: both warn (DeprecationWarning) and call
:func:`yellowfin_tuner`.

References
----------
.. [YF] J. Zhang, I. Mitliagkas, C. Ré, "YellowFin and the Art of Momentum Tuning", MLSys 2019,
   arXiv:1706.03471. Shipped optimizer: github.com/JianGoForIt/YellowFin_Pytorch, commit b87aed1.
.. [AbM] I. Mitliagkas, C. Zhang, S. Hadjis, C. Ré, "Asynchrony begets Momentum, with an Application to
   Deep Learning", arXiv:1605.09774.
"""

from __future__ import annotations

import functools
import sys
import types
import warnings
from typing import Any, NamedTuple

import numpy as np

from asyncsim._validate import check_array, check_choice, check_int, check_real
from asyncsim.measure import (
    MomentumEstimate,
    momentum_estimate,
    momentum_estimator_init,
    momentum_estimator_update,
)
from asyncsim.optim import GradientTransformation, implied_batch, plain_hyperparameter, record_of

__all__ = [
    "EPS",
    "VARIANTS",
    "SingleStep",
    "Statistics",
    "TunerSettings",
    "YellowFinState",
    "closed_loop_momentum",
    "diverged_now",
    "no_signal",
    "open_loop",
    "single_step",
    "stat_protect",
    "statistics_init",
    "tune",
    "tuner_settings",
    "yellowfin_tuner",
]

EPS = 1e-6
"""The tuner's guard ε (the shipped code's ``eps``)."""

VARIANTS: dict[str, dict[str, Any]] = {
    "paper": {
        "update_form": "heavy_ball",
        "smoothing": True,
        "envelope": "linear",
        "slow_start": False,
        "lr_init": 1e-4,  # the paper's 1 blows up under asynchrony (module docstring)
        "momentum_init": 0.0,
        "adapt_clip": False,
    },
    "official": {
        "update_form": "framework",
        "smoothing": False,
        "envelope": "log",
        "slow_start": True,
        "lr_init": 1e-4,
        "momentum_init": 0.0,
        "adapt_clip": True,
    },
}
"""The two named variants: each choice of the table of theory/README.md §8."""

_STAT_PROTECT_FACTOR = 100.0  # clip ‖g‖ to √(100 h_max) before the statistics (official)
_CATASTROPHIC_MOVE = 100.0  # clamp α so that α ‖g‖ < 100 (official)
_CLIP_GUARD = 1e-6  # the clip's denominator guard, ‖g‖ + 1e-6 (torch's clip_grad_norm)
_ASYMPTOTIC_P = 1e6  # above this p, start Newton at 1/(p + 3) (relative error < 3/p²), not Cardano


# ------------------------------------------------------------------------------------------ SingleStep
def _cubic_root(p: Any, xp: Any = np) -> Any:
    """The root ``r ∈ [0, 1]`` of ``(1 - r)³ = p r`` for ``p ≥ 0`` (elementwise; NaN stays NaN).

    Cardano on ``y = r - 1`` (``y³ + p y + p = 0``) with the tuner's guard, as the shipped code:
    ``u³ = (-√(p² + 4p³/27) - p)/2``, ``y = u - p/(3(u + ε))``. That is accurate in ``1 - r`` (all
    that ``α`` depends on) but off by about ε in ``r`` once ``u`` is large (1% at ``p = 10⁴``),
    cancels for large ``p`` and overflows past ``p ~ 1e100``. So above ``p = 10⁶`` the start is
    ``1/(p + 3)`` (a lower bound), and one Newton step on ``(1 - r)³ - p r`` (convex, decreasing)
    brings every start to full precision. The guard ``u + ε`` vanishes near ``p = ε³`` (zero
    gradients, module docstring): within ε/2 of zero the divisor is ``u`` itself. Where the start is
    0 or 1 to float precision (``p = ∞``; ``p ≲ 10⁻⁴⁸`` or ``p = 0``) it is the root, and the Newton
    step (which would jump from 1 to 0) is not taken.
    """
    small = xp.minimum(p, _ASYMPTOTIC_P)
    u = xp.cbrt(-0.5 * (small * xp.sqrt(1.0 + small * (4.0 / 27.0)) + small))
    guarded = u + EPS
    divisor = xp.where(xp.abs(guarded) > 0.5 * EPS, guarded, u)  # u ∈ [-1.5ε, -0.5ε] there
    r = xp.where(p > _ASYMPTOTIC_P, 1.0 / (p + 3.0), u - small / (3.0 * divisor) + 1.0)
    largest, tiny = _float_range(p.dtype)
    finite_p = xp.minimum(p, largest)  # p = ∞ (overflow): no ∞·0 below
    q = 1.0 - r
    slope = xp.maximum(3.0 * q * q + finite_p, tiny)  # 0 only where r = 1 and p = 0: unused
    return xp.where(q * r > 0.0, r + (q * q * q - finite_p * r) / slope, r)  # 0 < r < 1


@functools.cache
def _float_range(dtype: Any) -> tuple[float, float]:
    """The largest finite and the smallest normal number of a float dtype."""
    info = np.finfo(dtype)
    return float(info.max), float(info.tiny)


class SingleStep(NamedTuple):
    """The SingleStep solution, elementwise: ``μ``, ``α``, the cubic's root ``r`` and the
    condition-number bound ``((√κ-1)/(√κ+1))²`` on μ."""

    momentum: Any
    lr: Any
    root: Any
    mu_dr_bound: Any


def single_step(
    h_min: Any, h_max: Any, grad_var: Any, dist_to_opt: Any, *, xp: Any = np
) -> SingleStep:
    r"""YellowFin's SingleStep with the tuner's ε guards (theory/README.md §8, step 5) [YF]_.

    .. math::
        \min_{μ, α}\; μ D^2 + α^2 C \quad\text{s.t.}\quad \sqrt{μ} \ge
        \frac{\sqrt{κ}-1}{\sqrt{κ}+1},\; α = \frac{(1-\sqrt{μ})^2}{h_{min}}

    Defined for all non-negative inputs: at the floor of the tuner's statistics (zero gradients:
    ``h_min = h_max = C = ε``, ``D = 0``) it gives ``μ = 1 - 2.0·10⁻⁶``, ``α = 5.0·10⁻⁷``, and
    :func:`no_signal` flags it.

    Parameters
    ----------
    h_min, h_max : array_like
        Curvature range (units of the loss's Hessian), broadcastable.
    grad_var : array_like
        Gradient variance C (squared gradient units).
    dist_to_opt : array_like
        Distance to the optimum D (parameter units).
    xp : module
        Array namespace (``numpy``, or ``jax.numpy`` for traced arrays).

    Returns
    -------
    SingleStep
        ``(momentum, lr, root, mu_dr_bound)``: ``μ``, ``α``, the cubic's root ``r`` and the
        condition-number bound ``((√κ-1)/(√κ+1))²``.

    Examples
    --------
    theory/README.md §7: ``(h_min, h_max, C, D) = (2, 8, 0.5, 0.25)`` gives ``p = 1/4``, ``r = 1/2``.

    >>> mu, lr, r, bound = single_step(2.0, 8.0, 0.5, 0.25)
    >>> print(f"{float(mu):.6f} {float(lr):.6f} {float(r):.6f}")
    0.249999 0.125000 0.499999
    >>> floor = single_step(1e-6, 1e-6, 1e-6, 0.0)  # zero gradients: no signal, still a solution
    >>> print(f"{float(floor.momentum):.7f} {float(floor.lr):.2e}", no_signal(1e-6))
    0.9999980 5.00e-07 True
    """
    if xp is np:
        h_min, h_max, grad_var, dist_to_opt = (
            np.asarray(v, dtype=np.float64) for v in (h_min, h_max, grad_var, dist_to_opt)
        )
    p = (dist_to_opt + EPS) ** 2 * (h_min + EPS) ** 2 / (2.0 * (grad_var + EPS))
    root = _cubic_root(p, xp)
    sqrt_dr = xp.sqrt(xp.maximum((h_max + EPS) / (h_min + EPS), 1.0 + EPS))
    bound = ((sqrt_dr - 1.0) / (sqrt_dr + 1.0)) ** 2
    mu = xp.maximum(root * root, bound)
    lr = (1.0 - xp.sqrt(mu)) ** 2 / (h_min + EPS)
    return SingleStep(mu, lr, root, bound)


def no_signal(h_max: Any) -> Any:
    """Whether the statistics are at the tuner's floor, elementwise: ``h_max ≤ 2ε``.

    The largest recent ‖g‖² is then no larger than the guard ε that SingleStep adds to it (zero or
    floating-point-zero gradients, or a problem whose gradients are below ‖g‖ ~ 10⁻³), so ``(μ, α)``
    reflect ε rather than the gradients. NaN gives False (that is ``diverged``).
    """
    return h_max <= 2.0 * EPS


# ------------------------------------------------------------------------------------------ one step
class Statistics(NamedTuple):
    """The tuner's running statistics for configurations of shape S (``()`` or ``(B,)``).

    ``window`` (K, *S) holds the last K values of ‖g‖² (all equal to the first at t = 0);
    ``env_min``, ``env_max`` the biased EMAs of min and max W (of their logarithms in the log
    envelope); ``sq_avg`` S̄ of ‖g‖², ``norm_avg`` n̄ of ‖g‖, ``dist_avg`` Q̄ of n̄/(S̄ + ε), all biased;
    ``beta_pow`` β^(t+1) after step t.
    """

    window: Any
    env_min: Any
    env_max: Any
    sq_avg: Any
    norm_avg: Any
    dist_avg: Any
    beta_pow: Any


def statistics_init(window: int, shape: tuple[int, ...] = (), *, xp: Any = np, dtype: Any = None):
    """Empty :class:`Statistics` with a window of K = ``window`` for configurations of ``shape``."""
    dtype = np.float64 if dtype is None else dtype
    zeros = xp.zeros(shape, dtype=dtype)
    return Statistics(
        xp.zeros((window, *shape), dtype=dtype), zeros, zeros, zeros, zeros, zeros, zeros + 1.0
    )


class TunerSettings(NamedTuple):
    """The variant's choices that shape one step (static: they select code, not values)."""

    log_envelope: bool
    smoothing: bool
    slow_start_steps: float  # 10 K, or 0 for none
    adapt_clip: bool


def tuner_settings(hyperparameters: dict[str, Any]) -> TunerSettings:
    """The settings of a resolved option set: ``yellowfin_tuner(...).hyperparameters``."""
    window = hyperparameters["window"]
    return TunerSettings(
        log_envelope=hyperparameters["envelope"] == "log",
        smoothing=bool(hyperparameters["smoothing"]),
        slow_start_steps=10.0 * window if hyperparameters["slow_start"] else 0.0,
        adapt_clip=bool(hyperparameters["adapt_clip"]),
    )


def _select(condition: Any, if_true: Any, if_false: Any, xp: Any) -> Any:
    """``xp.where``, short-cut for a Python bool (the step tests of the NumPy and torch paths)."""
    if isinstance(condition, bool):
        return if_true if condition else if_false
    return xp.where(condition, if_true, if_false)


def stat_protect(s: Any, h_max: Any, step: Any, *, xp: Any = np) -> tuple[Any, Any]:
    """Step 6a, the official clip of what enters the statistics (t > 1): the factor ``min(1,
    (√(100 h_max) + ε)/(‖g‖ + 10⁻⁶))`` on g (1 where it does not fire) and whether it fires.

    ``s`` is ‖g‖², ``h_max`` the previous step's (NaN at t = 0), ``step`` t.
    """
    coef = (xp.sqrt(_STAT_PROTECT_FACTOR * h_max) + EPS) / (xp.sqrt(s) + _CLIP_GUARD)
    fired = (coef < 1.0) & (step > 1)
    return xp.where(fired, coef, 1.0), fired


def tune(
    stats: Statistics,
    s: Any,
    grad_sum_sq: Any,
    step: Any,
    previous: dict[str, Any],
    beta: Any,
    settings: TunerSettings,
    *,
    target: Any = None,
    xp: Any = np,
) -> tuple[Statistics, dict[str, Any], Any]:
    """Steps 2-6 of one tuner step (:func:`yellowfin_tuner`), elementwise over configurations.

    Parameters
    ----------
    stats : Statistics
        Before the step. With NumPy the window is written in place (a state is consumed by the step
        that receives it); with other namespaces a new window is made.
    s : array (S)
        ‖g‖² of this step's gradient (after the stat-protect clip).
    grad_sum_sq : array (S)
        ‖ḡ/(1-β)‖², the biased gradient EMA without its (1 - β) factor, after this step's update
        (callers keep ``ḡ/(1-β) ← β ḡ/(1-β) + g`` per coordinate).
    step : int or integer array
        t, counted from 0.
    previous : dict
        The previous step's ``h_max``, ``lr_t``, ``mu_t``, ``lr_smoothed``, ``mu_smoothed`` (at
        t = 0 the initial pair and NaN).
    beta : float or array (S)
    settings : TunerSettings
    target : array (S) or None
        Fixed μ* (NaN where tuned), or None where none is fixed.
    xp : module
        Array namespace.

    Returns
    -------
    stats : Statistics
    values : dict of array (S)
        ``lr`` and ``mu_star`` (the pair to apply, after the catastrophic-move clamp), ``lr_t``,
        ``mu_t``, ``lr_smoothed``, ``mu_smoothed``, ``h_min``, ``h_max``, ``grad_var``,
        ``dist_to_opt``, ``grad_norm_squared``, ``cubic_root``, ``mu_dr_bound`` and the flags
        ``exploding_grad_clip``, ``catastrophic_lr_clamp``, ``no_signal``.
    apply_scale : array (S)
        The exploding-gradient clip's factor on the applied gradient (1 where it does not fire).
    """
    first = step == 0
    one_minus = 1.0 - beta

    # 2. curvature range from the window of ‖g‖²
    window = _window_insert(stats.window, s, step, xp)
    wmin, wmax = xp.min(window, axis=0), xp.max(window, axis=0)
    if settings.log_envelope:
        wmin, wmax = xp.log(wmin + EPS), xp.log(wmax + EPS)
    beta_pow = stats.beta_pow * beta
    debias = 1.0 - beta_pow
    env_min = beta * stats.env_min + one_minus * wmin
    env_max = beta * stats.env_max + one_minus * wmax
    h_min, h_max = env_min / debias, env_max / debias
    if settings.log_envelope:
        h_min, h_max = xp.exp(h_min), xp.exp(h_max)

    # 3. gradient variance; 4. distance to the optimum
    sq_avg = beta * stats.sq_avg + one_minus * s
    gbar_sq = grad_sum_sq * (one_minus / debias) ** 2
    grad_var = xp.maximum(sq_avg / debias - gbar_sq, EPS)
    norm_avg = beta * stats.norm_avg + one_minus * xp.sqrt(s)
    dist_avg = beta * stats.dist_avg + one_minus * norm_avg / (sq_avg + EPS)
    dist = dist_avg / debias

    # 5. SingleStep (t ≥ 1; t = 0 keeps the initial pair), fixed targets, slow start, smoothing
    mu_t, lr_t, root, bound = single_step(h_min, h_max, grad_var, dist, xp=xp)
    if target is not None:
        fixed = ~xp.isnan(target)
        mu_t = xp.where(fixed, target, mu_t)
        lr_t = xp.where(fixed, (1.0 - xp.sqrt(mu_t)) ** 2 / (h_min + EPS), lr_t)
    if settings.slow_start_steps:
        lr_t = lr_t * xp.minimum(1.0, (step + 1) / settings.slow_start_steps)
    lr_s = beta * previous["lr_smoothed"] + one_minus * lr_t
    mu_s = beta * previous["mu_smoothed"] + one_minus * mu_t
    if first is not False:  # t = 0 keeps the initial pair (first is an array when traced)
        mu_t = _select(first, previous["mu_t"], mu_t, xp)
        lr_t = _select(first, previous["lr_t"], lr_t, xp)
        nan = xp.full_like(root, xp.nan)
        root, bound = _select(first, nan, root, xp), _select(first, nan, bound, xp)
        lr_s = _select(first, previous["lr_smoothed"], lr_s, xp)
        mu_s = _select(first, previous["mu_smoothed"], mu_s, xp)
    lr, mu_star = (lr_s, mu_s) if settings.smoothing else (lr_t, mu_t)

    # 6b. exploding-gradient clip (applied gradient only), 6c. catastrophic-move clamp
    no = xp.zeros_like(s, dtype=bool)
    explode = catastrophic = no
    apply_scale = xp.ones_like(s)
    if settings.adapt_clip:
        h_prev = previous["h_max"]
        explode = (s >= h_prev) & (step >= 1)
        coef = (xp.sqrt(h_prev) + EPS) / (xp.sqrt(s) + _CLIP_GUARD)
        apply_scale = xp.where(explode, xp.minimum(coef, 1.0), 1.0)
        catastrophic = lr * xp.sqrt(s) >= _CATASTROPHIC_MOVE
        lr = xp.where(catastrophic, _CATASTROPHIC_MOVE / xp.sqrt(s + EPS), lr)

    new_stats = Statistics(window, env_min, env_max, sq_avg, norm_avg, dist_avg, beta_pow)
    values = {
        "lr": lr,
        "mu_star": mu_star,
        "lr_t": lr_t,
        "mu_t": mu_t,
        "lr_smoothed": lr_s,
        "mu_smoothed": mu_s,
        "h_min": h_min,
        "h_max": h_max,
        "grad_var": grad_var,
        "dist_to_opt": dist,
        "grad_norm_squared": s,
        "cubic_root": root,
        "mu_dr_bound": bound,
        "exploding_grad_clip": explode,
        "catastrophic_lr_clamp": catastrophic,
        "no_signal": no_signal(h_max),
    }
    return new_stats, values, apply_scale


def _window_insert(window: Any, s: Any, step: Any, xp: Any) -> Any:
    """The window of ‖g‖² with this step's value in slot t mod K (every slot at t = 0)."""
    if xp is np:
        if step == 0:
            window[:] = s
        else:
            window[step % window.shape[0]] = s
        return window
    k = window.shape[0]
    slot = (xp.arange(k) == step % k) | (step == 0)
    return xp.where(slot.reshape((k,) + (1,) * (window.ndim - 1)), s, window)


def closed_loop_momentum(
    momentum: Any, target: Any, estimate: Any, gain: Any, low: float, high: float, *, xp: Any = np
) -> tuple[Any, Any]:
    """Step 7, the closed loop: ``μ ← clip(μ + γ (μ* - μ̂_T), μ_low, μ_high)``, held where μ̂_T is NaN.

    Returns the new μ and whether the clamp bound (elementwise).
    """
    raw = momentum + gain * (target - estimate)
    raw = xp.where(xp.isnan(estimate), momentum, raw)
    return xp.clip(raw, low, high), (raw < low) | (raw > high)


def diverged_now(values: dict[str, Any], *, xp: Any = np) -> Any:
    """Whether a statistic or the applied pair is not finite (elementwise): the ``diverged`` test."""
    return ~xp.isfinite(
        values["h_min"]
        + values["h_max"]
        + values["grad_var"]
        + values["dist_to_opt"]
        + values["lr"]
        + values["momentum"]
    )


# ------------------------------------------------------------------------------------------ state
class _Hyper(NamedTuple):
    """Per-configuration constants, fixed at ``init`` (all (B,) unless stated)."""

    beta: np.ndarray
    beta_col: Any  # float when every row shares β, else (B, 1)
    lr_init: np.ndarray
    target: np.ndarray  # fixed target μ*, NaN where tuned
    fixed: np.ndarray | None  # bool, None when no row has a fixed target
    closed: np.ndarray | None  # bool, None when no row runs the closed loop
    gain: np.ndarray


class YellowFinState(NamedTuple):
    """The tuner's state for B configurations: statistics (B,), moving averages, window, velocity.

    ``update`` writes into ``window``, ``grad_sum`` and ``velocity`` in place (and the estimator's
    pending terms, as :func:`asyncsim.measure.momentum_estimator_update` does): a state is consumed by
    the step that receives it, as in the engine. :meth:`record` gives, per configuration, the applied
    ``lr`` and ``momentum``, the tuner's per-step pair ``lr_t``, ``mu_t`` (unsmoothed, after the slow
    start; the fixed target where given), the paper-style smoothed pair ``lr_smoothed``,
    ``mu_smoothed`` (computed in every variant), the target ``mu_star``, the closed loop's estimate
    ``mu_hat`` (NaN in open-loop rows: the engine records every row's ``total_momentum`` with the
    same estimator, equal to ``mu_hat`` for the same β_m), the statistics ``h_min``, ``h_max``,
    ``grad_var``, ``dist_to_opt``, ``grad_norm_squared`` (after the stat-protect clip), ``cubic_root``,
    ``mu_dr_bound``, and the flags
    ``stat_protect_clip``, ``exploding_grad_clip``, ``catastrophic_lr_clamp``, ``momentum_clamped``,
    ``no_signal`` (the statistics at the floor ε, :func:`no_signal`), ``diverged`` (sticky).
    """

    step: int
    window: np.ndarray  # (K, B) the last K values of ‖g‖² (all equal to the first at t = 0)
    env_min: np.ndarray  # (B,) biased EMA of min W (log min W in the log envelope)
    env_max: np.ndarray
    grad_sum: np.ndarray  # (B, d) ḡ/(1-β): the biased EMA of the gradient without the (1-β)
    sq_avg: np.ndarray  # (B,) biased EMA S̄ of ‖g‖²
    norm_avg: np.ndarray  # (B,) biased EMA n̄ of ‖g‖
    dist_avg: np.ndarray  # (B,) biased EMA Q̄ of n̄ / (S̄ + ε)
    beta_pow: np.ndarray  # (B,) β^(t+1) after step t
    velocity: np.ndarray  # (B, d) heavy ball: last update w_t - w_{t-1}; framework: buffer v
    scratch: np.ndarray  # (B, d) work space of the update
    has_buffer: np.ndarray  # (B,) bool: the framework buffer exists (created where μ ≠ 0)
    estimator: MomentumEstimate | None
    values: dict[str, np.ndarray]  # the last step's recorded (B,) values
    diverged: np.ndarray  # (B,) bool, sticky
    hyper: _Hyper

    def record(self) -> dict[str, np.ndarray]:
        out = dict(self.values)
        out["diverged"] = self.diverged
        return out


_RECORDED_NAN = (
    "h_min",
    "h_max",
    "grad_var",
    "dist_to_opt",
    "grad_norm_squared",
    "cubic_root",
    "mu_dr_bound",
    "mu_hat",
)
_FLAGS = (
    "stat_protect_clip",
    "exploding_grad_clip",
    "catastrophic_lr_clamp",
    "momentum_clamped",
    "no_signal",
)


# ------------------------------------------------------------------------------------------ transform
def yellowfin_tuner(
    variant: str = "paper",
    *,
    beta: Any = 0.999,
    window: int = 20,
    update_form: str | None = None,
    smoothing: bool | None = None,
    envelope: str | None = None,
    slow_start: bool | None = None,
    lr_init: Any = None,
    momentum_init: Any = None,
    adapt_clip: bool | None = None,
    closed_loop: Any = False,
    target_momentum: Any = None,
    gain: Any = 0.01,
    estimator_beta: float = 0.99,
    clamp: tuple[float, float] = (-0.9, 0.999),
) -> GradientTransformation:
    r"""YellowFin [YF]_ for B configurations: B independent tuners, every statistic per row, float64.

    One step with gradient ``g`` (B, d) of the flattened parameters, per row (theory/README.md §8), with
    ``c_t = 1 - β^{t+1}``:

    1. clipping (``adapt_clip``, t > 1): ``g ← g · min(1, (√(100 h_max) + ε)/(‖g‖ + 10⁻⁶))``;
    2. ``s = ‖g‖²``; window ``W`` = last ``min(K, t+1)`` values of ``s``; envelope ``linear``:
       ``a ← β a + (1-β) min W``, ``h_min = a/c_t`` (likewise ``h_max``); ``log``:
       ``a ← β a + (1-β) log(min W + ε)``, ``h_min = exp(a/c_t)``;
    3. ``ḡ ← β ḡ + (1-β) g``, ``S̄ ← β S̄ + (1-β) s``, ``C = max(S̄/c_t - ‖ḡ‖²/c_t², ε)``;
    4. ``n̄ ← β n̄ + (1-β) √s``, ``Q̄ ← β Q̄ + (1-β) n̄/(S̄ + ε)``, ``D = Q̄/c_t``;
    5. t ≥ 1: ``(μ_t, α_t)`` = :func:`single_step` (or ``μ_t`` = the fixed target and
       ``α_t = (1-√μ_t)²/(h_min+ε)``), ``α_t ← α_t min(1, (t+1)/(10K))`` with the slow start;
       t = 0 keeps ``(α_0, μ_0)``. Smoothed pair (t ≥ 1, not debiased): ``ᾱ ← β ᾱ + (1-β) α_t``,
       ``μ̄ ← β μ̄ + (1-β) μ_t`` from ``(α_0, μ_0)``; the applied ``(α, μ*)`` is the smoothed or the
       per-step pair;
    6. clipping (``adapt_clip``): t ≥ 1 and ``s ≥ h_max`` of the previous step:
       ``g ← g · min(1, (√h_max + ε)/(‖g‖ + 10⁻⁶))`` for the update only; ``α √s ≥ 100``:
       ``α ← 100/√(s + ε)``;
    7. closed loop: ``μ ← clip(μ + γ (μ* - μ̂_T), μ_low, μ_high)`` (μ starts at ``μ*`` of step 0; μ̂_T
       of the writers' reads, :func:`asyncsim.measure.momentum_estimate`; held while NaN); open
       loop: ``μ = μ*``;
    8. update: heavy ball ``w ← w - α g + μ (w - w_prev)``; framework ``v ← μ v + g``, ``w ← w - α v``
       (where ``μ = 0`` no buffer is touched and ``w ← w - α g``; a new buffer starts at ``g``).

    Parameters
    ----------
    variant : {"paper", "official"}
        Defaults of the six choices below (None takes the variant's value).
    beta : float or array (B,)
        EMA factor β in [0, 1) of every statistic and of the smoothing.
    window : int
        Curvature window width K ≥ 1.
    update_form : {"heavy_ball", "framework"} or None
    smoothing : bool or None
        Apply the smoothed pair instead of the per-step one.
    envelope : {"linear", "log"} or None
    slow_start : bool or None
    lr_init : float or array (B,) or None
        α_0 > 0 (step size units: parameter per gradient); 10⁻⁴ in both variants. Keep α_0 h ≲ 0.01
        for the largest curvature h (module docstring).
    momentum_init : float or array (B,) or None
        μ_0 in [0, 1).
    adapt_clip : bool or None
        The shipped code's three clipping heuristics.
    closed_loop : bool or array (B,) of bool
        Run the momentum feedback in the rows where True. Heavy-ball form only (``update_form``
        then defaults to it in either variant); the engine must give writer ids (a cluster trace).
    target_momentum : None, float or array (B,)
        Fix μ* in [0, 1) instead of tuning it (NaN entries: tuned); μ_0 is then the target.
    gain : float or array (B,)
        Feedback gain γ ≥ 0 (the paper uses 0.01).
    estimator_beta : float
        EMA factor β_m in [0, 1) of the total-momentum estimator.
    clamp : (float, float)
        ``(μ_low, μ_high)`` with -1 < μ_low < μ_high < 1.

    Returns
    -------
    GradientTransformation
        State :class:`YellowFinState`; its ``record()`` holds the tuner's values (see there).

    Examples
    --------
    >>> from asyncsim.engine import run
    >>> from asyncsim.problems import make_problem
    >>> history = run(make_problem("nq50"), yellowfin_tuner(), None, 400, rng=0, record_every=200)
    >>> bool((history["h_min"][-1] <= history["h_max"][-1]).all()), bool(history.diverged.any())
    (True, False)
    """
    check_choice("variant", variant, tuple(VARIANTS))
    chosen = {
        "update_form": update_form,
        "smoothing": smoothing,
        "envelope": envelope,
        "slow_start": slow_start,
        "lr_init": lr_init,
        "momentum_init": momentum_init,
        "adapt_clip": adapt_clip,
    }
    opts = {k: VARIANTS[variant][k] if v is None else v for k, v in chosen.items()}
    closed_arr = np.asarray(closed_loop)
    if closed_arr.dtype != np.bool_ or closed_arr.ndim > 1:
        raise ValueError(f"closed_loop must be a bool or a 1-D array of bools, got {closed_loop!r}")
    any_closed = bool(closed_arr.any())
    if any_closed and update_form is None:
        opts["update_form"] = "heavy_ball"  # the closed loop is defined in heavy-ball form
    form = check_choice("update_form", opts["update_form"], ("heavy_ball", "framework"))
    if any_closed and form != "heavy_ball":
        raise ValueError(f"closed_loop needs update_form 'heavy_ball', got {form!r}")
    check_choice("envelope", opts["envelope"], ("linear", "log"))
    for name in ("smoothing", "slow_start", "adapt_clip"):
        if not isinstance(opts[name], bool | np.bool_):
            raise ValueError(f"{name} must be True or False, got {opts[name]!r}")
    window = check_int("window", window, low=1)
    check_array("beta", beta, low=0.0, high=1.0, high_open=True)
    check_array("lr_init", opts["lr_init"], low=0.0, low_open=True)
    check_array("momentum_init", opts["momentum_init"], low=0.0, high=1.0, high_open=True)
    check_array("gain", gain, low=0.0)
    target_arr = np.asarray(
        np.nan if target_momentum is None else target_momentum, dtype=np.float64
    )
    if target_arr.ndim > 1 or ((target_arr < 0.0) | (target_arr >= 1.0)).any():
        raise ValueError(
            f"target_momentum must be None, or a scalar or 1-D array in [0, 1) (NaN: tuned), "
            f"got {target_momentum!r}"
        )
    check_real("estimator_beta", estimator_beta, low=0.0, high=1.0, high_open=True)
    if not (isinstance(clamp, tuple | list) and len(clamp) == 2):
        raise ValueError(f"clamp must be a pair (low, high), got {clamp!r}")
    low = check_real("clamp[0]", clamp[0], low=-1.0, high=1.0, low_open=True, high_open=True)
    high = check_real("clamp[1]", clamp[1], low=-1.0, high=1.0, low_open=True, high_open=True)
    if not low < high:
        raise ValueError(f"clamp must satisfy -1 < low < high < 1, got ({low}, {high})")
    batch = implied_batch(
        beta, opts["lr_init"], opts["momentum_init"], gain, target_arr, closed_arr.astype(float)
    )
    hyperparameters = {
        "variant": variant,
        **{k: v if isinstance(v, bool | str) else plain_hyperparameter(v) for k, v in opts.items()},
        "beta": plain_hyperparameter(beta),
        "window": window,
        "closed_loop": tuple(bool(c) for c in closed_arr.reshape(-1))
        if closed_arr.ndim
        else bool(closed_arr),
        "target_momentum": plain_hyperparameter(target_arr),
        "gain": plain_hyperparameter(gain),
        "estimator_beta": float(estimator_beta),
        "clamp": (low, high),
    }
    settings = tuner_settings(hyperparameters)

    def column(name: str, value: Any, b: int) -> np.ndarray:
        arr = np.asarray(value)
        if arr.ndim == 1 and arr.shape[0] not in (1, b):
            raise ValueError(f"{name} must be a scalar or have shape ({b},), got shape {arr.shape}")
        return np.broadcast_to(arr.reshape(-1), (b,)).copy()

    def init(params: np.ndarray) -> YellowFinState:
        b, d = params.shape
        beta_b = column("beta", np.asarray(beta, dtype=np.float64), b)
        target_b = column("target_momentum", target_arr, b)
        fixed = ~np.isnan(target_b)
        closed = column("closed_loop", closed_arr, b)
        hyper = _Hyper(
            beta=beta_b,
            beta_col=float(beta_b[0]) if (beta_b == beta_b[0]).all() else beta_b[:, None],
            lr_init=column("lr_init", np.asarray(opts["lr_init"], dtype=np.float64), b),
            target=target_b,
            fixed=fixed if fixed.any() else None,
            closed=closed if closed.any() else None,
            gain=column("gain", np.asarray(gain, dtype=np.float64), b),
        )
        mu0 = column("momentum_init", np.asarray(opts["momentum_init"], dtype=np.float64), b)
        mu0 = np.where(fixed, target_b, mu0)
        values = {name: np.full(b, np.nan) for name in _RECORDED_NAN}
        values |= {name: np.zeros(b, dtype=bool) for name in _FLAGS}
        values |= {
            "lr": hyper.lr_init.copy(),
            "momentum": mu0.copy(),
            "lr_t": hyper.lr_init.copy(),
            "mu_t": mu0.copy(),
            "lr_smoothed": hyper.lr_init.copy(),
            "mu_smoothed": mu0.copy(),
            "mu_star": mu0.copy(),
        }
        estimator = None
        if hyper.closed is not None:
            estimator = momentum_estimator_init(params, 1, estimator_beta)
        return YellowFinState(
            step=0,
            **statistics_init(window, (b,))._asdict(),
            grad_sum=np.zeros((b, d)),
            velocity=np.zeros((b, d)),
            scratch=np.empty((b, d)),
            has_buffer=np.zeros(b, dtype=bool),
            estimator=estimator,
            values=values,
            diverged=np.zeros(b, dtype=bool),
            hyper=hyper,
        )

    def update(grads, state, params, context=None):
        t = state.step
        hp = state.hyper
        prev = state.values
        g = np.asarray(grads, dtype=np.float64)
        s = _row_dot(g, g)
        false = np.zeros(s.shape[0], dtype=bool)

        # 1. stat-protect clip (official, t > 1): bounds what enters the statistics
        stat_clip = false
        if settings.adapt_clip:
            factor, stat_clip = stat_protect(s, prev["h_max"], t)
            if stat_clip.any():
                g = g * factor[:, None]
                s = s * factor * factor

        # 2.-6. the statistics and (α, μ*) from ‖g‖² and ‖ḡ‖²
        gsum = state.grad_sum  # ḡ/(1-β) ← β ḡ/(1-β) + g: one scaling pass fewer than ḡ itself
        gsum *= hp.beta_col
        gsum += g
        stats, values, apply_scale = tune(
            Statistics(*(getattr(state, name) for name in Statistics._fields)),
            s,
            _row_dot(gsum, gsum),
            t,
            prev,
            hp.beta,
            settings,
            target=None if hp.fixed is None else hp.target,
        )
        g_apply = g * apply_scale[:, None] if values["exploding_grad_clip"].any() else g
        lr, mu_star = values.pop("lr"), values.pop("mu_star")

        # 7. momentum: open loop μ*, or the closed loop's feedback
        mu, mu_hat, clamped, estimator = mu_star, prev["mu_hat"], false, state.estimator
        if hp.closed is not None:
            estimator = _closed_loop_estimator(estimator, context)
            estimator = momentum_estimator_update(estimator, context, g_apply, lr)
            mu_hat = np.where(hp.closed, momentum_estimate(estimator), np.nan)  # open-loop rows:
            mu_loop = prev["momentum"] if t > 0 else mu_star  # the engine records it
            mu, clamped = closed_loop_momentum(mu_loop, mu_star, mu_hat, hp.gain, low, high)
            mu, clamped = np.where(hp.closed, mu, mu_star), clamped & hp.closed

        # 8. the step
        velocity = state.velocity
        has_buffer = state.has_buffer
        if form == "heavy_ball":
            _scale_add(velocity, mu, g_apply, -lr, state.scratch)
            updates = velocity
        else:
            moving = mu != 0.0
            if moving.all() and has_buffer.all():
                _scale_add(velocity, mu, g_apply, 1.0, state.scratch)
                updates = velocity * -lr[:, None]
            else:
                stepped = np.where(has_buffer[:, None], mu[:, None] * velocity + g_apply, g_apply)
                velocity[:] = np.where(moving[:, None], stepped, velocity)
                has_buffer = has_buffer | moving
                updates = np.where(moving[:, None], velocity, g_apply) * -lr[:, None]

        values = {
            "lr": lr,
            "momentum": mu,
            **{k: values[k] for k in ("lr_t", "mu_t", "lr_smoothed", "mu_smoothed")},
            "mu_star": mu_star,
            "mu_hat": mu_hat,
            **{k: values[k] for k in _RECORDED_NAN if k != "mu_hat"},
            "stat_protect_clip": stat_clip,
            "exploding_grad_clip": values["exploding_grad_clip"],
            "catastrophic_lr_clamp": values["catastrophic_lr_clamp"],
            "momentum_clamped": clamped,
            "no_signal": values["no_signal"],
        }
        new_state = YellowFinState(
            step=t + 1,
            **stats._asdict(),
            grad_sum=gsum,
            velocity=velocity,
            scratch=state.scratch,
            has_buffer=has_buffer,
            estimator=estimator,
            values=values,
            diverged=state.diverged | diverged_now(values),
            hyper=hp,
        )
        return updates, new_state

    needs = frozenset({"writers"}) if any_closed else frozenset()
    return GradientTransformation(init, update, batch, "yellowfin_tuner", hyperparameters, needs)


def _scale_add(y: np.ndarray, b: Any, x: np.ndarray, a: Any, scratch: np.ndarray) -> None:
    """``y ← b y + a x`` in place for (B, d) arrays, ``a`` and ``b`` floats or (B,) arrays, through
    ``scratch`` (overwritten): no temporaries."""
    y *= b[:, None] if np.ndim(b) == 1 else b
    np.multiply(x, a[:, None] if np.ndim(a) == 1 else a, out=scratch)
    y += scratch


def _row_dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise inner products of two (B, d) arrays, (B,)."""
    if a.shape[0] == 1:
        return np.array([a[0] @ b[0]])
    return np.matmul(a[:, None, :], b[:, :, None])[:, 0, 0]


def _closed_loop_estimator(est: MomentumEstimate, context: Any) -> MomentumEstimate:
    """The estimator, widened to the writers seen so far; the closed loop needs writer ids."""
    if context is None:
        raise ValueError(
            "closed_loop needs the engine's step context (a trace, not a StalenessLaw)"
        )
    writer = context.writer
    if (writer < 0).any():
        raise ValueError(
            "closed_loop needs a trace with writer ids (e.g. from asyncsim.cluster.simulate); "
            "this trace has unknown writers (-1)"
        )
    n = int(writer.max()) + 1
    have = est.pending_valid.shape[0]
    if n <= have:
        return est
    grow = n - have
    b, d = est.num.shape
    return est._replace(
        pending_num=np.concatenate([est.pending_num, np.zeros((grow, b, d))]),
        pending_den=np.concatenate([est.pending_den, np.zeros((grow, b, d))]),
        pending_valid=np.concatenate([est.pending_valid, np.zeros((grow, b), dtype=bool)]),
    )


# ------------------------------------------------------------------------------------------ open loop
def open_loop(
    transform: GradientTransformation, params: Any, grads: Any
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Drive a transformation on given parameters and gradients, without the engine.

    Step t feeds ``grads[t]`` at ``params[t]`` (no staleness, no context), as when checking a tuner
    against recorded traces.

    Parameters
    ----------
    transform : GradientTransformation
    params, grads : array (T, d) or (T, B, d)
        The parameters each gradient was computed at, and the gradients.

    Returns
    -------
    records : dict of ndarray (T, B)
        The state's ``record()`` after each step.
    next_params : ndarray (T, B, d)
        ``params[t] + updates[t]``: the parameters the step produced.

    Examples
    --------
    A constant gradient of norm² 8 (so h_min = h_max = 8, C = ε, μ = 0): after α_0 = 1e-4 the
    official variant's step is 1/8 scaled by the slow start (t + 1)/200.

    >>> w = np.ones((3, 2))
    >>> records, _ = open_loop(yellowfin_tuner("official"), w, 2.0 * w)
    >>> records["lr"][:, 0]
    array([0.0001  , 0.00125 , 0.001875])
    """
    params = np.asarray(params, dtype=np.float64)
    grads = np.asarray(grads, dtype=np.float64)
    if params.ndim == 2:
        params, grads = params[:, None, :], grads[:, None, :]
    if params.ndim != 3 or grads.shape != params.shape:
        raise ValueError(
            f"params and grads must share a shape (T, d) or (T, B, d), got {params.shape} and "
            f"{grads.shape}"
        )
    state = transform.init(params[0])
    records: dict[str, list] = {}
    next_params = np.empty_like(params)
    with np.errstate(all="ignore"):  # failures show as the state's diverged flag
        for t in range(params.shape[0]):
            updates, state = transform.update(grads[t], state, params[t], None)
            next_params[t] = params[t] + updates
            for name, v in record_of(state).items():
                records.setdefault(name, []).append(np.array(v, dtype=np.float64))
    return {name: np.array(v) for name, v in records.items()}, next_params


# ------------------------------------------------------------------------------------------ deprecated
_RENAMED = (
    "{} is deprecated and will be removed in the next release: the optimizer factory is now "
    "asyncsim.yellowfin_tuner (asyncsim.yellowfin is the module)"
)


def yellowfin(*args: Any, **kwargs: Any) -> GradientTransformation:
    """Deprecated old name of :func:`yellowfin_tuner` (warns; removed in the next release)."""
    warnings.warn(_RENAMED.format("asyncsim.yellowfin.yellowfin"), DeprecationWarning, stacklevel=2)
    return yellowfin_tuner(*args, **kwargs)


class _CallableModule(types.ModuleType):
    """This module, callable for one release: ``asyncsim.yellowfin(...)`` was the factory's name."""

    def __call__(self, *args: Any, **kwargs: Any) -> GradientTransformation:
        warnings.warn(_RENAMED.format("asyncsim.yellowfin(...)"), DeprecationWarning, stacklevel=2)
        return yellowfin_tuner(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
