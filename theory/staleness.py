r"""Staleness in the queueing model and the expected-update identities [AbM]_.

Model: ``M`` workers with i.i.d. ``Exp(rate)`` compute times write to a parameter server. The staleness
``tau`` of a write is the number of writes by the other workers between the writer's read and its write.
By memorylessness each write is by any given worker with probability ``1/M``, independently of the past,
so ``tau`` is geometric on ``{0, 1, ...}``:

.. math:: q_l = P(\tau = l) = \frac{1}{M} \left(1 - \frac{1}{M}\right)^l,
   \quad E\tau = M - 1, \quad \mathrm{Var}\,\tau = M (M - 1), \quad P(\tau \ge k) = (1 - 1/M)^k.

Plain SGD on stale reads, ``w_{t+1} = w_t - alpha grad f(w_{t - tau_t})``, has for any staleness law
([AbM]_ Thm 2)

.. math:: E[w_{t+1} - w_t] = E[w_t - w_{t-1}] - \alpha q_0 E\nabla f(w_t)
   + \alpha \sum_{l \ge 0} (q_l - q_{l+1}) E\nabla f(w_{t-l-1}),

and under geometric staleness ``q_l = (1 - mu_S) mu_S**l`` this is momentum:

.. math:: E[w_{t+1} - w_t] = \mu_S E[w_t - w_{t-1}] - (1 - \mu_S) \alpha E\nabla f(w_t),

with implicit momentum ``mu_S = 1 - 1/M`` and effective step ``alpha/M``. With explicit momentum
``mu_L`` too, the expected update's lag polynomial is ``(1 - mu_L B)(1 - mu_S B)``, and the worker-local
total-momentum estimator measures ``1 - (1 - mu_L)/M = mu_L + mu_S - mu_L mu_S``.

The symbolic results are module-level expressions in the symbols of :mod:`theory.symbols`; each
derivation is a cached function returning a :class:`~theory._derive.Derivation` (``derived``, ``stated``),
listed in :data:`DERIVATIONS`. The numeric functions below are lambdified from the stated (and derived)
closed forms.

References
----------
.. [AbM] I. Mitliagkas, C. Zhang, S. Hadjis, C. Ré, "Asynchrony begets Momentum, with an Application to
   Deep Learning", Allerton 2016, arXiv:1605.09774.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import sympy as sp
from numpy.typing import ArrayLike

from theory._derive import Derivation, convergent, registry
from theory._validate import check_array, check_momentum, check_positive, check_workers
from theory.numeric import LazyLambdified
from theory.symbols import B, M, alpha, dw_t, dw_t1, grad_t, k, l, mu_L, mu_S

__all__ = [
    "DERIVATIONS",
    "EFFECTIVE_STEP",
    "ESTIMATED_TOTAL_MOMENTUM",
    "EXPLICIT_RECURSION",
    "IMPLICIT_MOMENTUM",
    "LAG_POLYNOMIAL",
    "MEAN",
    "MOMENTUM_FORM",
    "PMF",
    "TAIL",
    "TOTAL_MOMENTUM",
    "VARIANCE",
    "effective_step",
    "implicit_momentum",
    "staleness_mean",
    "staleness_pmf",
    "staleness_tail",
    "staleness_variance",
    "total_momentum",
    "workers_from_momentum",
]

# --- Stated closed forms (theory/README.md §1-2) ---------------------------------------------
PMF = (1 / M) * (1 - 1 / M) ** l
"""``P(tau = l)`` for ``M`` workers with exponential compute times."""
MEAN = M - 1
"""``E[tau]``."""
VARIANCE = M * (M - 1)
"""``Var[tau]``."""
TAIL = (1 - 1 / M) ** k
"""``P(tau >= k)``."""
GEOMETRIC_PMF = (1 - mu_S) * mu_S**l
"""Geometric staleness law with parameter ``mu_S`` (``mu_S = 1 - 1/M`` gives :data:`PMF`)."""
IMPLICIT_MOMENTUM = 1 - 1 / M
"""Implicit momentum ``mu_S`` of ``M`` asynchronous workers."""
EFFECTIVE_STEP = alpha / M
"""Effective step ``(1 - mu_S) alpha`` of ``M`` asynchronous workers."""
MOMENTUM_FORM = mu_S * dw_t - (1 - mu_S) * alpha * grad_t
"""``E[w_{t+1} - w_t]`` under geometric staleness, in ``Dw_t = E[w_t - w_{t-1}]``, ``g_t = E grad f(w_t)``."""
LAG_POLYNOMIAL = 1 - (mu_L + mu_S) * B + mu_L * mu_S * B**2
"""Lag polynomial of the expected update with explicit and implicit momentum, expanded."""
EXPLICIT_RECURSION = (mu_L + mu_S) * dw_t - mu_L * mu_S * dw_t1 - (1 - mu_S) * alpha * grad_t
"""``E[w_{t+1} - w_t]`` with explicit momentum ``mu_L`` and geometric staleness ``mu_S``."""
ESTIMATED_TOTAL_MOMENTUM = 1 - (1 - mu_L) / M
"""What the worker-local total-momentum estimator measures (theory/README.md §9)."""
TOTAL_MOMENTUM = mu_L + mu_S - mu_L * mu_S
"""The same in ``mu_L`` and ``mu_S``: to first order the two momenta add."""

DERIVATIONS: dict[str, Callable[[], Derivation]] = {}
"""Name -> cached function returning ``Derivation(derived, stated)``."""
derivation = registry(DERIVATIONS)


def _at_workers(expr: sp.Expr) -> sp.Expr:
    """Substitute ``mu_S = 1 - 1/M``."""
    return expr.subs(mu_S, IMPLICIT_MOMENTUM)


@derivation("write_probability")
def derive_write_probability() -> Derivation:
    """P(a given worker writes next) = 1/M: it finishes first among M i.i.d. Exp(rate) clocks.

    By memorylessness the clocks restart after every write, so each write is an independent trial.
    """
    rate, s = sp.symbols("rate s", positive=True)
    own = rate * sp.exp(-rate * s)  # density of this worker's remaining time
    others = sp.exp(-rate * s) ** (M - 1)  # all M - 1 others still busy at s
    return Derivation(convergent(sp.integrate(own * others, (s, 0, sp.oo))), 1 / M)  # M >= 1


@derivation("pmf")
def derive_pmf() -> Derivation:
    """tau = l: l writes by others (each with probability 1 - 1/M), then the worker's own write."""
    own = derive_write_probability().derived
    return Derivation((1 - own) ** l * own, PMF)


