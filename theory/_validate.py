"""Argument checks for the numeric functions of :mod:`theory`.

Each error names the parameter, the offending value and the allowed range. (The package keeps its own
checks so that it never imports :mod:`asyncsim`.)
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def _interval(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    left = "(-inf" if low is None else ("(" if low_open else "[") + f"{low:g}"
    right = "inf)" if high is None else f"{high:g}" + (")" if high_open else "]")
    return f"{left}, {right}"


def check_array(
    name: str,
    value: ArrayLike,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    integer: bool = False,
) -> np.ndarray:
    """Return ``value`` as a float64 array whose elements are finite and inside the interval.

    Raises
    ------
    ValueError
        Naming ``name``, the first offending value and the allowed interval.
    """
    arr = np.asarray(value, dtype=np.float64)
    bad = ~np.isfinite(arr)
    with np.errstate(invalid="ignore"):
        if low is not None:
            bad |= (arr <= low) if low_open else (arr < low)
        if high is not None:
            bad |= (arr >= high) if high_open else (arr > high)
        if integer:
            bad |= arr != np.round(arr)
    if bad.any():
        first = arr.reshape(-1)[np.flatnonzero(bad.reshape(-1))[0]]
        kind = "integers" if integer else "finite numbers"
        raise ValueError(
            f"{name} must be {kind} in {_interval(low, high, low_open, high_open)}, got {first:g}"
        )
    return arr


def check_momentum(name: str, value: ArrayLike) -> np.ndarray:
    """A momentum in ``[0, 1)``."""
    return check_array(name, value, low=0.0, high=1.0, high_open=True)


def check_positive(name: str, value: ArrayLike) -> np.ndarray:
    """A strictly positive finite value (step size, curvature, eigenvalue)."""
    return check_array(name, value, low=0.0, low_open=True)


def check_workers(name: str, value: ArrayLike, *, integer: bool = False) -> np.ndarray:
    """A number of workers ``M >= 1``."""
    return check_array(name, value, low=1.0, integer=integer)


def check_spectrum(name: str, value: ArrayLike) -> np.ndarray:
    """A non-empty one-dimensional array of positive eigenvalues."""
    arr = check_positive(name, value)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array, got shape {arr.shape}")
    return arr
