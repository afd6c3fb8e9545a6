"""Symbolic derivations (sympy) of what asyncsim measures, with fast numeric versions.

This package never imports :mod:`asyncsim`: predictions and measurements meet in tests, notebooks and
figures.

Modules
-------
staleness
    The geometric staleness law of ``M`` workers and the expected-update identities: implicit momentum
    ``1 - 1/M``, effective step ``alpha/M``, explicit and implicit momentum together [AbM]_.
momentum
    The heavy-ball operator, its spectral radius, the robust region and the optimal ``(alpha, mu)`` for
    a curvature range [YF]_.
yellowfin
    The SingleStep problem, its cubic and a solver accurate for every ``p`` [YF]_.
asynchrony
    The expected-iterate rate under geometric staleness and explicit momentum, the optimal explicit
    momentum and the predicted statistical penalty [AbM]_.
hardware
    Expected time per update for synchronous, asynchronous and compute-group training (``H_k``).
numeric
    The bridge from sympy expressions to vectorized NumPy functions.

Each of the first five modules states its closed forms as module-level sympy expressions and lists its
derivations in ``DERIVATIONS`` (name -> cached function returning ``Derivation(derived, stated)``; the
derivation holds when ``sympy.simplify(derived - stated) == 0``). Only the numeric functions are
re-exported here.

References
----------
.. [AbM] I. Mitliagkas, C. Zhang, S. Hadjis, C. Ré, "Asynchrony begets Momentum, with an Application to
   Deep Learning", Allerton 2016, arXiv:1605.09774.
.. [YF] J. Zhang, I. Mitliagkas, C. Ré, "YellowFin and the Art of Momentum Tuning", MLSys 2019,
   arXiv:1706.03471.
"""

from theory.asynchrony import (
    ExplicitMomentumOptimum,
    additive_rule,
    expected_rate,
    optimal_explicit_momentum,
    predicted_penalty,
)
from theory.hardware import expected_max_exponential, hardware_efficiency, time_per_update
from theory.momentum import (
    HeavyBallOptimum,
    covered_condition_number,
    curvature_range,
    heavy_ball_optimum,
    momentum_eigenvalues,
    momentum_operator,
    robust_region,
    spectral_radius,
)
from theory.staleness import (
    effective_step,
    implicit_momentum,
    staleness_mean,
    staleness_pmf,
    staleness_tail,
    staleness_variance,
    total_momentum,
    workers_from_momentum,
)
from theory.yellowfin import SingleStepSolution, cardano_root, cubic_root, single_step

__all__ = [
    "ExplicitMomentumOptimum",
    "HeavyBallOptimum",
    "SingleStepSolution",
    "additive_rule",
    "cardano_root",
    "covered_condition_number",
    "cubic_root",
    "curvature_range",
    "effective_step",
    "expected_max_exponential",
    "expected_rate",
    "hardware_efficiency",
    "heavy_ball_optimum",
    "implicit_momentum",
    "momentum_eigenvalues",
    "momentum_operator",
    "optimal_explicit_momentum",
    "predicted_penalty",
    "robust_region",
    "single_step",
    "spectral_radius",
    "staleness_mean",
    "staleness_pmf",
    "staleness_tail",
    "staleness_variance",
    "time_per_update",
    "total_momentum",
    "workers_from_momentum",
]
