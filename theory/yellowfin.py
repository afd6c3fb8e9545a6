r"""The SingleStep problem of YellowFin and its solution [YF]_.

On the noisy quadratic model with distance to the optimum ``D`` and gradient variance ``C``, YellowFin
picks each step

.. math:: \min_{\mu, \alpha} \; \mu D^2 + \alpha^2 C \quad \text{s.t.} \quad
   \sqrt\mu \ge \frac{\sqrt\kappa - 1}{\sqrt\kappa + 1}, \quad \alpha = \frac{(1 - \sqrt\mu)^2}{h_{min}},

(the expected squared distance after one step in the robust region: contraction ``mu`` of ``D**2`` plus
the injected noise ``alpha**2 C``; the constraint keeps ``[h_min, h_max]`` inside the robust region,
:mod:`theory.momentum`). With ``r = sqrt(mu)`` the objective
``f(r) = r**2 D**2 + (1 - r)**4 C / h_min**2`` is convex, and ``f'(r) = 0`` is the cubic

.. math:: (1 - r)^3 = p\, r, \qquad p = \frac{D^2 h_{min}^2}{2 C},

whose left side falls from 1 to 0 and right side rises from 0 to ``p`` on ``[0, 1]``: one real root in
``(0, 1)``. Then ``mu = max(r**2, mu_lb)`` with ``mu_lb = ((sqrt(kappa) - 1)/(sqrt(kappa) + 1))**2``, and
``alpha = (1 - sqrt(mu))**2 / h_min``. Limits: ``C -> 0`` (``p -> inf``) gives ``r -> 0`` and
``mu = mu_lb``; ``D -> 0`` (``p -> 0``) gives ``r -> 1``, ``mu -> 1``, ``alpha -> 0``.

Cardano's form of the root (with ``y = r - 1``, ``y**3 + p y + p = 0``) cancels catastrophically for
large ``p`` (``r ~ 1/p`` is the difference of two terms ``~ sqrt(p/3)``); :func:`cubic_root` solves the
cubic by safeguarded Newton iterations in ``r`` (for ``p >= 1/4``, where ``r <= 1/2``) or in ``1 - r``
(for ``p < 1/4``), which keeps both ``r`` and ``1 - r`` (hence ``alpha``) to full relative precision for
every ``p``. This package is free of the tuner's ``eps`` guards: those belong to :mod:`asyncsim`.

References
----------
.. [YF] J. Zhang, I. Mitliagkas, C. Ré, "YellowFin and the Art of Momentum Tuning", MLSys 2019,
   arXiv:1706.03471.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import sympy as sp
from numpy.typing import ArrayLike

from theory._derive import Derivation, registry
from theory._validate import check_array, check_positive
from theory.momentum import OPTIMAL_MU
from theory.numeric import LazyLambdified
from theory.symbols import C, D, alpha, h_min, mu, p, r, y

__all__ = [
    "ALPHA_OF_MU",
    "CARDANO_ROOT",
    "CUBIC",
    "DEPRESSED_CUBIC",
    "DERIVATIONS",
    "MU_LOWER",
    "OBJECTIVE",
    "OBJECTIVE_R",
    "P_OF_INPUTS",
    "SingleStepSolution",
    "cardano_root",
    "cubic_root",
    "single_step",
    "single_step_objective",
]

# --- Stated closed forms ([YF] Sec. 3; theory/README.md §7) -------------------------------------------------
OBJECTIVE = mu * D**2 + alpha**2 * C
"""The SingleStep objective in ``(mu, alpha)``."""
ALPHA_OF_MU = (1 - sp.sqrt(mu)) ** 2 / h_min
"""The step tied to the momentum: ``h_min`` on the robust region's lower edge."""
OBJECTIVE_R = r**2 * D**2 + (1 - r) ** 4 * C / h_min**2
"""The objective in ``r = sqrt(mu)`` on the constraint ``alpha = (1 - r)**2 / h_min``."""
P_OF_INPUTS = D**2 * h_min**2 / (2 * C)
"""The cubic's parameter ``p``."""
CUBIC = (1 - r) ** 3 - p * r
"""Zero at the stationary ``r``: ``(1 - r)**3 = p r``."""
DEPRESSED_CUBIC = y**3 + p * y + p
"""The cubic in ``y = r - 1`` (times -1)."""
_W = sp.cbrt((sp.sqrt(p**2 + 4 * p**3 / 27) + p) / 2)
CARDANO_ROOT = 1 - _W + p / (3 * _W)
"""Cardano's real root ``r = 1 + u - p/(3u)``, ``u = -cbrt((sqrt(p**2 + 4 p**3/27) + p)/2)``."""
MU_LOWER = OPTIMAL_MU
"""The constraint ``mu >= ((sqrt(kappa) - 1)/(sqrt(kappa) + 1))**2`` (the optimal heavy ball's mu)."""

DERIVATIONS: dict[str, Callable[[], Derivation]] = {}
"""Name -> cached function returning ``Derivation(derived, stated)``."""
derivation = registry(DERIVATIONS)


