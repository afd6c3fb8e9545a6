"""Small helpers shared by the symbolic derivations."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import NamedTuple

import sympy as sp


class Derivation(NamedTuple):
    """A result derived by sympy beside the closed form the spec states.

    The derivation holds when ``sympy.simplify(derived - stated) == 0``.
    """

    derived: sp.Expr
    stated: sp.Expr


def registry(
    table: dict[str, Callable[[], Derivation]],
) -> Callable[[str], Callable[[Callable[[], Derivation]], Callable[[], Derivation]]]:
    """Return a decorator ``@derivation(name)`` that caches a derivation and records it in ``table``."""

    def derivation(name: str) -> Callable[[Callable[[], Derivation]], Callable[[], Derivation]]:
        def register(func: Callable[[], Derivation]) -> Callable[[], Derivation]:
            cached = cache(func)
            table[name] = cached
            return cached

        return register

    return derivation


def convergent(expr: sp.Expr) -> sp.Expr:
    """Replace each ``Piecewise`` that sympy returns for an infinite sum by its first branch.

    For the geometric series summed here the first branch is the value under the convergence condition
    (``|ratio| < 1``), which holds for every staleness law and every ``|B| <= 1``.
    """
    return sp.piecewise_fold(expr).replace(
        lambda e: isinstance(e, sp.Piecewise), lambda e: e.args[0][0]
    )
