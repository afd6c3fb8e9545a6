r"""The heavy-ball operator, its spectral radius and the robust region [YF]_.

On a one-dimensional quadratic with curvature ``h`` the heavy ball
``w_{t+1} = w_t - alpha h (w_t - w*) + mu (w_t - w_{t-1})`` is linear in the error:

.. math:: \begin{bmatrix} w_{t+1} - w^* \\ w_t - w^* \end{bmatrix} = A
   \begin{bmatrix} w_t - w^* \\ w_{t-1} - w^* \end{bmatrix}, \qquad
   A(\alpha, \mu, h) = \begin{bmatrix} 1 - \alpha h + \mu & -\mu \\ 1 & 0 \end{bmatrix},
   \qquad \det A = \mu.

Robust region ([YF]_ Lemma 3): for ``mu`` in ``[0, 1)`` the spectral radius is ``rho(A) = sqrt(mu)``
exactly when ``(1 - sqrt(mu))**2 <= alpha h <= (1 + sqrt(mu))**2``, where the discriminant of the
characteristic polynomial ``x**2 - (1 - alpha h + mu) x + mu`` is non-positive (a complex pair of modulus
``sqrt(det A)``); its edges are where the discriminant vanishes (a repeated eigenvalue). One
``(alpha, mu)`` thus covers every curvature in ``[(1 - sqrt(mu))**2/alpha, (1 + sqrt(mu))**2/alpha]``, a
range of condition number ``((1 + sqrt(mu))/(1 - sqrt(mu)))**2``, and the optimum for ``[h_min, h_max]``
(the smallest ``mu`` that covers it) is

.. math:: \sqrt{\mu^*} = \frac{\sqrt\kappa - 1}{\sqrt\kappa + 1}, \quad
   \alpha^* = \frac{4}{(\sqrt{h_{max}} + \sqrt{h_{min}})^2}, \quad \text{rate } \sqrt{\mu^*},
   \quad \kappa = h_{max}/h_{min}.

Units: ``h`` in loss per parameter squared, ``alpha`` its inverse, ``mu`` and rates dimensionless (per
step).

References
----------
.. [YF] J. Zhang, I. Mitliagkas, C. Ré, "YellowFin and the Art of Momentum Tuning", MLSys 2019,
   arXiv:1706.03471.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import sympy as sp
from numpy.typing import ArrayLike

from theory._derive import Derivation, registry
from theory._validate import check_array, check_momentum, check_positive
from theory.numeric import LazyLambdified
from theory.symbols import alpha, h, h_max, h_min, kappa, mu, r, x

__all__ = [
    "CHARPOLY",
    "COVERED_CONDITION_NUMBER",
    "DERIVATIONS",
    "OPERATOR",
    "OPTIMAL_ALPHA",
    "OPTIMAL_MU",
    "OPTIMAL_RATE",
    "ROBUST_LOWER",
    "ROBUST_UPPER",
    "HeavyBallOptimum",
    "covered_condition_number",
    "curvature_range",
    "heavy_ball_optimum",
    "momentum_eigenvalues",
    "momentum_operator",
    "robust_region",
    "spectral_radius",
]

# --- Stated closed forms ([YF] Sec. 2; theory/README.md §6) --------------------------------------
OPERATOR = sp.Matrix([[1 - alpha * h + mu, -mu], [1, 0]])
"""The heavy-ball operator ``A(alpha, mu, h)``."""
CHARPOLY = x**2 - (1 - alpha * h + mu) * x + mu
"""Characteristic polynomial of ``A`` in ``x``."""
ROBUST_LOWER = (1 - sp.sqrt(mu)) ** 2 / h
"""Smallest step of the robust region."""
ROBUST_UPPER = (1 + sp.sqrt(mu)) ** 2 / h
"""Largest step of the robust region."""
COVERED_CONDITION_NUMBER = ((1 + sp.sqrt(mu)) / (1 - sp.sqrt(mu))) ** 2
"""Largest ``h_max/h_min`` that one ``(alpha, mu)`` keeps inside its robust region."""
OPTIMAL_RATE = (sp.sqrt(kappa) - 1) / (sp.sqrt(kappa) + 1)
"""``sqrt(mu*)``: the rate of the optimal heavy ball on ``[h_min, h_max]``."""
OPTIMAL_MU = OPTIMAL_RATE**2
"""``mu*`` for the curvature range ``[h_min, h_max]``."""
OPTIMAL_ALPHA = 4 / (sp.sqrt(h_max) + sp.sqrt(h_min)) ** 2
"""``alpha*`` for the curvature range ``[h_min, h_max]``."""

DERIVATIONS: dict[str, Callable[[], Derivation]] = {}
"""Name -> cached function returning ``Derivation(derived, stated)``."""
derivation = registry(DERIVATIONS)


@derivation("determinant")
def derive_determinant() -> Derivation:
    """``det A = mu``."""
    return Derivation(OPERATOR.det(), mu)


@derivation("characteristic_polynomial")
def derive_characteristic_polynomial() -> Derivation:
    """``det(x I - A)``."""
    return Derivation(OPERATOR.charpoly(x).as_expr(), CHARPOLY)


def _robust_edges() -> list[sp.Expr]:
    """The steps where the discriminant of :data:`CHARPOLY` vanishes, smallest first."""
    edges = sp.solve(sp.discriminant(CHARPOLY, x), alpha)
    return sorted(edges, key=lambda e: float(e.subs({mu: sp.Rational(1, 4), h: 1})))


@derivation("robust_lower_edge")
def derive_robust_lower_edge() -> Derivation:
    """Lower edge of the robust region: a root of the discriminant in ``alpha``."""
    return Derivation(_robust_edges()[0], ROBUST_LOWER)


@derivation("robust_upper_edge")
def derive_robust_upper_edge() -> Derivation:
    """Upper edge of the robust region: the other root of the discriminant."""
    return Derivation(_robust_edges()[1], ROBUST_UPPER)


@derivation("modulus_inside_region")
def derive_modulus_inside_region() -> Derivation:
    """Inside the region the eigenvalues are ``(b ± i sqrt(4 mu - b**2))/2``, of squared modulus ``mu``."""
    b = 1 - alpha * h + mu
    return Derivation(sp.expand((b / 2) ** 2 + (sp.sqrt(4 * mu - b**2) / 2) ** 2), mu)


@derivation("covered_condition_number")
def derive_covered_condition_number() -> Derivation:
    """At fixed ``(alpha, mu)`` the region in ``h`` is the edges solved for ``h``; their ratio."""
    low = sp.solve(sp.Eq(alpha, ROBUST_LOWER), h)[0]
    high = sp.solve(sp.Eq(alpha, ROBUST_UPPER), h)[0]
    return Derivation(high / low, COVERED_CONDITION_NUMBER)


def _optimal_sqrt_mu() -> sp.Expr:
    """Smallest ``r = sqrt(mu)`` whose covered condition number reaches ``kappa`` (the square root of
    ``kappa = ((1 + r)/(1 - r))**2``, positive branch)."""
    (root,) = sp.solve(sp.sqrt(kappa) * (1 - r) - (1 + r), r)
    return root


@derivation("optimal_rate")
def derive_optimal_rate() -> Derivation:
    """``sqrt(mu*)``."""
    return Derivation(_optimal_sqrt_mu(), OPTIMAL_RATE)


@derivation("optimal_mu")
def derive_optimal_mu() -> Derivation:
    """``mu* = sqrt(mu*)**2``."""
    return Derivation(_optimal_sqrt_mu() ** 2, OPTIMAL_MU)


@derivation("optimal_alpha")
def derive_optimal_alpha() -> Derivation:
    """``alpha*`` puts ``h_min`` on the lower edge: ``alpha* h_min = (1 - sqrt(mu*))**2``."""
    return Derivation((1 - _optimal_sqrt_mu()) ** 2 / h_min, OPTIMAL_ALPHA)


@derivation("optimal_alpha_upper_edge")
def derive_optimal_alpha_upper_edge() -> Derivation:
    """... and ``h_max`` on the upper edge at the same time: ``alpha* h_max = (1 + sqrt(mu*))**2``."""
    return Derivation((1 + _optimal_sqrt_mu()) ** 2 / h_max, OPTIMAL_ALPHA)


# --- Numeric versions ---------------------------------------------------------------------------------
_robust_lower = LazyLambdified(ROBUST_LOWER, (mu, h))
_robust_upper = LazyLambdified(ROBUST_UPPER, (mu, h))
_covered = LazyLambdified(COVERED_CONDITION_NUMBER, (mu,))
_optimal_alpha = LazyLambdified(OPTIMAL_ALPHA, (h_min, h_max))
_optimal_mu = LazyLambdified(OPTIMAL_MU, (h_min, h_max))
_optimal_rate = LazyLambdified(OPTIMAL_RATE, (h_min, h_max))


def _operator_args(
    alpha_: ArrayLike, mu_: ArrayLike, h_: ArrayLike
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate and broadcast ``(alpha, mu, h)``; ``mu`` may be any real (negative momentum too)."""
    a, m, c = np.broadcast_arrays(
        check_positive("alpha", alpha_), check_array("mu", mu_), check_positive("h", h_)
    )
    return a, m, c


