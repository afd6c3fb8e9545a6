"""Argument checks shared by the public constructors: each error names the parameter, its value and the
allowed range."""

from __future__ import annotations

import math
import zipfile
from collections.abc import Sequence
from numbers import Integral, Real
from pathlib import Path
from typing import Any

import numpy as np


def check_int(name: str, value: object, *, low: int | None = None, high: int | None = None) -> int:
    """Return ``value`` as an int, or raise if it is not an integer in ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name} must be in {_interval(low, high, True, True)}, got {value}")
    return value


def check_real(
    name: str,
    value: object,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    optional: bool = False,
) -> float:
    """Return ``value`` as a finite float, or raise if it is not a real number in the given interval;
    with ``optional``, None is accepted too (and returned as is)."""
    alternative = "None or " if optional else ""
    if optional and value is None:
        return value  # type: ignore[return-value]
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(
            f"{name} must be {alternative}a real number, got {value!r} ({type(value).__name__})"
        )
    value = float(value)
    if not math.isfinite(value) or not _inside(value, low, high, low_open, high_open):
        raise ValueError(
            f"{name} must be {alternative}a finite number in "
            f"{_interval(low, high, not low_open, not high_open)}, got {value}"
        )
    return value


def check_array(
    name: str,
    value: object,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> np.ndarray:
    """Return ``value`` as a float64 array whose every element is finite and inside the interval."""
    arr = np.asarray(value, dtype=np.float64)
    bad = ~np.isfinite(arr)
    if low is not None:
        bad |= (arr <= low) if low_open else (arr < low)
    if high is not None:
        bad |= (arr >= high) if high_open else (arr > high)
    if bad.any():
        first = arr.reshape(-1)[np.flatnonzero(bad.reshape(-1))[0]]
        raise ValueError(
            f"{name} must be finite and in {_interval(low, high, not low_open, not high_open)} "
            f"elementwise, got {first} (at {int(bad.sum())} of {arr.size} positions)"
        )
    return arr


def check_choice(name: str, value: object, choices: tuple[str, ...]) -> str:
    """Return ``value`` if it is one of ``choices``, else raise naming the allowed values."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return str(value)


def check_rng(
    name: str,
    value: object,
    *,
    none: bool = True,
    seed_sequence: bool = True,
    generator: bool = True,
    sequence: bool = False,
) -> Any:
    """Return ``value`` if it is an accepted source of randomness, else raise naming what is accepted.

    Accepted: None (fresh entropy), an int ``>= 0`` (not a bool; NumPy integers are returned as int),
    a :class:`numpy.random.SeedSequence` and a :class:`numpy.random.Generator` (a bare
    ``BitGenerator`` is returned wrapped in a Generator, as :func:`numpy.random.default_rng` would),
    each unless switched off; with ``sequence``, also a non-empty sequence of such items (one per
    configuration), returned as a list with every item checked as ``name[i]``.
    """
    kinds = [
        *(["None"] if none else []),
        "an int in [0, inf)",
        *(["a numpy SeedSequence"] if seed_sequence else []),
        *(["a numpy Generator"] if generator else []),
    ]
    allowed = ", ".join(kinds[:-1]) + " or " + kinds[-1] if len(kinds) > 1 else kinds[0]
    if sequence:
        allowed += ", or a non-empty sequence of them (one per configuration)"
    if (
        sequence
        and isinstance(value, Sequence)
        and not isinstance(value, str | bytes)
        and len(value) > 0
    ):
        return [
            check_rng(
                f"{name}[{i}]", item, none=none, seed_sequence=seed_sequence, generator=generator
            )
            for i, item in enumerate(value)
        ]
    if value is None and none:
        return None
    if isinstance(value, Integral) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"{name} must be {allowed}, got {value}")
        return int(value)
    if seed_sequence and isinstance(value, np.random.SeedSequence):
        return value
    if generator and isinstance(value, np.random.Generator):
        return value
    if generator and isinstance(value, np.random.BitGenerator):
        return np.random.Generator(value)
    raise TypeError(f"{name} must be {allowed}, got {value!r} ({type(value).__name__})")


def _inside(
    x: float, low: float | None, high: float | None, low_open: bool, high_open: bool
) -> bool:
    if low is not None and (x <= low if low_open else x < low):
        return False
    return not (high is not None and (x >= high if high_open else x > high))


def _interval(low: float | None, high: float | None, low_closed: bool, high_closed: bool) -> str:
    left = "(-inf" if low is None else ("[" if low_closed else "(") + f"{low:g}"
    right = "inf)" if high is None else f"{high:g}" + ("]" if high_closed else ")")
    return f"{left}, {right}"


def read_npz(path: Path, written_by: str) -> dict[str, np.ndarray]:
    """Every array of the ``.npz`` archive at ``path``, read now (the file is closed on return); a
    file that is not one, or that cannot be read whole, is a ValueError naming the path (FileNotFoundError
    for a missing file). ``written_by`` names what writes such files, for the message."""
    with path.open("rb") as handle:
        magic = handle.read(6)
    if not magic.startswith((b"PK\x03\x04", b"PK\x05\x06")):  # a zip archive, maybe empty
        found = (
            "a single .npy array"
            if magic.startswith(b"\x93NUMPY")
            else f"no zip archive (it starts with {magic!r})"
        )
        raise ValueError(f"{path} is not an .npz archive (as {written_by} writes): it is {found}")
    try:  # the file opened here, so that it is closed however np.load fails
        with path.open("rb") as handle, np.load(handle, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise ValueError(f"{path} is not a readable .npz archive: {err}") from None
