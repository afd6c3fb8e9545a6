"""theory.numeric: lambdified expressions broadcast like ufuncs."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
from numpy.testing import assert_allclose

from theory.numeric import LazyLambdified, lambdify_numpy

a, b = sp.symbols("a b", real=True)


def test_broadcasts_and_returns_float_arrays() -> None:
    f = lambdify_numpy(a * b + sp.sqrt(a), (a, b))
    out = f(np.array([1.0, 4.0])[:, None], np.arange(3))
    assert out.shape == (2, 3) and out.dtype == np.float64
    assert_allclose(out, np.sqrt([[1.0], [4.0]]) + np.array([[1.0], [4.0]]) * np.arange(3))
    assert f(4, 1).shape == ()


def test_constant_expression_broadcasts() -> None:
    f = lambdify_numpy(sp.Rational(1, 2), (a, b))
    assert_allclose(f(np.zeros(3), np.zeros((2, 1))), np.full((2, 3), 0.5))


def test_complex_inputs_stay_complex() -> None:
    f = lambdify_numpy(sp.sqrt(a), (a,))
    assert_allclose(f(np.array([-4.0 + 0j])), [2j])


def test_special_functions_through_scipy() -> None:
    k = sp.Symbol("k", positive=True)
    f = lambdify_numpy(sp.harmonic(k).rewrite(sp.polygamma), (k,), modules=["scipy", "numpy"])
    assert_allclose(f([1.0, 2.0, 3.0]), [1.0, 1.5, 11 / 6])


def test_missing_symbol_is_an_error() -> None:
    with pytest.raises(ValueError, match="free symbols not in args: b"):
        lambdify_numpy(a + b, (a,))


def test_lazy_builds_on_first_call_only() -> None:
    calls = []

    def build() -> sp.Expr:
        calls.append(1)
        return a**2

    square = LazyLambdified(build, (a,))
    assert calls == []
    assert_allclose(square([2.0, 3.0]), [4.0, 9.0])
    assert_allclose(square(5.0), 25.0)
    assert calls == [1] and square.expr == a**2
