"""The bridge from sympy expressions to vectorized NumPy functions.

The other modules state each result once as a sympy expression and get its numeric version here, through
:func:`sympy.lambdify` with ``modules="numpy"``. The functions broadcast their arguments like NumPy
ufuncs and always return an array of the broadcast shape (a constant expression too), in float64 unless
the inputs are complex.

Examples
--------
>>> import sympy as sp
>>> a, b = sp.symbols("a b")
>>> f = lambdify_numpy(a * b + 1, (a, b))
>>> f([1.0, 2.0], 3.0)
array([4., 7.])
>>> lambdify_numpy(sp.Integer(2), (a,))([1.0, 2.0, 3.0])
array([2., 2., 2.])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cached_property

import numpy as np
import sympy as sp
from numpy.typing import ArrayLike

__all__ = ["LazyLambdified", "lambdify_numpy"]


def lambdify_numpy(
    expr: sp.Expr, args: Sequence[sp.Symbol], *, modules: str | Sequence[str] = "numpy"
) -> Callable[..., np.ndarray]:
    """Compile ``expr`` into a NumPy function of ``args`` that broadcasts like a ufunc.

    Parameters
    ----------
    expr : sympy.Expr
        The expression; every free symbol must be among ``args``.
    args : sequence of sympy.Symbol
        The positional arguments of the returned function, in order.
    modules : str or sequence of str, default "numpy"
        Passed to :func:`sympy.lambdify`; ``["scipy", "numpy"]`` for special functions (digamma).

    Returns
    -------
    callable
        ``f(*values) -> ndarray`` of shape ``np.broadcast_shapes(*shapes of values)``; float64 for real
        inputs, complex128 when an input is complex.

    Raises
    ------
    ValueError
        If ``expr`` has a free symbol not in ``args``.
    """
    args = tuple(args)
    missing = expr.free_symbols - set(args)
    if missing:
        names = ", ".join(sorted(str(s) for s in missing))
        raise ValueError(f"expr has free symbols not in args: {names}")
    compiled = sp.lambdify(args, expr, modules=modules)

    def vectorized(*values: ArrayLike) -> np.ndarray:
        arrays = [np.asarray(v) for v in values]
        arrays = [a if np.iscomplexobj(a) else a.astype(np.float64) for a in arrays]
        out = np.asarray(compiled(*arrays))
        if not np.iscomplexobj(out):
            out = out.astype(np.float64)
        shape = np.broadcast_shapes(out.shape, *(a.shape for a in arrays))
        return np.array(np.broadcast_to(out, shape))

    vectorized.__doc__ = f"Vectorized NumPy version of ``{expr}`` in ({', '.join(map(str, args))})."
    return vectorized


class LazyLambdified:
    """A vectorized NumPy function compiled from an expression on its first call.

    Parameters
    ----------
    expr : sympy.Expr or callable
        The expression, or a function of no arguments that builds it (for expressions that are slow to
        derive: nothing is built until the first call).
    args : sequence of sympy.Symbol
        The positional arguments, as for :func:`lambdify_numpy`.
    modules : str or sequence of str, default "numpy"
        As for :func:`lambdify_numpy`.

    Examples
    --------
    >>> import sympy as sp
    >>> a = sp.Symbol("a")
    >>> square = LazyLambdified(lambda: a**2, (a,))
    >>> square(3.0)
    array(9.)
    """

    def __init__(
        self,
        expr: sp.Expr | Callable[[], sp.Expr],
        args: Sequence[sp.Symbol],
        *,
        modules: str | Sequence[str] = "numpy",
    ) -> None:
        self._expr = expr
        self.args = tuple(args)
        self.modules = modules

    @cached_property
    def expr(self) -> sp.Expr:
        """The expression (built on first access)."""
        return self._expr() if callable(self._expr) else self._expr

    @cached_property
    def function(self) -> Callable[..., np.ndarray]:
        """The compiled function."""
        return lambdify_numpy(self.expr, self.args, modules=self.modules)

    def __call__(self, *values: ArrayLike) -> np.ndarray:
        return self.function(*values)
