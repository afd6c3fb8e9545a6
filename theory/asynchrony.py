r"""Optimal explicit momentum under the implicit momentum of asynchrony [AbM]_.

On a quadratic with Hessian eigenvalues ``lambda_i``, geometric staleness (implicit momentum ``mu_S``)
and explicit momentum ``mu_L``, the expected iterate obeys, one eigen-direction at a time
(:data:`theory.staleness.EXPLICIT_RECURSION` with ``E grad f(w_t) = lambda E[w_t]``),

.. math:: E[w_{t+1} - w_t] = (\mu_L + \mu_S) E[w_t - w_{t-1}] - \mu_L \mu_S E[w_{t-1} - w_{t-2}]
   - (1 - \mu_S) \alpha \lambda E[w_t].

Its characteristic polynomial is the monic cubic

.. math:: \chi(x) = x^3 - z x^2 + (\mu_S + \mu_L + \mu_S \mu_L) x - \mu_S \mu_L, \quad
   z = 1 + \mu_S + \mu_L - \alpha (1 - \mu_S) \lambda,

and ``g(t) = -t**3 chi(1/t) = mu_S mu_L t**3 - (mu_S + mu_L + mu_S mu_L) t**2 + z t - 1`` is the form
of [AbM]_ in reciprocal roots. The expected iterate converges as ``gamma**t`` with

.. math:: \gamma = \max_i \max_{\chi_i(x) = 0} |x| = \max_i 1/|t^*_i|,

``t*_i`` the smallest-magnitude root of ``g_i``. Working with ``chi`` handles ``mu_S mu_L = 0`` (where
``g`` loses degree: a root of ``g`` at infinity is a zero root of ``chi``) without special cases; at
``mu_S = 0`` ``chi`` is ``x`` times the heavy ball's characteristic polynomial, at ``mu_L = 0`` it is the
heavy ball with momentum ``mu_S`` and step ``alpha (1 - mu_S)``.

Minimizing ``gamma`` over ``(alpha, mu_L)`` gives the optimal explicit momentum as a function of
``mu_S = 1 - 1/M``; the predicted statistical penalty of ``M`` workers against one is
``log gamma(1) / log gamma(M)`` (updates to reach the same accuracy). ``gamma`` describes the *mean*
iterate: at its optimum single runs can diverge (theory/README.md §3).

References
----------
.. [AbM] I. Mitliagkas, C. Zhang, S. Hadjis, C. Ré, "Asynchrony begets Momentum, with an Application to
   Deep Learning", Allerton 2016, arXiv:1605.09774.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, NamedTuple

import numpy as np
import sympy as sp
from numpy.typing import ArrayLike

from theory import momentum, staleness
from theory._derive import Derivation, registry
from theory._validate import (
    check_array,
    check_momentum,
    check_positive,
    check_spectrum,
    check_workers,
)
from theory.symbols import alpha, dw_t, dw_t1, grad_t, h, lam, mu, mu_L, mu_S, t, x

__all__ = [
    "CHARPOLY",
    "DERIVATIONS",
    "RECIPROCAL_POLY",
    "ExplicitMomentumOptimum",
    "additive_rule",
    "expected_rate",
    "optimal_explicit_momentum",
    "predicted_penalty",
]

# --- Stated closed forms ([AbM] Sec. IV; theory/README.md §3) ----------------------------------------
Z = 1 + mu_S + mu_L - alpha * (1 - mu_S) * lam
"""``z`` of one eigen-direction."""
RECIPROCAL_POLY = mu_S * mu_L * t**3 - (mu_S + mu_L + mu_S * mu_L) * t**2 + Z * t - 1
"""``g(t)``: its smallest-magnitude root is ``1/gamma`` of that direction."""
CHARPOLY = x**3 - Z * x**2 + (mu_S + mu_L + mu_S * mu_L) * x - mu_S * mu_L
"""``chi(x)``: characteristic polynomial of the expected recursion."""

DERIVATIONS: dict[str, Callable[[], Derivation]] = {}
"""Name -> cached function returning ``Derivation(derived, stated)``."""
derivation = registry(DERIVATIONS)


@derivation("characteristic_polynomial")
def derive_characteristic_polynomial() -> Derivation:
    """Ansatz ``E[w_s] = x**s`` in the expected recursion, divided by ``x**(t-2)``."""
    w_next, w_now, w_prev, w_prev2 = x**3, x**2, x, sp.Integer(1)
    rhs = staleness.EXPLICIT_RECURSION.subs(
        {dw_t: w_now - w_prev, dw_t1: w_prev - w_prev2, grad_t: lam * w_now}
    )
    return Derivation(sp.expand(w_next - w_now - rhs), CHARPOLY)


@derivation("reciprocal_root_form")
def derive_reciprocal_root_form() -> Derivation:
    """``g(t) = -t**3 chi(1/t)``: the roots of ``g`` are the reciprocals of those of ``chi``."""
    chi = derive_characteristic_polynomial().derived
    return Derivation(sp.expand(-(t**3) * chi.subs(x, 1 / t)), RECIPROCAL_POLY)


@derivation("heavy_ball_limit")
def derive_heavy_ball_limit() -> Derivation:
    """``mu_S = 0``: ``x`` times the heavy ball's polynomial with momentum ``mu_L``, curvature ``lambda``."""
    stated = x * momentum.CHARPOLY.subs({mu: mu_L, h: lam})
    return Derivation(CHARPOLY.subs(mu_S, 0), sp.expand(stated))


