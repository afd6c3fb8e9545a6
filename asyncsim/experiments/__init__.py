"""The papers' experiments as library calls: one function per experiment, on any problem, optimizer
and cluster.

Each function takes the problem (a reference name or an instance), the optimizer (a name or a factory),
the cluster config and the grids (default: the settings of ``scale`` in
:mod:`asyncsim.experiments.settings`), with ``rng``, ``jobs`` or ``executor``, and ``progress``; it
returns an :class:`ExperimentResult`: a tidy table (``to_frame()``), the config and root seed that
made it, and the raw results behind the table. This is where ``theory`` meets the simulator: the
predictions sit beside the measurements in the same table. No drawing here (:mod:`asyncsim.figures`
draws these results).

==========================  ========================================================================
function                    claim
==========================  ========================================================================
:func:`staleness_law`       M exponential workers give geometric staleness (AbM Thm 5)
:func:`best_momentum`       the best explicit μ falls as the implicit 1 - 1/M grows (AbM)
:func:`single_run_momentum` the same for the single-run optimum on a noiseless quadratic
:func:`penalty`             tuning μ per M (negative allowed) shrinks the statistical penalty
:func:`robust_region`       inside the robust region the heavy ball contracts at √μ (YellowFin)
:func:`total_momentum`      the measured total momentum: μ synchronous, 1 - (1 - μ)/M asynchronous
:func:`closed_loop`         YellowFin's closed loop holds the measured total at its target
:func:`tuners`              YellowFin against grid-tuned momentum SGD and Adam
:func:`compute_groups`      hardware against statistical efficiency of compute groups
:func:`momentum_against_variability`  implicit and best explicit μ as compute times grow regular
:func:`real_asynchrony`     real lock-free SGD on this machine against the queueing model (replayed)
:func:`cnn_real_asynchrony` real lock-free torch runs on the digits CNN: total momentum (replayed)
:func:`mitigations`         one bench of staleness mitigations on common traces, two staleness regimes
==========================  ========================================================================

Several experiments share one process pool through :func:`concurrently`
(:mod:`asyncsim.experiments._schedule` says how the work is queued).
"""

from asyncsim.experiments._schedule import Once, cache, concurrently, root_seed
from asyncsim.experiments.adam import adam_beta1
from asyncsim.experiments.closed_loop import closed_loop
from asyncsim.experiments.cnn_real_asynchrony import cnn_real_asynchrony
from asyncsim.experiments.expected_dynamics import (
    implicit_momentum_equivalence,
    mean_iterate_momentum,
)
from asyncsim.experiments.group_conventions import groups_papers_convention
from asyncsim.experiments.groups import compute_groups
from asyncsim.experiments.mitigations import mitigations
from asyncsim.experiments.momentum import (
    TUNINGS,
    best_momentum,
    momentum_sweep,
    penalty,
    single_run_momentum,
)
from asyncsim.experiments.nonconvex import LogPeriodicCurvature, robust_region_nonconvex
from asyncsim.experiments.real_asynchrony import real_asynchrony
from asyncsim.experiments.result import ExperimentResult, combine
from asyncsim.experiments.robust_region import robust_region
from asyncsim.experiments.settings import GROUP_SETTINGS, MU_GRID, NEAR_OPTIMAL, SCALES, settings
from asyncsim.experiments.staleness import staleness_law
from asyncsim.experiments.total_momentum import total_momentum
from asyncsim.experiments.tuners import tuners
from asyncsim.experiments.variability import momentum_against_variability

__all__ = [
    "GROUP_SETTINGS",
    "MU_GRID",
    "NEAR_OPTIMAL",
    "SCALES",
    "TUNINGS",
    "ExperimentResult",
    "LogPeriodicCurvature",
    "Once",
    "adam_beta1",
    "best_momentum",
    "cache",
    "closed_loop",
    "cnn_real_asynchrony",
    "combine",
    "compute_groups",
    "concurrently",
    "groups_papers_convention",
    "implicit_momentum_equivalence",
    "mean_iterate_momentum",
    "mitigations",
    "momentum_against_variability",
    "momentum_sweep",
    "penalty",
    "real_asynchrony",
    "robust_region",
    "robust_region_nonconvex",
    "root_seed",
    "settings",
    "single_run_momentum",
    "staleness_law",
    "total_momentum",
    "tuners",
]