def momentum_operator(alpha: ArrayLike, mu: ArrayLike, h: ArrayLike) -> np.ndarray:
    """The heavy-ball operator ``A = [[1 - alpha h + mu, -mu], [1, 0]]``.

    Parameters
    ----------
    alpha : array_like
        Step size, ``> 0``.
    mu : array_like
        Momentum (any real; the robust region needs ``[0, 1)``).
    h : array_like
        Curvature, ``> 0``.

    Returns
    -------
    ndarray
        Shape ``broadcast(alpha, mu, h) + (2, 2)``.

    Examples
    --------
    >>> momentum_operator(0.5, 0.25, 1.0).tolist()
    [[0.75, -0.25], [1.0, 0.0]]
    """
    a, m, c = _operator_args(alpha, mu, h)
    first = np.stack([1.0 - a * c + m, -m], axis=-1)
    second = np.stack([np.ones_like(a), np.zeros_like(a)], axis=-1)
    return np.stack([first, second], axis=-2)


def _trace_and_discriminant(
    a: np.ndarray, m: np.ndarray, c: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``b = trace A`` and ``b**2 - 4 mu``, the latter factored as ``((1-√μ)² - αh)((1+√μ)² - αh)``
    for ``mu >= 0`` so that it has no cancellation at the region's edges."""
    b = 1.0 - a * c + m
    root = np.sqrt(np.maximum(m, 0.0))
    factored = ((1.0 - root) ** 2 - a * c) * ((1.0 + root) ** 2 - a * c)
    return b, np.where(m >= 0.0, factored, b * b - 4.0 * m)


def momentum_eigenvalues(alpha: ArrayLike, mu: ArrayLike, h: ArrayLike) -> np.ndarray:
    r"""Eigenvalues of :func:`momentum_operator`, largest modulus first.

    .. math:: \lambda_\pm = \tfrac12 \left(b \pm \sqrt{b^2 - 4\mu}\right), \quad b = 1 - \alpha h + \mu,

    computed without cancellation (for a real pair the smaller one as ``mu / lambda_+``).

    Returns
    -------
    ndarray of complex
        Shape ``broadcast(alpha, mu, h) + (2,)``.

    Examples
    --------
    >>> momentum_eigenvalues(1.0, 0.25, 1.0).round(12).tolist()
    [(0.125+0.484122918276j), (0.125-0.484122918276j)]
    """
    a, m, c = _operator_args(alpha, mu, h)
    b, disc = _trace_and_discriminant(a, m, c)
    root = np.sqrt(np.abs(disc))
    big = 0.5 * (b + np.where(b >= 0.0, root, -root))  # larger modulus of a real pair
    with np.errstate(divide="ignore", invalid="ignore"):
        small = np.where(big != 0.0, m / np.where(big != 0.0, big, 1.0), 0.0)
    real = np.stack([big, small], axis=-1).astype(np.complex128)
    pair = np.stack([0.5 * (b + 1j * root), 0.5 * (b - 1j * root)], axis=-1)
    return np.where((disc < 0.0)[..., None], pair, real)


def spectral_radius(alpha: ArrayLike, mu: ArrayLike, h: ArrayLike) -> np.ndarray:
    r"""Spectral radius of the heavy-ball operator: the asymptotic rate per step on curvature ``h``.

    .. math:: \rho = \sqrt{\mu} \text{ if } b^2 \le 4 \mu, \text{ else }
       \tfrac12 \left(|b| + \sqrt{b^2 - 4 \mu}\right), \quad b = 1 - \alpha h + \mu.

    Returns
    -------
    ndarray
        Shape ``broadcast(alpha, mu, h)``.

    Examples
    --------
    >>> spectral_radius([0.01, 1.0, 3.61, 4.0], 0.81, 1.0).round(6).tolist()
    [0.9, 0.9, 0.9, 1.718719]
    """
    a, m, c = _operator_args(alpha, mu, h)
    b, disc = _trace_and_discriminant(a, m, c)
    outside = 0.5 * (np.abs(b) + np.sqrt(np.maximum(disc, 0.0)))
    return np.where(disc <= 0.0, np.sqrt(np.maximum(m, 0.0)), outside)


def robust_region(mu: ArrayLike, h: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Steps for which the heavy ball's rate on curvature ``h`` is exactly ``sqrt(mu)``.

    Parameters
    ----------
    mu : array_like
        Momentum in ``[0, 1)``.
    h : array_like
        Curvature, ``> 0``.

    Returns
    -------
    lower, upper : ndarray
        ``(1 - sqrt(mu))**2 / h`` and ``(1 + sqrt(mu))**2 / h``, shape ``broadcast(mu, h)``.

    Examples
    --------
    >>> [round(float(v), 12) for v in robust_region(0.81, 1.0)]
    [0.01, 3.61]
    >>> [float(v) for v in robust_region(0.25, 2.0)]
    [0.125, 1.125]
    """
    m, c = check_momentum("mu", mu), check_positive("h", h)
    return _robust_lower(m, c), _robust_upper(m, c)


def curvature_range(alpha: ArrayLike, mu: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Curvatures that one ``(alpha, mu)`` keeps inside its robust region.

    Returns
    -------
    h_low, h_high : ndarray
        ``(1 - sqrt(mu))**2 / alpha`` and ``(1 + sqrt(mu))**2 / alpha``, shape ``broadcast(alpha, mu)``.

    Examples
    --------
    >>> [float(v) for v in curvature_range(1.0, 0.25)]
    [0.25, 2.25]
    """
    a, m = check_positive("alpha", alpha), check_momentum("mu", mu)
    return _robust_lower(m, a), _robust_upper(m, a)  # the edges are symmetric in alpha and h


def covered_condition_number(mu: ArrayLike) -> np.ndarray:
    """Largest ``h_max / h_min`` one momentum covers: ``((1 + sqrt(mu)) / (1 - sqrt(mu)))**2``.

    Examples
    --------
    >>> float(covered_condition_number(0.25))
    9.0
    """
    return _covered(check_momentum("mu", mu))


class HeavyBallOptimum(NamedTuple):
    """The optimal heavy ball for a curvature range (arrays of the broadcast input shape)."""

    alpha: np.ndarray
    """``4 / (sqrt(h_max) + sqrt(h_min))**2``."""
    mu: np.ndarray
    """``((sqrt(kappa) - 1) / (sqrt(kappa) + 1))**2``."""
    rate: np.ndarray
    """``sqrt(mu)``, the worst-case spectral radius over ``[h_min, h_max]``."""


def heavy_ball_optimum(h_min: ArrayLike, h_max: ArrayLike) -> HeavyBallOptimum:
    """The ``(alpha, mu)`` minimizing the worst spectral radius over curvatures ``[h_min, h_max]``.

    Parameters
    ----------
    h_min, h_max : array_like
        Curvature range, ``0 < h_min <= h_max``.

    Examples
    --------
    >>> opt = heavy_ball_optimum(0.01, 1.0)
    >>> round(float(opt.mu), 6), round(float(opt.alpha), 5), round(float(opt.rate), 6)
    (0.669421, 3.30579, 0.818182)
    """
    low = check_positive("h_min", h_min)
    high = check_positive("h_max", h_max)
    if np.any(high < low):
        raise ValueError(f"h_max must be >= h_min, got h_max={high.min():g} < h_min={low.max():g}")
    return HeavyBallOptimum(
        _optimal_alpha(low, high), _optimal_mu(low, high), _optimal_rate(low, high)
    )
