r"""Time per update of synchronous, asynchronous and compute-group training [AbM]_ [OMV]_.

``M`` workers with i.i.d. ``Exp(1)`` compute times (time is measured in mean compute times), no network
or server cost. The expected maximum of ``k`` such times is the harmonic number

.. math:: E\left[\max_{i \le k} X_i\right] = H_k = \sum_{j=1}^k \frac1j,

since the spacings of the order statistics are independent ``Exp(k), Exp(k - 1), ..., Exp(1)``
(equivalently ``int_0^inf 1 - (1 - e^{-x})^k dx``); e.g. ``H_16 = 3.3807``.

Compute groups: ``g`` groups of ``k = M/g`` workers, synchronous inside a group (one update aggregates
the group's ``k`` gradients and waits for the slowest: ``H_k`` on average), asynchronous across groups.
The ``g`` groups are independent renewal processes of mean cycle ``H_k``, so updates arrive at rate
``g / H_k`` and

.. math:: T_g = \frac{H_{M/g}}{g} \quad \text{(time per update)}, \qquad
   T_1 = H_M \text{ (synchronous)}, \qquad T_M = \frac1M \text{ (asynchronous)}.

Convention: hardware efficiency is the time per update relative to fully synchronous training,
``HE(g) = T_g / T_1 = H_{M/g} / (g H_M)`` (lower is faster; ``HE(1) = 1``); with the statistical
efficiency ``SE(g) = I_g / I_1`` (updates to target relative to ``g = 1``) the time to target relative to
synchronous training is ``HE(g) SE(g)`` (theory/README.md §4). Groups play the role of workers for staleness:
their implicit momentum is ``1 - 1/g`` (:func:`theory.staleness.implicit_momentum`).

References
----------
.. [AbM] I. Mitliagkas, C. Zhang, S. Hadjis, C. Ré, "Asynchrony begets Momentum, with an Application to
   Deep Learning", Allerton 2016, arXiv:1605.09774.
.. [OMV] S. Hadjis, C. Zhang, I. Mitliagkas, D. Iter, C. Ré, "Omnivore: An Optimizer for Multi-device
   Deep Learning on CPUs and GPUs", arXiv:1606.04487.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np
import sympy as sp
from numpy.typing import ArrayLike

from theory._derive import Derivation, registry
from theory._validate import check_array, check_workers
from theory.numeric import LazyLambdified
from theory.symbols import M, k

__all__ = [
    "DERIVATIONS",
    "EXPECTED_MAX",
    "expected_max_exponential",
    "hardware_efficiency",
    "time_per_update",
]

EXPECTED_MAX = sp.harmonic(k)
"""``E[max of k i.i.d. Exp(1)] = H_k``."""
ASYNC_TIME = 1 / M
"""Time per update of ``M`` asynchronous workers."""

DERIVATIONS: dict[str, Callable[[], Derivation]] = {}
"""Name -> cached function returning ``Derivation(derived, stated)``."""
derivation = registry(DERIVATIONS)

_xs = sp.Symbol("x", positive=True)


def expected_max_integral(size: int) -> Derivation:
    """``E max = int_0^inf P(max > x) dx = int_0^inf 1 - (1 - e^{-x})**size dx`` against ``H_size``."""
    integral = sp.integrate(1 - (1 - sp.exp(-_xs)) ** size, (_xs, 0, sp.oo))
    return Derivation(integral, EXPECTED_MAX.subs(k, size))


for _size in range(1, 7):
    derivation(f"expected_max_{_size}")(partial(expected_max_integral, _size))


@derivation("expected_max_spacings")
def derive_expected_max_spacings() -> Derivation:
    """For every ``k``: the ``i``-th spacing (``i = 0..k-1``) is ``Exp(k - i)``, of mean ``1/(k - i)``."""
    i = sp.Symbol("i", integer=True, nonnegative=True)
    spacings = sp.Sum(1 / (k - i), (i, 0, k - 1)).change_index(i, k - i)
    return Derivation(spacings.doit(), EXPECTED_MAX)


@derivation("async_time")
def derive_async_time() -> Derivation:
    """The next write is the minimum of ``M`` memoryless clocks: ``int_0^inf P(min > x) dx = 1/M``."""
    return Derivation(sp.integrate(sp.exp(-_xs) ** M, (_xs, 0, sp.oo)), ASYNC_TIME)


_harmonic = LazyLambdified(EXPECTED_MAX.rewrite(sp.polygamma), (k,), modules=["scipy", "numpy"])


def expected_max_exponential(size: ArrayLike, rate: ArrayLike = 1.0) -> np.ndarray:
    r"""Expected maximum of ``size`` i.i.d. ``Exp(rate)`` times: ``H_size / rate``.

    ``H_k = psi(k + 1) + gamma_E`` (lambdified from sympy's ``harmonic``), so real ``size`` interpolates.

    Parameters
    ----------
    size : array_like
        Number of times ``k >= 0`` (``H_0 = 0``).
    rate : array_like, default 1
        Rate of the exponential, ``> 0`` (1 / mean time).

    Returns
    -------
    ndarray
        Shape ``broadcast(size, rate)``, in the units of ``1/rate``.

    Examples
    --------
    >>> round(float(expected_max_exponential(16)), 4)
    3.3807
    """
    size = check_array("size", size, low=0.0)
    return _harmonic(size) / check_array("rate", rate, low=0.0, low_open=True)


def _groups(workers: ArrayLike, groups: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Validate integer ``M >= 1`` and ``g`` in ``[1, M]`` dividing ``M``; broadcast them."""
    m = check_workers("workers", workers, integer=True)
    g = check_array("groups", groups, low=1.0, integer=True)
    m, g = np.broadcast_arrays(m, g)
    bad = (g > m) | (np.mod(m, g) != 0)
    if bad.any():
        raise ValueError(
            f"groups must divide workers (1 <= groups <= workers), got groups={g[bad].flat[0]:g} "
            f"for workers={m[bad].flat[0]:g}"
        )
    return m, g


def time_per_update(workers: ArrayLike, groups: ArrayLike) -> np.ndarray:
    r"""Expected time per update with ``M`` workers in ``g`` compute groups: ``T_g = H_{M/g} / g``.

    ``groups = 1`` is synchronous (``H_M``, each update aggregates ``M`` gradients); ``groups = M`` is
    asynchronous (``1/M``, one gradient per update).

    Parameters
    ----------
    workers : array_like of int
        ``M >= 1``.
    groups : array_like of int
        ``g`` in ``[1, M]``, dividing ``M``.

    Returns
    -------
    ndarray
        Shape ``broadcast(workers, groups)``, in mean compute times.

    Examples
    --------
    >>> time_per_update(16, [1, 4, 16]).round(4).tolist()
    [3.3807, 0.5208, 0.0625]
    """
    m, g = _groups(workers, groups)
    return _harmonic(m / g) / g


def hardware_efficiency(workers: ArrayLike, groups: ArrayLike) -> np.ndarray:
    r"""Time per update relative to synchronous training: ``HE(g) = T_g / T_1 = H_{M/g} / (g H_M)``.

    Lower is faster; ``HE(1) = 1``, ``HE(M) = 1 / (M H_M)``. Multiply by the statistical efficiency
    ``SE(g) = I_g / I_1`` for the time to target relative to synchronous training.

    Examples
    --------
    >>> hardware_efficiency(16, [1, 4, 16]).round(4).tolist()
    [1.0, 0.1541, 0.0185]
    """
    m, g = _groups(workers, groups)
    return _harmonic(m / g) / (g * _harmonic(m))
