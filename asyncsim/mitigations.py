r"""Staleness mitigations proposed since 2016, as batched transformations on the engine's step context.

Each factory returns a :class:`~asyncsim.optim.GradientTransformation` over parameters ``(B, d)``
whose hyperparameters may be arrays of shape ``(B,)`` (a batch of B runs equals the B single runs).
They read what the engine's step context gives (:class:`~asyncsim.optim.StepContext`): the staleness
``τ = context.staleness``, the parameters the worker read ``x_read = context.read_params``, its
writer, and the current parameters ``x`` (the ``params`` argument). So they declare ``"reads"`` in
``needs`` and :func:`asyncsim.engine.run` refuses them in the expected-dynamics mode.

=====================  =================================================================  ==============
factory                update on a gradient g read at x_read, τ published versions ago    with τ ≡ 0
=====================  =================================================================  ==============
:func:`staleness_aware`  ``x ← x - η₀ g / max(τ, 1)``                                     SGD, η₀
:func:`dc_asgd`        ``x ← x - η (g + λ g ⊙ g ⊙ (x - x_read))``, λ constant or adaptive  SGD, η
:func:`gap_aware`      ``g̃ = g ⊘ (1 + |x - x_read| ⊘ C)``, heavy ball on g̃                heavy ball
:func:`delay_adaptive`  ``η_t = η`` for ``τ ≤ τ_C``, ``η τ_C / τ`` beyond                 SGD, η
:func:`ringmaster`     ``x ← x - η g`` if ``τ < R``, else the gradient is discarded        SGD, η
:func:`fedbuff`        every K arrivals ``x ← x - η (1/K) Σ_k g_k / √(1 + τ_k)``           SGD, η (K = 1)
:func:`fedasync`       ``x ← (1 - α_t) x + α_t (x_read - η g)``, ``α_t = α s(τ)``          SGD, α η
:func:`dana`           per-worker heavy ball; workers read ``x + γ Σ_j u_j``               Nesterov, η, γ
=====================  =================================================================  ==============

Arrivals and publication: :func:`ringmaster` and :func:`fedbuff` may hold an arrival back. Their
states say which arrivals published (``published``, see :func:`asyncsim.optim.published_of`), the
engine keeps the count of published versions, and τ counts published versions (as in both papers: a
discarded or buffered gradient does not age the others). The engine's steps still count arrivals,
so updates to target count gradients computed. :func:`dana` sends a look-ahead point through the
engine's ``read_point`` hook.

The baselines, plain asynchronous SGD, heavy ball (negative momentum allowed), Adam and YellowFin
(open and closed loop), are :mod:`asyncsim.optim` and :mod:`asyncsim.yellowfin` as they are.
:data:`METHODS` names every method of the bench with a Sweep factory ``(lr, momentum, **options)``
and the hyperparameter values it is tried at (the paper's default first).

Four arrivals with staleness 0, 1, 2, 1 on ``f(w) = ½ (w₁² + ½ w₂²)`` from (1, -2): the stale steps
are shortened by τ, or discarded from τ = 2 on:

>>> from asyncsim.engine import run
>>> from asyncsim.problems import NoisyQuadratic
>>> from asyncsim.trace import Trace
>>> problem, trace = NoisyQuadratic([1.0, 0.5], w0=[1.0, -2.0]), Trace.from_staleness([0, 1, 2, 1])
>>> run(problem, staleness_aware(0.5), trace, 4).final_params
array([[-0.25, -0.5 ]])
>>> run(problem, ringmaster(0.5, threshold=2), trace, 4).final_params
array([[ 0.  , -0.75]])

References
----------
.. [SA] W. Zhang, S. Gupta, X. Lian, J. Liu, "Staleness-aware Async-SGD for distributed deep
   learning", IJCAI 2016.
.. [DC] S. Zheng, Q. Meng, T. Wang, W. Chen, N. Yu, Z.-M. Ma, T.-Y. Liu, "Asynchronous stochastic
   gradient descent with delay compensation", ICML 2017.
.. [GA] S. Barkai, I. Hakimi, A. Schuster, "Gap-aware mitigation of gradient staleness", ICLR 2020.
.. [KSJ] A. Koloskova, S. U. Stich, M. Jaggi, "Sharper convergence guarantees for asynchronous SGD
   for distributed and federated learning", NeurIPS 2022.
.. [MBEW] K. Mishchenko, F. Bach, M. Even, B. Woodworth, "Asynchronous SGD beats minibatch SGD under
   arbitrary delays", NeurIPS 2022.
.. [RM] A. Maranjyan, A. Tyurin, P. Richtárik, "Ringmaster ASGD: the first asynchronous SGD with
   optimal time complexity", ICML 2025.
.. [FB] J. Nguyen, K. Malik, H. Zhan, A. Yousefpour, M. Rabbat, M. Malek, D. Huba, "Federated
   learning with buffered asynchronous aggregation", AISTATS 2022.
.. [FA] C. Xie, S. Koyejo, I. Gupta, "Asynchronous federated optimization", arXiv:1903.03934 (2019).
.. [DANA] I. Hakimi, S. Barkai, M. Gabel, A. Schuster, "Taming momentum in a distributed
   asynchronous environment", arXiv:1907.11612 (2019).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from asyncsim._validate import check_array, check_real
from asyncsim.optim import (
    MOMENTUM,
    STEP_SIZE,
    GradientTransformation,
    adam,
    heavy_ball,
    hyperparameter,
    implied_batch,
    plain_hyperparameter,
    sgd,
)
from asyncsim.yellowfin import yellowfin_tuner

__all__ = [
    "METHODS",
    "STALENESS_FUNCTIONS",
    "Method",
    "dana",
    "dc_asgd",
    "delay_adaptive",
    "fedasync",
    "fedbuff",
    "gap_aware",
    "ringmaster",
    "staleness_aware",
]

READS = frozenset({"reads"})
"""What every mitigation needs of the engine: the realized reads (τ and the parameters read)."""

POSITIVE: dict[str, Any] = {"low": 0.0, "low_open": True}
UNIT: dict[str, Any] = {"low": 0.0, "high": 1.0, "low_open": True}  # in (0, 1]
DECAY: dict[str, Any] = {"low": 0.0, "high": 1.0, "high_open": True}  # in [0, 1)
AT_LEAST_ONE: dict[str, Any] = {"low": 1.0}


def _checked(name: str, value: Any, bounds: dict[str, Any]) -> Any:
    """Validate a scalar or (B,) hyperparameter now (the factory's call), so that bad values fail
    before any run; returns it unchanged."""
    arr = check_array(name, value, **bounds)
    if arr.ndim > 1:
        raise ValueError(
            f"{name} must be a scalar or a 1-D array of shape (B,), got shape {arr.shape}"
        )
    return value


def _integral(name: str, value: Any, low: int) -> Any:
    """A scalar or (B,) hyperparameter of whole numbers >= ``low``."""
    arr = check_array(name, _checked(name, value, {"low": float(low)}))
    if (arr != np.round(arr)).any():
        bad = arr.reshape(-1)[np.flatnonzero(arr.reshape(-1) != np.round(arr.reshape(-1)))[0]]
        raise ValueError(f"{name} must be a whole number >= {low}, got {bad}")
    return value


def _transform(
    name: str,
    init: Callable,
    update: Callable,
    hyperparameters: dict[str, Any],
    *,
    needs: frozenset[str] = READS,
    read_point: Callable | None = None,
) -> GradientTransformation:
    """A mitigation's transformation: its batch from the array hyperparameters, and the record of
    its hyperparameters as plain values (strings kept as they are)."""
    numeric = [v for v in hyperparameters.values() if not isinstance(v, str | bool)]
    record = {
        key: value if isinstance(value, str | bool) else plain_hyperparameter(value)
        for key, value in hyperparameters.items()
    }
    batch = implied_batch(*(np.asarray(v, dtype=np.float64) for v in numeric))
    return GradientTransformation(init, update, batch, name, record, needs, read_point)


# ------------------------------------------------------------------------------------------ step sizes
class StepState(NamedTuple):
    """The base step size η (B, 1) and a rule's own constant (B, 1) (τ_C or R; unused otherwise)."""

    lr: np.ndarray
    constant: np.ndarray

    def record(self) -> dict[str, np.ndarray]:
        return {"lr": self.lr[:, 0]}


def _step_rule(
    name: str, lr: Any, constant_name: str | None, constant: Any, rule: Callable
) -> GradientTransformation:
    """``x ← x - η_t g`` with ``η_t = η · rule(τ, constant)`` (B, 1)."""
    _checked("lr", lr, STEP_SIZE)

    def init(params: np.ndarray) -> StepState:
        b = params.shape[0]
        value = 1.0 if constant_name is None else constant
        return StepState(
            hyperparameter("lr", lr, b, **STEP_SIZE), hyperparameter("constant", value, b)
        )

    def update(grads, state, params, context):
        tau = context.staleness[:, None]
        return -(state.lr * rule(tau, state.constant)) * grads, state

    hyperparameters = {"lr": lr} if constant_name is None else {"lr": lr, constant_name: constant}
    return _transform(name, init, update, hyperparameters)


def _inverse_staleness(tau: np.ndarray, constant: np.ndarray) -> np.ndarray:
    return 1.0 / np.maximum(tau, 1)


def staleness_aware(lr: Any) -> GradientTransformation:
    """Staleness-aware asynchronous SGD [SA]_: ``x ← x - η₀ g / max(τ, 1)``.

    The step is divided by the gradient's staleness τ (published versions since its read; τ = 0
    keeps the full step). With τ ≡ 0 it is SGD with step η₀.

    Parameters
    ----------
    lr : float or array (B,)
        Base step size η₀ > 0.
    """
    return _step_rule("staleness_aware", lr, None, None, _inverse_staleness)


def _delay_adaptive_factor(tau: np.ndarray, concurrency: np.ndarray) -> np.ndarray:
    return np.where(tau <= concurrency, 1.0, concurrency / np.maximum(tau, 1))


def delay_adaptive(lr: Any, concurrency: Any) -> GradientTransformation:
    """Delay-adaptive step sizes [KSJ]_ [MBEW]_: the full step while τ is at most the concurrency τ_C,
    a step falling as 1/τ beyond: ``η_t = η`` for ``τ ≤ τ_C``, ``η_t = η τ_C / τ`` for ``τ > τ_C``.

    [KSJ]_ (§4, delay-adaptive stepsizes) take ``η_t = η`` for ``τ_t ≤ τ_C`` and
    ``min(η, 1/(4 L τ_t))`` beyond, with τ_C the concurrency (the number of workers n) and
    ``η ≤ 1/(4 L τ_C)``; at that largest η, ``1/(4 L τ_t) = η τ_C/τ_t``, the rule here, which needs
    no smoothness constant L (unknown to a tuned run). [MBEW]_ use the same shape with the threshold
    2n. With τ ≡ 0 it is SGD with step η.

    Parameters
    ----------
    lr : float or array (B,)
        Step size η > 0.
    concurrency : float or array (B,)
        Threshold τ_C > 0 (updates); the paper's value is the number of workers.
    """
    return _step_rule(
        "delay_adaptive",
        lr,
        "concurrency",
        _checked("concurrency", concurrency, POSITIVE),
        _delay_adaptive_factor,
    )


class ThresholdState(NamedTuple):
    lr: np.ndarray  # (B, 1)
    threshold: np.ndarray  # (B,)
    published: np.ndarray  # (B,) bool: the last arrival was applied

    def record(self) -> dict[str, np.ndarray]:
        return {"lr": self.lr[:, 0]}


def ringmaster(lr: Any, threshold: Any) -> GradientTransformation:
    """Delay thresholding, Ringmaster ASGD [RM]_ (its Algorithm 1): a gradient whose staleness τ is at
    least R is discarded, the others applied as plain SGD, ``x ← x - η g`` if ``τ < R``.

    τ counts published versions: a discarded gradient publishes nothing and ages no other. The
    paper's threshold, ``R = max(1, ⌈σ²/ε⌉)``, needs the gradient noise σ² and the accuracy ε; a
    tuned bench has neither, so R is a hyperparameter (the bench tries multiples of the number of
    workers). With R larger than every staleness (and with τ ≡ 0) it is SGD with step η, exactly.

    Parameters
    ----------
    lr : float or array (B,)
        Step size η > 0.
    threshold : float or array (B,)
        R >= 1 (updates), a whole number.
    """
    _checked("lr", lr, STEP_SIZE)
    _integral("threshold", threshold, 1)

    def init(params: np.ndarray) -> ThresholdState:
        b = params.shape[0]
        column = hyperparameter("threshold", threshold, b, **AT_LEAST_ONE)
        return ThresholdState(
            hyperparameter("lr", lr, b, **STEP_SIZE), column[:, 0], np.ones(b, dtype=bool)
        )

    def update(grads, state, params, context):
        keep = context.staleness < state.threshold
        return np.where(keep[:, None], -state.lr * grads, 0.0), state._replace(published=keep)

    return _transform("ringmaster", init, update, {"lr": lr, "threshold": threshold})


# ------------------------------------------------------------------------------------------ DC-ASGD
class DelayCompensationState(NamedTuple):
    lr: np.ndarray  # (B, 1)
    strength: np.ndarray  # (B, 1) λ (constant) or λ₀ (adaptive)
    mean_square: np.ndarray | None  # (B, d) MS_t of the adaptive variant, else None

    def record(self) -> dict[str, np.ndarray]:
        return {"lr": self.lr[:, 0]}


def dc_asgd(
    lr: Any,
    variance_control: Any = None,
    *,
    adaptive: bool = False,
    decay: float = 0.95,
    eps: float = 1e-7,
) -> GradientTransformation:
    """Delay-compensated asynchronous SGD [DC]_: a first-order Taylor correction of the stale
    gradient with the diagonal ``λ g ⊙ g`` standing in for the Hessian,

    ``g̃ = g + λ_t ⊙ g ⊙ g ⊙ (x - x_read)``, ``x ← x - η g̃``,

    with a constant ``λ_t = λ`` (DC-ASGD-c) or, with ``adaptive``, ``λ_t = λ₀ / √(MS_t + ε)``,
    ``MS_t = m MS_{t-1} + (1 - m) g ⊙ g`` from ``MS_0 = 0`` (DC-ASGD-a). The paper's constants:
    λ = 0.04; λ₀ = 2, m = 0.95, ε = 10⁻⁷. With τ ≡ 0 (``x_read = x``) it is SGD with step η.

    Parameters
    ----------
    lr : float or array (B,)
        Step size η > 0.
    variance_control : float, array (B,) or None
        λ (constant) or λ₀ (adaptive), >= 0; None takes the paper's (0.04 or 2).
    adaptive : bool
        DC-ASGD-a instead of DC-ASGD-c.
    decay : float
        m in [0, 1), the mean square's EMA factor (adaptive only).
    eps : float
        ε > 0 (adaptive only).
    """
    if not isinstance(adaptive, bool | np.bool_):
        raise TypeError(f"adaptive must be True or False, got {adaptive!r}")
    adaptive = bool(adaptive)
    if variance_control is None:
        variance_control = 2.0 if adaptive else 0.04
    _checked("lr", lr, STEP_SIZE)
    _checked("variance_control", variance_control, {"low": 0.0})
    decay = check_real("decay", decay, **DECAY)
    eps = check_real("eps", eps, **POSITIVE)

    def init(params: np.ndarray) -> DelayCompensationState:
        b = params.shape[0]
        return DelayCompensationState(
            hyperparameter("lr", lr, b, **STEP_SIZE),
            hyperparameter("variance_control", variance_control, b, low=0.0),
            np.zeros_like(params) if adaptive else None,
        )

    def update(grads, state, params, context):
        squared = grads * grads
        mean_square = state.mean_square
        strength: Any = state.strength
        if adaptive:
            mean_square = decay * mean_square + (1.0 - decay) * squared
            strength = state.strength / np.sqrt(mean_square + eps)
        compensated = grads + strength * squared * (params - context.read_params)
        return -state.lr * compensated, state._replace(mean_square=mean_square)

    hyperparameters = {"lr": lr, "variance_control": variance_control, "adaptive": adaptive}
    if adaptive:
        hyperparameters |= {"decay": decay, "eps": eps}
    return _transform("dc_asgd", init, update, hyperparameters)


# ------------------------------------------------------------------------------------------ Gap-Aware
class GapAwareState(NamedTuple):
    velocity: np.ndarray  # (B, d) last applied update
    second_moment: np.ndarray  # (B, d) v, the EMA of g ⊙ g
    steps: int  # updates so far
    lr: np.ndarray  # (B, 1)
    momentum: np.ndarray  # (B, 1)
    beta: np.ndarray  # (B, 1)

    def record(self) -> dict[str, np.ndarray]:
        return {"lr": self.lr[:, 0], "momentum": self.momentum[:, 0]}


def gap_aware(
    lr: Any, momentum: Any = 0.0, *, beta: Any = 0.999, eps: float = 1e-8
) -> GradientTransformation:
    r"""Gap-Aware [GA]_: each coordinate of a stale gradient divided by its *gap*, the distance the
    parameters moved since the read in units of a typical step,

    .. math::
        v_t = β v_{t-1} + (1 - β) g ⊙ g, \quad C = η_{max} (\sqrt{v_t / (1 - β^t)} + ε), \quad
        G = 1 + |x - x_{read}| ⊘ C, \quad g̃ = g ⊘ G,

    then heavy ball on g̃: ``u ← μ u - η g̃``, ``x ← x + u``. The normalisation ``C`` is the
    authors' (their released implementation, FTPipe ``GapAware``): η_max, the largest step size of
    the schedule (η itself here: a constant step), times the root of the bias-corrected EMA of the
    squared gradients with β = 0.999 and ε = 10⁻⁸, the EMA taking the current gradient before G is
    formed. With τ ≡ 0 (``x_read = x``, G = 1) it is heavy ball (SGD at μ = 0), step η.

    Parameters
    ----------
    lr : float or array (B,)
        Step size η > 0.
    momentum : float or array (B,)
        μ in (-1, 1).
    beta : float or array (B,)
        β in [0, 1), the EMA factor of ``g ⊙ g``.
    eps : float
        ε > 0.
    """
    _checked("lr", lr, STEP_SIZE)
    _checked("momentum", momentum, MOMENTUM)
    _checked("beta", beta, DECAY)
    eps = check_real("eps", eps, **POSITIVE)

    def init(params: np.ndarray) -> GapAwareState:
        b = params.shape[0]
        return GapAwareState(
            np.zeros_like(params),
            np.zeros_like(params),
            0,
            hyperparameter("lr", lr, b, **STEP_SIZE),
            hyperparameter("momentum", momentum, b, **MOMENTUM),
            hyperparameter("beta", beta, b, **DECAY),
        )

    def update(grads, state, params, context):
        steps = state.steps + 1
        beta_col = state.beta
        second = beta_col * state.second_moment + (1.0 - beta_col) * grads * grads
        typical = state.lr * (np.sqrt(second / (1.0 - beta_col**steps)) + eps)
        gap = 1.0 + np.abs(params - context.read_params) / typical
        velocity = state.momentum * state.velocity - state.lr * (grads / gap)
        return velocity, state._replace(velocity=velocity, second_moment=second, steps=steps)

    hyperparameters = {"lr": lr, "momentum": momentum, "beta": beta, "eps": eps}
    return _transform("gap_aware", init, update, hyperparameters)


# ------------------------------------------------------------------------------------------ FedBuff
class BufferState(NamedTuple):
    lr: np.ndarray  # (B, 1)
    size: np.ndarray  # (B,) K
    total: np.ndarray  # (B, d) Σ s(τ_k) g_k of the arrivals buffered so far
    count: np.ndarray  # (B,) arrivals buffered so far
    published: np.ndarray  # (B,) bool: the last arrival completed a buffer
    weighted: bool

    def record(self) -> dict[str, np.ndarray]:
        return {"lr": self.lr[:, 0]}


def fedbuff(lr: Any, buffer: Any, *, staleness_weight: bool = True) -> GradientTransformation:
    """Buffered asynchronous aggregation, FedBuff [FB]_: arrivals are buffered, each weighted by
    ``s(τ) = 1/√(1 + τ)``, and every K-th arrival makes one server step with their mean,

    ``x ← x - η (1/K) Σ_{k=1..K} s(τ_k) g_k``,

    the buffer then emptied. Normalisation: the sum divided by K, as in the paper's Algorithm 1 (the
    server averages the K buffered updates, then takes its step η_g); some published implementations
    divide by the sum of the weights instead, which undoes the staleness weighting in the step's
    length. A worker's single gradient stands for a client's local update (its step folded into η).
    τ counts published versions: the buffered arrivals publish nothing (their update is zero) and
    age no gradient. With K = 1 and no weighting it is plain asynchronous SGD exactly; with K = 1,
    SGD with step ``η/√(1 + τ)``; with τ ≡ 0, K = 1, SGD with step η.

    Parameters
    ----------
    lr : float or array (B,)
        Server step size η > 0.
    buffer : int or array (B,)
        K >= 1 arrivals per server step (the paper's default is 10).
    staleness_weight : bool
        Weight each arrival by ``1/√(1 + τ)`` (the paper's choice) or not.
    """
    _checked("lr", lr, STEP_SIZE)
    _integral("buffer", buffer, 1)
    if not isinstance(staleness_weight, bool | np.bool_):
        raise TypeError(f"staleness_weight must be True or False, got {staleness_weight!r}")
    weighted = bool(staleness_weight)

    def init(params: np.ndarray) -> BufferState:
        b = params.shape[0]
        return BufferState(
            hyperparameter("lr", lr, b, **STEP_SIZE),
            hyperparameter("buffer", buffer, b, **AT_LEAST_ONE)[:, 0],
            np.zeros_like(params),
            np.zeros(b),
            np.ones(b, dtype=bool),
            weighted,
        )

    def update(grads, state, params, context):
        arrival = grads / np.sqrt(1.0 + context.staleness)[:, None] if weighted else grads
        total = state.total + arrival
        count = state.count + 1.0
        full = count >= state.size
        column = full[:, None]
        step = np.where(column, -state.lr * (total / state.size[:, None]), 0.0)
        return step, state._replace(
            total=np.where(column, 0.0, total), count=np.where(full, 0.0, count), published=full
        )

    return _transform(
        "fedbuff", init, update, {"lr": lr, "buffer": buffer, "staleness_weight": weighted}
    )


# ------------------------------------------------------------------------------------------ FedAsync
STALENESS_FUNCTIONS: dict[str, dict[str, float]] = {
    "constant": {},
    "polynomial": {"a": 0.5},
    "hinge": {"a": 10.0, "b": 4.0},
}
"""FedAsync's staleness functions s(τ) and the paper's constants: constant ``s = 1``; polynomial
``s = (τ + 1)^(-a)``; hinge ``s = 1`` for ``τ ≤ b``, ``1/(a (τ - b) + 1)`` beyond."""


class MixingState(NamedTuple):
    lr: np.ndarray  # (B, 1)
    mixing: np.ndarray  # (B, 1) α
    kind: np.ndarray  # (B,) index into STALENESS_FUNCTIONS
    a: np.ndarray  # (B,)
    b: np.ndarray  # (B,)

    def record(self) -> dict[str, np.ndarray]:
        return {"lr": self.lr[:, 0]}


def _staleness_weight(state: MixingState, tau: np.ndarray) -> np.ndarray:
    """s(τ) of each configuration's function, (B,)."""
    polynomial = (tau + 1.0) ** -state.a
    hinge = np.where(tau <= state.b, 1.0, 1.0 / (state.a * (tau - state.b) + 1.0))
    return np.choose(state.kind, (np.ones_like(polynomial), polynomial, hinge))


def fedasync(
    lr: Any,
    mixing: Any = 0.6,
    staleness_function: Any = "constant",
    *,
    a: Any = None,
    b: Any = None,
) -> GradientTransformation:
    """Asynchronous federated optimization, FedAsync [FA]_: the server mixes the current parameters
    with the worker's, ``x_new = x_read - η g`` (one local step from the point it read),

    ``x ← (1 - α_t) x + α_t x_new``, ``α_t = α s(τ)``,

    with s one of :data:`STALENESS_FUNCTIONS`: constant, polynomial ``(τ + 1)^(-a)`` (a = 0.5), or
    hinge (a = 10, b = 4), the paper's constants, and α = 0.6. The mixing pulls x back towards the
    stale read by ``α_t (x_read - x)``. With τ ≡ 0 it is SGD with step α η.

    Parameters
    ----------
    lr : float or array (B,)
        The local step size η > 0.
    mixing : float or array (B,)
        α in (0, 1].
    staleness_function : str or array (B,) of str
        "constant", "polynomial" or "hinge".
    a, b : float, array (B,) or None
        The function's constants (a > 0, b >= 0); None takes the paper's for each function.
    """
    _checked("lr", lr, STEP_SIZE)
    _checked("mixing", mixing, UNIT)
    names = np.asarray(staleness_function)
    if names.ndim > 1 or not all(str(n) in STALENESS_FUNCTIONS for n in names.reshape(-1)):
        raise ValueError(
            f"staleness_function must be one of {', '.join(STALENESS_FUNCTIONS)} (or a 1-D array of "
            f"them), got {staleness_function!r}"
        )
    kinds = np.array([list(STALENESS_FUNCTIONS).index(str(n)) for n in names.reshape(-1)])
    defaults = {
        key: np.array([STALENESS_FUNCTIONS[str(n)].get(key, 0.0) for n in names.reshape(-1)])
        for key in ("a", "b")
    }
    a_values = defaults["a"] if a is None else _checked("a", a, POSITIVE)
    b_values = defaults["b"] if b is None else _checked("b", b, {"low": 0.0})
    batch = implied_batch(lr, mixing, kinds, a_values, b_values)

    def column(name: str, value: Any, size: int) -> np.ndarray:
        return hyperparameter(name, value, size)[:, 0]

    def init(params: np.ndarray) -> MixingState:
        size = params.shape[0]
        return MixingState(
            hyperparameter("lr", lr, size, **STEP_SIZE),
            hyperparameter("mixing", mixing, size, **UNIT),
            column("staleness_function", kinds, size).astype(np.int64),
            column("a", a_values, size),
            column("b", b_values, size),
        )

    def update(grads, state, params, context):
        alpha = state.mixing * _staleness_weight(state, context.staleness)[:, None]
        local = context.read_params - state.lr * grads
        return alpha * (local - params), state

    record = {
        "lr": plain_hyperparameter(lr),
        "mixing": plain_hyperparameter(mixing),
        "staleness_function": str(names) if names.ndim == 0 else tuple(map(str, names)),
        "a": plain_hyperparameter(a_values),
        "b": plain_hyperparameter(b_values),
    }
    return GradientTransformation(init, update, batch, "fedasync", record, READS)


# ------------------------------------------------------------------------------------------ DANA
class DanaState(NamedTuple):
    """Per-worker momentum buffers ``velocity`` (W, B, d), grown as writers appear, and their sum
    ``total`` (B, d). The update writes them in place (keep no reference to an old state)."""

    velocity: np.ndarray
    total: np.ndarray
    lr: np.ndarray  # (B, 1)
    momentum: np.ndarray  # (B, 1)

    def record(self) -> dict[str, np.ndarray]:
        return {"lr": self.lr[:, 0], "momentum": self.momentum[:, 0]}


def dana(lr: Any, momentum: Any) -> GradientTransformation:
    """DANA [DANA]_ (its DANA-Zero form): one momentum buffer per worker at the server, and workers
    read the look-ahead of every buffer,

    ``u_i ← γ u_i - η g`` (worker i's buffer), ``x ← x + u_i``, a worker reads ``x + γ Σ_j u_j``,

    the point x reaches once every worker's momentum has been applied. The paper writes it with
    ``v_i ← γ v_i + g``, ``x ← x - η v_i`` and sends ``x - η γ Σ_j v_j``: the same with
    ``u = -η v``; its default γ = 0.9. With one worker (τ ≡ 0) it is Nesterov's momentum, step η
    and momentum γ: the read points are :func:`asyncsim.optim.nesterov`'s iterates. Needs writer ids
    (a cluster trace).

    Parameters
    ----------
    lr : float or array (B,)
        Step size η > 0.
    momentum : float or array (B,)
        γ in (-1, 1).
    """
    _checked("lr", lr, STEP_SIZE)
    _checked("momentum", momentum, MOMENTUM)

    def init(params: np.ndarray) -> DanaState:
        b = params.shape[0]
        return DanaState(
            np.zeros((1, *params.shape)),
            np.zeros_like(params),
            hyperparameter("lr", lr, b, **STEP_SIZE),
            hyperparameter("momentum", momentum, b, **MOMENTUM),
        )

    def update(grads, state, params, context):
        writer = context.writer
        velocity = state.velocity
        if writer.max() >= velocity.shape[0]:  # a new worker: its buffer starts at zero
            grown = np.zeros((int(writer.max()) + 1, *velocity.shape[1:]))
            grown[: velocity.shape[0]] = velocity
            velocity = grown
        rows = np.arange(writer.shape[0])
        old = velocity[writer, rows]
        new = state.momentum * old - state.lr * grads
        velocity[writer, rows] = new
        total = state.total
        total += new - old
        return new, state._replace(velocity=velocity)

    def read_point(state: DanaState, params: np.ndarray) -> np.ndarray:
        return params + state.momentum * state.total

    return _transform(
        "dana",
        init,
        update,
        {"lr": lr, "momentum": momentum},
        needs=READS | {"writers"},
        read_point=read_point,
    )


# ------------------------------------------------------------------------------------------ the bench
@dataclass(frozen=True)
class Method:
    """A method of the bench.

    Attributes
    ----------
    name : str
        Short name (a table key).
    label : str
        How tables and figures name it.
    factory : callable
        ``(lr, momentum, **options) -> GradientTransformation``, for :class:`~asyncsim.sweep.Sweep`
        (module level, so that process pools can take it).
    axis : str or None
        The hyperparameter tried besides the step size: ``"momentum"`` (the sweep's momentum grid) or
        an option name; None when there is none.
    values : tuple
        Its values, the paper's default first; an option ``<name>_per_worker`` is multiplied by the
        number of workers M.
    options : dict
        Fixed options.
    vectorized : bool
        Whether the factory takes the option ``axis`` as an array (B,), so that one sweep holds
        every value (Adam's ``b1`` is a scalar: one sweep a value).
    """

    name: str
    label: str
    factory: Callable[..., GradientTransformation]
    axis: str | None = None
    values: tuple[Any, ...] = ()
    options: dict[str, Any] | None = None
    vectorized: bool = True

    def arguments(self, values: Any, n_workers: int) -> tuple[tuple[float, ...], dict[str, Any]]:
        """The momenta and options of a :class:`~asyncsim.sweep.Sweep` of this method at one value
        of its hyperparameter, or a tuple of them (an axis of the sweep), or None when it has none,
        for M = ``n_workers`` workers."""
        options = dict(self.options or {})
        if self.axis == "momentum":
            return tuple(map(float, np.atleast_1d(values))), options
        if self.axis is not None:
            options[self.axis] = values
            if self.axis.endswith("_per_worker"):
                options["n_workers"] = n_workers
        return (0.0,), options


def _sgd(lr: Any, momentum: Any) -> GradientTransformation:
    return sgd(lr)


def _heavy_ball(lr: Any, momentum: Any) -> GradientTransformation:
    return heavy_ball(lr, momentum)


def _staleness_aware(lr: Any, momentum: Any) -> GradientTransformation:
    return staleness_aware(lr)


def _dc_asgd(lr: Any, momentum: Any, **options: Any) -> GradientTransformation:
    return dc_asgd(lr, **options)


def _gap_aware(lr: Any, momentum: Any, **options: Any) -> GradientTransformation:
    return gap_aware(lr, momentum, **options)


def _delay_adaptive(lr: Any, momentum: Any, *, n_workers: int, concurrency_per_worker: Any):
    return delay_adaptive(lr, np.asarray(concurrency_per_worker, dtype=np.float64) * n_workers)


def _ringmaster(lr: Any, momentum: Any, *, n_workers: int, threshold_per_worker: Any):
    return ringmaster(lr, np.asarray(threshold_per_worker, dtype=np.float64) * n_workers)


def _fedbuff(lr: Any, momentum: Any, **options: Any) -> GradientTransformation:
    return fedbuff(lr, **options)


def _fedasync(lr: Any, momentum: Any, **options: Any) -> GradientTransformation:
    return fedasync(lr, **options)


def _dana(lr: Any, momentum: Any) -> GradientTransformation:
    return dana(lr, momentum)


def _adam(lr: Any, momentum: Any, **options: Any) -> GradientTransformation:
    return adam(lr, **options)


def _yellowfin(lr: Any, momentum: Any, **options: Any) -> GradientTransformation:
    return yellowfin_tuner(lr_init=lr, **options)


METHODS: dict[str, Method] = {
    method.name: method
    for method in (
        Method("asgd", "async SGD", _sgd),
        Method("heavy_ball", "heavy ball", _heavy_ball, "momentum", (0.9, 0.5, -0.3)),
        Method("staleness_aware", "staleness-aware", _staleness_aware),
        Method("dc_asgd_c", "DC-ASGD-c", _dc_asgd, "variance_control", (0.04, 0.4, 4.0)),
        Method(
            "dc_asgd_a",
            "DC-ASGD-a",
            _dc_asgd,
            "variance_control",
            (2.0, 0.5, 8.0),
            {"adaptive": True},
        ),
        Method("gap_aware", "Gap-Aware", _gap_aware, "beta", (0.999, 0.99, 0.9)),
        Method(
            "delay_adaptive",
            "delay-adaptive",
            _delay_adaptive,
            "concurrency_per_worker",
            (1.0, 2.0, 0.5),
        ),
        Method("ringmaster", "Ringmaster", _ringmaster, "threshold_per_worker", (2.0, 1.0, 4.0)),
        Method("fedbuff", "FedBuff", _fedbuff, "buffer", (10, 2, 4)),
        Method(
            "fedasync",
            "FedAsync",
            _fedasync,
            "staleness_function",
            ("constant", "polynomial", "hinge"),
        ),
        Method("dana", "DANA", _dana, "momentum", (0.9, 0.5, 0.0)),
        Method("adam", "Adam", _adam, "b1", (0.9, 0.5, 0.0), vectorized=False),
        Method("yellowfin", "YellowFin (open)", _yellowfin, "beta", (0.999, 0.99, 0.9)),
        Method(
            "yellowfin_closed",
            "YellowFin (closed)",
            _yellowfin,
            "gain",
            (0.01, 0.001, 0.1),
            {"closed_loop": True},
        ),
    )
}
"""The methods of the bench (:func:`asyncsim.experiments.mitigations`), by name."""