@derivation("objective_in_r")
def derive_objective_in_r() -> Derivation:
    """Substitute ``alpha = (1 - sqrt(mu))**2 / h_min`` and ``mu = r**2``."""
    return Derivation(OBJECTIVE.subs(alpha, ALPHA_OF_MU).subs(mu, r**2), OBJECTIVE_R)


@derivation("stationarity")
def derive_stationarity() -> Derivation:
    """``-f'(r) h_min**2 / (4 C) = (1 - r)**3 - p r``: the stationarity condition is the cubic."""
    derived = -sp.diff(derive_objective_in_r().derived, r) * h_min**2 / (4 * C)
    return Derivation(derived, CUBIC.subs(p, P_OF_INPUTS))


@derivation("convexity")
def derive_convexity() -> Derivation:
    """``f''(r) = 2 D**2 + 12 C (1 - r)**2 / h_min**2 > 0``: one minimum, the cubic's root."""
    derived = sp.diff(derive_objective_in_r().derived, r, 2)
    return Derivation(derived, 2 * D**2 + 12 * C * (1 - r) ** 2 / h_min**2)


@derivation("depressed_cubic")
def derive_depressed_cubic() -> Derivation:
    """With ``r = y + 1``: ``-((1 - r)**3 - p r) = y**3 + p y + p``."""
    return Derivation(sp.expand(-CUBIC.subs(r, y + 1)), DEPRESSED_CUBIC)


@derivation("cardano_root")
def derive_cardano_root() -> Derivation:
    """Cardano's root makes the cubic vanish."""
    return Derivation(CUBIC.subs(r, CARDANO_ROOT), sp.Integer(0))


@derivation("limit_C_to_0")
def derive_limit_c_to_0() -> Derivation:
    """``C -> 0`` is ``p -> inf``: ``r -> 0`` (then ``mu = mu_lb``)."""
    return Derivation(sp.limit(CARDANO_ROOT, p, sp.oo), sp.Integer(0))


@derivation("limit_D_to_0")
def derive_limit_d_to_0() -> Derivation:
    """``D -> 0`` is ``p -> 0+``: ``r -> 1``."""
    return Derivation(sp.limit(CARDANO_ROOT, p, 0, "+"), sp.Integer(1))


# --- Numeric versions ---------------------------------------------------------------------------------
_cardano = LazyLambdified(CARDANO_ROOT, (p,))
_objective = LazyLambdified(OBJECTIVE.subs(alpha, ALPHA_OF_MU), (mu, h_min, C, D))

_SWITCH = 0.25
"""At ``p = 1/4`` the root is ``r = 1/2``: above it iterate in ``r``, below it in ``1 - r``."""