@derivation("pmf_total")
def derive_pmf_total() -> Derivation:
    """The law sums to one."""
    return Derivation(convergent(sp.summation(PMF, (l, 0, sp.oo))), sp.Integer(1))


@derivation("mean")
def derive_mean() -> Derivation:
    """E[tau] = sum_l l q_l."""
    return Derivation(convergent(sp.summation(l * PMF, (l, 0, sp.oo))), MEAN)


@derivation("variance")
def derive_variance() -> Derivation:
    """Var[tau] = sum_l l**2 q_l - E[tau]**2."""
    second = convergent(sp.summation(l**2 * PMF, (l, 0, sp.oo)))
    return Derivation(second - derive_mean().derived ** 2, VARIANCE)


@derivation("tail")
def derive_tail() -> Derivation:
    """P(tau >= k) = sum_{l >= k} q_l."""
    return Derivation(convergent(sp.summation(PMF, (l, k, sp.oo))), TAIL)


def general_update_identity(support: int = 8) -> Derivation:
    r"""[AbM]_ Thm 2 for a general staleness law on ``{0, ..., support}``, as ``E[Δ_{t+1}] - E[Δ_t]``.

    With ``q_0, ..., q_L`` free symbols (``L = support``; ``q_{L+1} = 0``) and ``G_j = E grad f(w_{t-j})``:
    derived from ``E[Δ_{t+1}] = -alpha sum_l q_l G_l`` (and the same one step earlier); stated
    ``-alpha q_0 G_0 + alpha sum_l (q_l - q_{l+1}) G_{l+1}``. Neither needs ``sum_l q_l = 1``.
    """
    q = [*sp.symbols(f"q_0:{support + 1}", real=True), sp.Integer(0)]
    g = sp.symbols(f"G_0:{support + 2}", real=True)
    update_now = -alpha * sum(q[i] * g[i] for i in range(support + 1))
    update_before = -alpha * sum(q[i] * g[i + 1] for i in range(support + 1))
    stated = -alpha * q[0] * g[0] + alpha * sum(
        (q[i] - q[i + 1]) * g[i + 1] for i in range(support + 1)
    )
    return Derivation(update_now - update_before, stated)


derivation("general_update_identity")(general_update_identity)


