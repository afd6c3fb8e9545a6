"""The sympy symbols shared by the derivations of :mod:`theory`.

Symbols with the same name and assumptions are the same symbol in sympy, so every module builds its
expressions from these and the expressions combine across modules. Assumptions are the ones the
derivations need (``positive=True`` lets ``sqrt(mu)**2`` simplify to ``mu``); results that also hold at a
boundary value (``mu = 0``) follow by continuity and are checked numerically there.
"""

from __future__ import annotations

import sympy as sp

# Workers and staleness ([AbM] Sec. III).
M = sp.Symbol("M", positive=True)
"""Number of asynchronous workers (or compute groups), ``M >= 1``."""
l = sp.Symbol("l", integer=True, nonnegative=True)  # noqa: E741  (the paper's name for a lag)
"""Staleness value (number of writes by others between a read and its write)."""
k = sp.Symbol("k", integer=True, nonnegative=True)
"""Tail threshold, or the size of a synchronous group."""
j = sp.Symbol("j", integer=True, positive=True)
"""Summation index."""
mu_S = sp.Symbol("mu_S", positive=True)
"""Implicit momentum of geometric staleness, ``mu_S = 1 - 1/M`` in ``[0, 1)``."""
mu_L = sp.Symbol("mu_L", real=True)
"""Explicit (algorithmic) momentum; may be negative."""
B = sp.Symbol("B")
"""Lag (backshift) operator: ``B x_t = x_{t-1}``."""
dw_t = sp.Symbol("Dw_t", real=True)
"""``E[w_t - w_{t-1}]``, the expected last update."""
dw_t1 = sp.Symbol("Dw_tm1", real=True)
"""``E[w_{t-1} - w_{t-2}]``, the expected update before it."""
grad_t = sp.Symbol("g_t", real=True)
"""``E[grad f(w_t)]``, the expected gradient at the current iterate."""

# Momentum and curvature ([YF] Sec. 2).
alpha = sp.Symbol("alpha", positive=True)
"""Step size (learning rate) ``alpha > 0``."""
mu = sp.Symbol("mu", positive=True)
"""Heavy-ball momentum in ``[0, 1)``."""
h = sp.Symbol("h", positive=True)
"""Curvature of a one-dimensional quadratic, ``h > 0``."""
h_min = sp.Symbol("h_min", positive=True)
"""Smallest curvature of the range."""
h_max = sp.Symbol("h_max", positive=True)
"""Largest curvature of the range."""
lam = sp.Symbol("lambda", positive=True)
"""An eigenvalue of the quadratic's Hessian ``A^T A``."""
x = sp.Symbol("x")
"""Variable of a characteristic polynomial (an eigenvalue of the iteration)."""
t = sp.Symbol("t")
"""Variable of a reciprocal-root polynomial, ``t = 1/x``."""

# SingleStep ([YF] Sec. 3).
C = sp.Symbol("C", positive=True)
"""Gradient variance."""
D = sp.Symbol("D", positive=True)
"""Distance to the optimum."""
p = sp.Symbol("p", positive=True)
"""``p = D**2 h_min**2 / (2 C)``, the one parameter of the SingleStep cubic."""
r = sp.Symbol("r", positive=True)
"""``r = sqrt(mu)``."""
y = sp.Symbol("y", real=True)
"""``y = r - 1``, variable of the depressed cubic."""

kappa = h_max / h_min
"""Condition number of the curvature range, ``h_max / h_min``."""