def _root_pair(p_: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(r, 1 - r)`` for the root of ``(1 - r)**3 = p r``, each to full relative precision.

    Newton's method on the convex, monotone ``F(r) = (1 - r)**3 - p r`` (in ``r``, from
    ``r_0 = 1/(p + 3)``, left of the root) or on ``G(s) = s**3 - p (1 - s)`` (in ``s = 1 - r``, from
    ``s_0 = p**(1/3)``, right of the root) converges monotonically; the small one of ``r`` and ``s`` is
    iterated, the other is ``1 -`` it. ``p = inf`` gives ``(0, 1)``, ``p = 0`` gives ``(1, 0)``.
    """
    large = p_ >= _SWITCH
    finite = np.isfinite(p_)
    pp = np.where(finite, p_, 1.0)
    with np.errstate(divide="ignore"):
        small = np.where(large, 1.0 / (pp + 3.0), np.cbrt(pp))  # r_0 or s_0
    for _ in range(100):
        other = 1.0 - small
        s, r_ = np.where(large, other, small), np.where(large, small, other)
        residual = s**3 - pp * r_  # F(r) = -G(s)
        slope = 3.0 * s**2 + pp  # -F'(r) = G'(s)
        with np.errstate(divide="ignore", invalid="ignore"):
            step = np.where(slope > 0.0, residual / slope, 0.0)
        new = np.where(large, small + step, small - step)
        if np.array_equal(new, small):
            break
        small = new
    small = np.where(finite, small, 0.0)
    return np.where(large, small, 1.0 - small), np.where(large, 1.0 - small, small)


def cubic_root(p: ArrayLike) -> np.ndarray:
    r"""The real root in ``[0, 1]`` of ``(1 - r)**3 = p r``, accurate for every ``p >= 0``.

    Parameters
    ----------
    p : array_like
        ``p = D**2 h_min**2 / (2 C) >= 0``; ``inf`` allowed (``C = 0``).

    Returns
    -------
    ndarray
        ``r = sqrt(mu)`` before the constraint, shape of ``p``; ``r(0) = 1``, ``r(inf) = 0``, and
        ``r ~ 1/(p + 3)`` for large ``p``.

    Examples
    --------
    >>> cubic_root([0.0, 0.25, 1.6875, np.inf]).round(15).tolist()
    [1.0, 0.5, 0.25, 0.0]
    """
    arr = np.asarray(p, dtype=np.float64)
    if np.any(np.isnan(arr) | (arr < 0)):
        first = arr.reshape(-1)[np.flatnonzero(np.isnan(arr) | (arr < 0)).min()]
        raise ValueError(f"p must be in [0, inf], got {first:g}")
    return _root_pair(arr)[0]


def cardano_root(p: ArrayLike) -> np.ndarray:
    """Cardano's closed form of :func:`cubic_root` (lambdified :data:`CARDANO_ROOT`), for reference.

    Accurate to about ``1e-16 sqrt(p)`` in absolute terms: fine for moderate ``p``, useless for
    ``p >~ 1e10`` where the root ``~1/p`` drowns in the cancellation.

    Examples
    --------
    >>> round(float(cardano_root(0.25)), 12)
    0.5
    """
    return _cardano(check_positive("p", p))


def single_step_objective(
    mu: ArrayLike, h_min: ArrayLike, C: ArrayLike, D: ArrayLike
) -> np.ndarray:
    """The SingleStep objective ``mu D**2 + alpha**2 C`` at ``alpha = (1 - sqrt(mu))**2 / h_min``.

    Examples
    --------
    >>> float(single_step_objective(0.25, 2.0, 0.5, 0.25))
    0.0234375
    """
    mu = check_array("mu", mu, low=0.0, high=1.0)
    var, dist = check_array("C", C, low=0.0), check_array("D", D, low=0.0)
    return _objective(mu, check_positive("h_min", h_min), var, dist)


@dataclass(frozen=True)
class SingleStepSolution:
    """The solution of SingleStep, arrays of the broadcast input shape.

    Attributes
    ----------
    p : ndarray
        ``D**2 h_min**2 / (2 C)`` (``inf`` when ``C = 0``).
    root : ndarray
        The cubic's root ``r`` in ``[0, 1]`` (the unconstrained ``sqrt(mu)``).
    mu : ndarray
        ``max(root**2, mu_lower)``.
    alpha : ndarray
        ``(1 - sqrt(mu))**2 / h_min``.
    mu_lower : ndarray
        The constraint ``((sqrt(kappa) - 1)/(sqrt(kappa) + 1))**2``.
    constrained : ndarray of bool
        Whether the constraint binds (``root**2 < mu_lower``).
    """

    p: np.ndarray
    root: np.ndarray
    mu: np.ndarray
    alpha: np.ndarray
    mu_lower: np.ndarray
    constrained: np.ndarray


def single_step(
    h_min: ArrayLike, h_max: ArrayLike, C: ArrayLike, D: ArrayLike
) -> SingleStepSolution:
    r"""Solve SingleStep for arrays of ``(h_min, h_max, C, D)``, broadcast together.

    .. math:: \sqrt\mu = \max\left(r, \frac{\sqrt{h_{max}} - \sqrt{h_{min}}}
       {\sqrt{h_{max}} + \sqrt{h_{min}}}\right), \quad (1 - r)^3 = \frac{D^2 h_{min}^2}{2C} r,
       \quad \alpha = \frac{(1 - \sqrt\mu)^2}{h_{min}}

    Parameters
    ----------
    h_min, h_max : array_like
        Curvature range, ``0 < h_min <= h_max`` (loss per parameter squared).
    C : array_like
        Gradient variance, ``>= 0``.
    D : array_like
        Distance to the optimum, ``>= 0``; ``C`` and ``D`` not both zero.

    Returns
    -------
    SingleStepSolution

    Examples
    --------
    >>> sol = single_step([1, 1, 2], [4, 100, 8], [1, 1, 0.5], [1, 1, 0.25])
    >>> sol.mu.round(7).tolist(), sol.alpha.round(7).tolist()
    ([0.1683014, 0.6694215, 0.25], [0.3478104, 0.0330579, 0.125])
    >>> sol.constrained.tolist()
    [False, True, False]
    """
    low, high = check_positive("h_min", h_min), check_positive("h_max", h_max)
    var, dist = check_array("C", C, low=0.0), check_array("D", D, low=0.0)
    low, high, var, dist = np.broadcast_arrays(low, high, var, dist)
    if np.any(high < low):
        raise ValueError(f"h_max must be >= h_min, got h_max={high[high < low].flat[0]:g}")
    if np.any((var == 0) & (dist == 0)):
        raise ValueError("C and D must not both be 0 (C = 0 gives p = inf, D = 0 gives p = 0)")
    with np.errstate(divide="ignore"):
        p_ = dist**2 * low**2 / (2.0 * var)
    root, one_minus_root = _root_pair(p_)
    sum_sqrt = np.sqrt(high) + np.sqrt(low)
    root_lb = (high - low) / sum_sqrt**2  # (sqrt(kappa) - 1)/(sqrt(kappa) + 1) without cancellation
    one_minus_lb = 2.0 * np.sqrt(low) / sum_sqrt
    constrained = root < root_lb
    sqrt_mu = np.where(constrained, root_lb, root)
    gap = np.where(constrained, one_minus_lb, one_minus_root)
    return SingleStepSolution(
        p=p_,
        root=root,
        mu=sqrt_mu**2,
        alpha=gap**2 / low,
        mu_lower=root_lb**2,
        constrained=constrained,
    )