def _generating(expr_of_l: sp.Expr) -> sp.Expr:
    """``sum_{l >= 0} expr(l) B**l`` in closed form (``|mu_S B| < 1``)."""
    return sp.simplify(convergent(sp.summation(expr_of_l * B**l, (l, 0, sp.oo))))


@derivation("momentum_form")
def derive_momentum_form() -> Derivation:
    r"""Geometric ``q_l`` turns the Thm 2 identity into momentum.

    In lag-operator form ``E[Δ_{t+1}] = -alpha Q(B) g_t`` with ``Q(B) = sum_l q_l B**l``. The weights of
    the identity sum to ``W(B) = sum_l (q_l - q_{l+1}) B**l = (1 - mu_S) Q(B)`` for geometric ``q_l``, so
    ``alpha sum_l (q_l - q_{l+1}) E grad f(w_{t-l-1}) = alpha B W(B) g_t = -(1 - mu_S) E[Δ_t]`` and the
    identity becomes ``E[Δ_{t+1}] = E[Δ_t] - alpha q_0 g_t - (1 - mu_S) E[Δ_t]``.
    """
    q = GEOMETRIC_PMF
    weights_over_law = sp.simplify(
        _generating(q - q.subs(l, l + 1)) / _generating(q)
    )  # W(B)/Q(B), free of B
    derived = dw_t - alpha * q.subs(l, 0) * grad_t - weights_over_law * dw_t
    return Derivation(sp.expand(derived), MOMENTUM_FORM)


@derivation("implicit_momentum")
def derive_implicit_momentum() -> Derivation:
    """The coefficient of ``E[Δ_t]`` with ``M`` workers (``q_l`` = :data:`PMF`, i.e. ``mu_S = 1 - 1/M``)."""
    form = _at_workers(derive_momentum_form().derived)
    return Derivation(sp.expand(form).coeff(dw_t), IMPLICIT_MOMENTUM)


@derivation("effective_step")
def derive_effective_step() -> Derivation:
    """Minus the coefficient of ``E grad f(w_t)`` with ``M`` workers."""
    form = _at_workers(derive_momentum_form().derived)
    return Derivation(-sp.expand(form).coeff(grad_t), EFFECTIVE_STEP)


def _explicit_transfer() -> tuple[sp.Expr, sp.Expr]:
    """Numerator and denominator (constant term 1) of ``E[Δ_{t+1}] / g_t`` with explicit momentum.

    ``(1 - mu_L B) E[Δ_{t+1}] = -alpha Q(B) g_t``, ``Q`` the geometric generating function.
    """
    transfer = sp.together(-alpha * _generating(GEOMETRIC_PMF) / (1 - mu_L * B))
    num, den = sp.fraction(transfer)
    scale = den.subs(B, 0)
    return sp.simplify(num / scale), sp.expand(den / scale)


@derivation("lag_polynomial")
def derive_lag_polynomial() -> Derivation:
    """The denominator of the transfer function from expected gradient to expected update."""
    return Derivation(_explicit_transfer()[1], LAG_POLYNOMIAL)


@derivation("explicit_recursion")
def derive_explicit_recursion() -> Derivation:
    """Read the recursion off the transfer function: ``P(B) E[Δ_{t+1}] = N g_t``."""
    num, poly = _explicit_transfer()
    derived = -poly.coeff(B, 1) * dw_t - poly.coeff(B, 2) * dw_t1 + num * grad_t
    return Derivation(sp.expand(derived), EXPLICIT_RECURSION)


@derivation("estimated_total_momentum")
def derive_estimated_total_momentum() -> Derivation:
    """Total momentum ``1 - P(1)``: the single momentum whose lag polynomial has the same value at B = 1.

    A heavy ball with momentum ``m`` has ``P(B) = 1 - m B``, so ``m = 1 - P(1)``; here
    ``P(1) = (1 - mu_L)(1 - mu_S) = (1 - mu_L)/M``.
    """
    derived = _at_workers(1 - derive_lag_polynomial().derived.subs(B, 1))
    return Derivation(derived, ESTIMATED_TOTAL_MOMENTUM)


@derivation("total_momentum")
def derive_total_momentum() -> Derivation:
    """``1 - (1 - mu_L)/M = mu_L + mu_S - mu_L mu_S`` at ``mu_S = 1 - 1/M``."""
    return Derivation(derive_estimated_total_momentum().derived, _at_workers(TOTAL_MOMENTUM))