@derivation("implicit_only_limit")
def derive_implicit_only_limit() -> Derivation:
    """``mu_L = 0``: the heavy ball with momentum ``mu_S`` and step ``alpha (1 - mu_S)``."""
    stated = x * momentum.CHARPOLY.subs({alpha: alpha * (1 - mu_S), mu: mu_S, h: lam})
    return Derivation(CHARPOLY.subs(mu_L, 0), sp.expand(stated))


# --- Numeric versions ---------------------------------------------------------------------------------
def _cubic_roots(a2: ArrayLike, a1: ArrayLike, a0: ArrayLike) -> np.ndarray:
    """Roots of ``x**3 + a2 x**2 + a1 x + a0`` (real coefficients, broadcast), shape ``(..., 3)``.

    Closed form on the depressed cubic ``y**3 + P y + Q`` (``x = y - a2/3``): Cardano without
    cancellation when ``(Q/2)**2 + (P/3)**3 > 0`` (one real root, a complex pair), the trigonometric form
    otherwise (three real roots). One Newton step polishes each root where it lowers ``|chi|``.
    """
    a2, a1, a0 = np.broadcast_arrays(
        np.asarray(a2, np.float64), np.asarray(a1, np.float64), np.asarray(a0, np.float64)
    )
    shift = a2 / 3.0
    P = a1 - a2 * shift
    Q = (2.0 * shift * shift - a1) * shift + a0
    disc = (0.5 * Q) ** 2 + (P / 3.0) ** 3
    with np.errstate(divide="ignore", invalid="ignore"):
        # One real root: u = cbrt(-Q/2 - sign(Q) sqrt(disc)), v = -P/(3u).
        u = np.cbrt(-0.5 * Q - np.where(Q >= 0.0, 1.0, -1.0) * np.sqrt(np.maximum(disc, 0.0)))
        v = np.where(u != 0.0, -P / (3.0 * np.where(u != 0.0, u, 1.0)), 0.0)
        real = u + v
        imag = 0.5 * np.sqrt(3.0) * (u - v)
        cardano = np.stack([real + 0j, -0.5 * real + 1j * imag, -0.5 * real - 1j * imag], axis=-1)
        # Three real roots: y_k = 2 sqrt(-P/3) cos(theta/3 - 2 pi k/3).
        radius = np.sqrt(np.maximum(-P / 3.0, 0.0))
        cosine = np.where(radius > 0.0, -0.5 * Q / np.where(radius > 0.0, radius, 1.0) ** 3, 0.0)
        theta = np.arccos(np.clip(cosine, -1.0, 1.0))
        k = np.arange(3)
        trig = 2.0 * radius[..., None] * np.cos((theta[..., None] - 2.0 * np.pi * k) / 3.0) + 0j
    roots = np.where((disc > 0.0)[..., None], cardano, trig) - shift[..., None]
    c2, c1, c0 = (c[..., None] for c in (a2, a1, a0))
    value = ((roots + c2) * roots + c1) * roots + c0
    slope = (3.0 * roots + 2.0 * c2) * roots + c1
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        polished = roots - value / np.where(slope != 0.0, slope, 1.0)
        new_value = ((polished + c2) * polished + c1) * polished + c0
        better = (slope != 0.0) & (np.abs(new_value) < np.abs(value))
    return np.where(better, polished, roots)


def _direction_rate(
    a: np.ndarray | float,
    m_l: np.ndarray | float,
    m_s: np.ndarray | float,
    value: np.ndarray | float,
) -> np.ndarray:
    """Largest root modulus of ``chi`` for eigenvalue(s) ``value``, broadcast with the parameters."""
    z = 1.0 + m_s + m_l - a * (1.0 - m_s) * value
    roots = _cubic_roots(-z, m_s + m_l + m_s * m_l, -m_s * m_l)
    return np.abs(roots).max(axis=-1)