# --- Numeric versions ---------------------------------------------------------------------------------
_pmf = LazyLambdified(PMF, (l, M))
_mean = LazyLambdified(MEAN, (M,))
_variance = LazyLambdified(VARIANCE, (M,))
_tail = LazyLambdified(TAIL, (k, M))
_implicit = LazyLambdified(IMPLICIT_MOMENTUM, (M,))
_effective = LazyLambdified(EFFECTIVE_STEP, (alpha, M))
_total = LazyLambdified(ESTIMATED_TOTAL_MOMENTUM, (mu_L, M))


def staleness_pmf(lag: ArrayLike, workers: ArrayLike) -> np.ndarray:
    r"""Geometric staleness law of ``M`` workers with i.i.d. exponential compute times.

    .. math:: P(\tau = l) = \frac{1}{M} \left(1 - \frac{1}{M}\right)^l

    Parameters
    ----------
    lag : array_like of int
        Staleness values ``l >= 0`` (in writes).
    workers : array_like
        Number of workers ``M >= 1`` (real values interpolate).

    Returns
    -------
    ndarray
        Probabilities, shape ``broadcast(lag, workers)``.

    Examples
    --------
    >>> staleness_pmf(range(6), 4).tolist()
    [0.25, 0.1875, 0.140625, 0.10546875, 0.0791015625, 0.059326171875]
    """
    lag = check_array("lag", lag, low=0.0, integer=True)
    return _pmf(lag, check_workers("workers", workers))


def staleness_mean(workers: ArrayLike) -> np.ndarray:
    """Mean staleness ``E[tau] = M - 1`` (writes), shape of ``workers``.

    Examples
    --------
    >>> float(staleness_mean(4))
    3.0
    """
    return _mean(check_workers("workers", workers))


def staleness_variance(workers: ArrayLike) -> np.ndarray:
    """Staleness variance ``Var[tau] = M (M - 1)`` (writes squared), shape of ``workers``.

    Examples
    --------
    >>> float(staleness_variance(4))
    12.0
    """
    return _variance(check_workers("workers", workers))


def staleness_tail(threshold: ArrayLike, workers: ArrayLike) -> np.ndarray:
    """Tail ``P(tau >= k) = (1 - 1/M)**k``, shape ``broadcast(threshold, workers)``.

    Examples
    --------
    >>> float(staleness_tail(2, 4))
    0.5625
    """
    threshold = check_array("threshold", threshold, low=0.0, integer=True)
    return _tail(threshold, check_workers("workers", workers))


def implicit_momentum(workers: ArrayLike) -> np.ndarray:
    """Implicit momentum ``mu_S = 1 - 1/M`` of ``M`` asynchronous workers (or compute groups).

    Examples
    --------
    >>> implicit_momentum([1, 2, 4]).tolist()
    [0.0, 0.5, 0.75]
    """
    return _implicit(check_workers("workers", workers))


def workers_from_momentum(mu_s: ArrayLike) -> np.ndarray:
    """Inverse of :func:`implicit_momentum`: ``M = 1 / (1 - mu_S)`` for ``mu_S`` in ``[0, 1)``.

    Examples
    --------
    >>> workers_from_momentum([0.0, 0.75]).tolist()
    [1.0, 4.0]
    """
    return 1.0 / (1.0 - check_momentum("mu_s", mu_s))


def effective_step(alpha: ArrayLike, workers: ArrayLike) -> np.ndarray:
    """Effective step ``(1 - mu_S) alpha = alpha / M`` of the expected update.

    Examples
    --------
    >>> float(effective_step(0.1, 4))
    0.025
    """
    return _effective(check_positive("alpha", alpha), check_workers("workers", workers))


def total_momentum(mu_l: ArrayLike, workers: ArrayLike) -> np.ndarray:
    """What the worker-local total-momentum estimator measures: ``1 - (1 - mu_L)/M``.

    Equal to ``mu_L + mu_S - mu_L mu_S`` with ``mu_S = 1 - 1/M``; draw this curve beside measured total
    momentum (theory/README.md §9).

    Parameters
    ----------
    mu_l : array_like
        Explicit momentum (any real; negative allowed).
    workers : array_like
        Number of asynchronous writers ``M >= 1``.

    Examples
    --------
    >>> total_momentum([-0.5, 0.0, 0.5], 4).tolist()
    [0.625, 0.75, 0.875]
    """
    return _total(check_array("mu_l", mu_l), check_workers("workers", workers))