def _rate(
    a: np.ndarray | float, m_l: np.ndarray | float, m_s: np.ndarray | float, eig: np.ndarray
) -> np.ndarray:
    """:func:`expected_rate` without validation (the optimizer's inner loop)."""
    a, m_l, m_s = np.broadcast_arrays(a, m_l, m_s)
    gamma = np.zeros(a.shape)
    for value in eig:
        gamma = np.maximum(gamma, _direction_rate(a, m_l, m_s, value))
    return gamma


def expected_rate(
    alpha: ArrayLike, mu_l: ArrayLike, mu_s: ArrayLike, eigenvalues: ArrayLike
) -> np.ndarray:
    r"""Rate ``gamma`` of the expected iterate under geometric staleness and explicit momentum.

    .. math:: \gamma = \max_i \max \{ |x| : \chi_i(x) = 0 \}, \quad
       \chi_i(x) = x^3 - z_i x^2 + (\mu_S + \mu_L + \mu_S\mu_L) x - \mu_S\mu_L,

    ``z_i = 1 + mu_S + mu_L - alpha (1 - mu_S) lambda_i``; equivalently ``max_i 1/|t*_i|`` over the
    smallest-magnitude roots of [AbM]_'s ``g_i(t)``. ``E[w_t] - w*`` shrinks like ``gamma**t`` per update
    (``gamma >= 1``: the mean diverges).

    Parameters
    ----------
    alpha : array_like
        Step size, ``> 0``.
    mu_l : array_like
        Explicit momentum (any real).
    mu_s : array_like
        Implicit momentum ``1 - 1/M`` in ``[0, 1)``.
    eigenvalues : array_like, shape (n,)
        Hessian eigenvalues of the quadratic, ``> 0``.

    Returns
    -------
    ndarray
        Shape ``broadcast(alpha, mu_l, mu_s)``: e.g. ``alpha[:, None]`` and ``mu_l[None, :]`` give an
        ``(n_alpha, n_mu)`` table.

    Examples
    --------
    With ``mu_S = 0`` this is the heavy ball's worst spectral radius (``0.818182`` at its optimum for
    ``kappa = 100``):

    >>> from theory.momentum import heavy_ball_optimum
    >>> opt = heavy_ball_optimum(0.01, 1.0)
    >>> round(float(expected_rate(opt.alpha, opt.mu, 0.0, [0.01, 0.1, 1.0])), 6)
    0.818182
    """
    return _rate(
        check_positive("alpha", alpha),
        check_array("mu_l", mu_l),
        check_momentum("mu_s", mu_s),
        check_spectrum("eigenvalues", eigenvalues),
    )


class ExplicitMomentumOptimum(NamedTuple):
    """The ``(mu_L, alpha)`` minimizing :func:`expected_rate`, and the rate there (arrays of the shape
    of ``mu_s``)."""

    mu_l: np.ndarray
    alpha: np.ndarray
    rate: np.ndarray


_MU_RANGE = (-0.999, 0.999)
_STEP_RANGE = (np.log(1e-4), np.log(8.0))
"""Search range of ``log(alpha (1 - mu_S) lambda_max)``: the mean is unstable beyond
``alpha (1 - mu_S) lambda_max = 2 (1 + mu_L)(1 + mu_S) < 8`` (where ``chi(-1) = 0``)."""
_GRID = 121
_ROUNDS = 14
_LOCAL = np.linspace(-2.0, 2.0, 17)


def _minimize_axis(
    objective: Callable[[np.ndarray], np.ndarray],
    rows: int,
    bounds: tuple[float, float],
    values: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Minimize ``objective`` along one axis for ``rows`` independent problems at once.

    ``objective(X)`` maps candidates of shape ``(rows, m)`` to values of the same shape. Over given
    ``values``: the best of them. Otherwise: a uniform grid of ``_GRID`` points on ``bounds``, then
    ``_ROUNDS`` rounds of a local grid of ±2 spacings around the best point, the spacing shrinking 4x
    a round (bounded refinement that needs no smoothness: ``gamma`` has kinks where roots collide).
    Returns the argmin and the minimum, each shape ``(rows,)``.
    """

    def best(candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        scores = objective(candidates)
        index = np.argmin(scores, axis=1)[:, None]
        return (
            np.take_along_axis(candidates, index, axis=1)[:, 0],
            np.take_along_axis(scores, index, axis=1)[:, 0],
        )

    if values is not None:
        return best(np.broadcast_to(values, (rows, values.size)))
    low, high = bounds
    where, score = best(np.broadcast_to(np.linspace(low, high, _GRID), (rows, _GRID)))
    width = (high - low) / (_GRID - 1)
    for _ in range(_ROUNDS):
        where, score = best(np.clip(where[:, None] + width * _LOCAL, low, high))
        width /= 4.0
    return where, score


def _optimize_one(
    mu_s: float, eig: np.ndarray, mu_grid: np.ndarray | None, alpha_grid: np.ndarray | None
) -> tuple[float, float, float]:
    """Minimize ``gamma`` over the full spectrum by an active set of eigenvalues.

    ``gamma`` over a subset of the spectrum is a lower bound of the full one, so an optimum of the
    subset at which no other eigenvalue's rate is larger is an optimum of the whole; otherwise the
    worst eigenvalue joins the subset. The set starts at ``{lambda_min, lambda_max}`` and rarely grows.
    """
    active = np.unique([eig.min(), eig.max()])
    while True:
        m_l, a, rate = _search(mu_s, active, eig.max(), mu_grid, alpha_grid)
        per_direction = _direction_rate(a, m_l, mu_s, eig)
        worst = int(np.argmax(per_direction))
        if per_direction[worst] <= rate * (1.0 + 1e-12) or eig[worst] in active:
            return m_l, a, float(per_direction[worst])
        active = np.append(active, eig[worst])


def _search(
    mu_s: float,
    eig: np.ndarray,
    eig_max: float,
    mu_grid: np.ndarray | None,
    alpha_grid: np.ndarray | None,
) -> tuple[float, float, float]:
    """Minimize ``gamma`` over ``(mu_L, log of the effective step)`` by nested 1-D searches."""
    scale = (1.0 - mu_s) * eig_max  # alpha = exp(s) / scale, s = log of the effective step

    def rate(step: np.ndarray, m_l: np.ndarray) -> np.ndarray:
        return _rate(np.exp(step) / scale, m_l, mu_s, eig)

    steps = None if alpha_grid is None else np.log(alpha_grid * scale)
    # The discrete axis (if any) is the outer one, so that each of its values gets its own inner optimum.
    mu_outer = alpha_grid is None or mu_grid is not None
    outer_values, inner_values = (mu_grid, steps) if mu_outer else (steps, mu_grid)
    outer_bounds, inner_bounds = (_MU_RANGE, _STEP_RANGE) if mu_outer else (_STEP_RANGE, _MU_RANGE)

    def inner(outer: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        flat = outer.reshape(-1, 1)

        def objective(candidates: np.ndarray) -> np.ndarray:
            return rate(candidates, flat) if mu_outer else rate(flat, candidates)

        where, score = _minimize_axis(objective, flat.shape[0], inner_bounds, inner_values)
        return where.reshape(outer.shape), score.reshape(outer.shape)

    best_outer, _ = _minimize_axis(lambda o: inner(o)[1], 1, outer_bounds, outer_values)
    best_inner, best_rate = inner(best_outer)
    m_l, step = (best_outer, best_inner) if mu_outer else (best_inner, best_outer)
    if alpha_grid is None:
        a = float(np.exp(step[0]) / scale)
    else:  # the grid's own value, not its round trip through the log
        a = float(alpha_grid[np.argmin(np.abs(steps - step[0]))])
    return float(m_l[0]), a, float(best_rate[0])


def optimal_explicit_momentum(
    mu_s: ArrayLike,
    eigenvalues: ArrayLike,
    *,
    mu_grid: ArrayLike | None = None,
    alpha_grid: ArrayLike | None = None,
) -> ExplicitMomentumOptimum:
    r"""The explicit momentum and step minimizing the expected-iterate rate, per implicit momentum.

    .. math:: (\mu_L^*, \alpha^*) = \arg\min_{\mu_L, \alpha} \gamma(\alpha, \mu_L; \mu_S, \lambda)

    over ``mu_L`` in ``[-0.999, 0.999]`` and ``alpha (1 - mu_S) lambda_max`` in ``[1e-4, 8]`` (log
    scale), or restricted to the given grids: with both grids the best grid point (to compare with a
    simulator's grid search), with one grid the other parameter is continuous. Continuous axes are
    searched by a grid then a bounded zoom refinement (:func:`_minimize_axis`), to about ``1e-10``.

    Parameters
    ----------
    mu_s : array_like
        Implicit momentum(s) ``1 - 1/M`` in ``[0, 1)``; each is solved separately.
    eigenvalues : array_like, shape (n,)
        Hessian eigenvalues, ``> 0``.
    mu_grid : array_like, optional
        Allowed explicit momenta (1-D).
    alpha_grid : array_like, optional
        Allowed steps (1-D, ``> 0``).

    Returns
    -------
    ExplicitMomentumOptimum
        ``(mu_l, alpha, rate)``, each of the shape of ``mu_s``.

    Examples
    --------
    At ``mu_S = 0`` it is the heavy-ball optimum (``mu* = 0.669421``, ``alpha* = 3.30579``):

    >>> opt = optimal_explicit_momentum(0.0, [0.01, 1.0])
    >>> round(float(opt.mu_l), 5), round(float(opt.alpha), 4), round(float(opt.rate), 6)
    (0.66942, 3.3058, 0.818182)
    """
    mu_s = check_momentum("mu_s", mu_s)
    eig = check_spectrum("eigenvalues", eigenvalues)
    grids = {}
    for name, grid, check in (
        ("mu_grid", mu_grid, check_array),
        ("alpha_grid", alpha_grid, check_positive),
    ):
        if grid is not None:
            grids[name] = np.unique(check(name, grid).reshape(-1))
            if grids[name].size == 0:
                raise ValueError(f"{name} must not be empty")
    results = np.array(
        [
            _optimize_one(float(m), eig, grids.get("mu_grid"), grids.get("alpha_grid"))
            for m in mu_s.reshape(-1)
        ]
    ).reshape(*mu_s.shape, 3)
    return ExplicitMomentumOptimum(results[..., 0], results[..., 1], results[..., 2])


def additive_rule(mu_star: ArrayLike, mu_s: ArrayLike) -> np.ndarray:
    """The additive rule for explicit momentum: ``mu_L = mu* - mu_S``.

    It reads "momenta add" literally and overshoots at high asynchrony (theory/README.md §3); compare with
    :func:`optimal_explicit_momentum`, and note that the total-momentum estimator's fixed point is
    ``1 - M (1 - mu*)`` instead (theory/README.md §10).

    Examples
    --------
    >>> additive_rule(0.9, [0.0, 0.5, 0.75]).round(12).tolist()
    [0.9, 0.4, 0.15]
    """
    return check_momentum("mu_star", mu_star) - check_momentum("mu_s", mu_s)


def predicted_penalty(
    workers: ArrayLike,
    eigenvalues: ArrayLike,
    *,
    rule: Literal["optimal", "additive", "fixed"] = "optimal",
) -> np.ndarray:
    r"""Predicted statistical penalty of ``M`` asynchronous workers against one.

    .. math:: \frac{\log \gamma(1)}{\log \gamma(M)}, \quad \mu_S = 1 - 1/M,

    the ratio of the numbers of updates the expected iterate needs to shrink by the same factor.
    ``gamma(1)`` is at the heavy-ball optimum (``mu_S = 0``); ``gamma(M)`` at the explicit momentum the
    rule gives, with the step optimized for it: ``"optimal"`` (:func:`optimal_explicit_momentum`),
    ``"additive"`` (``mu_L = mu* - mu_S``, ``mu*`` the optimum at ``M = 1``) or ``"fixed"``
    (``mu_L = mu*``, no compensation).

    Parameters
    ----------
    workers : array_like
        Numbers of workers ``M >= 1``.
    eigenvalues : array_like, shape (n,)
        Hessian eigenvalues, ``> 0``.
    rule : {"optimal", "additive", "fixed"}

    Returns
    -------
    ndarray
        Shape of ``workers``; ``1`` at ``M = 1``, ``inf`` if the mean cannot converge.

    Examples
    --------
    >>> predicted_penalty([1, 4], [0.2, 1.0]).round(2).tolist()
    [1.0, 4.86]
    """
    workers = check_workers("workers", workers)
    if rule not in ("optimal", "additive", "fixed"):
        raise ValueError(f"rule must be 'optimal', 'additive' or 'fixed', got {rule!r}")
    eig = check_spectrum("eigenvalues", eigenvalues)
    single = optimal_explicit_momentum(0.0, eig)
    mu_s = staleness.implicit_momentum(workers)
    if rule == "optimal":
        rate = optimal_explicit_momentum(mu_s, eig).rate
    else:
        mu_l = (
            single.mu_l - mu_s if rule == "additive" else np.broadcast_to(single.mu_l, mu_s.shape)
        )
        rate = np.array(
            [
                optimal_explicit_momentum(m_s, eig, mu_grid=[m_l]).rate
                for m_s, m_l in zip(mu_s.reshape(-1), mu_l.reshape(-1), strict=True)
            ]
        ).reshape(mu_s.shape)
    with np.errstate(divide="ignore"):
        return np.where(rate < 1.0, np.log(single.rate) / np.log(np.minimum(rate, 1.0)), np.inf)
