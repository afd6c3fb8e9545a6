"""asyncsim: asynchrony begets momentum, and YellowFin, as a simulator you can measure.

The public API: a cluster model that produces staleness traces (:func:`simulate`), problems with batched
gradient oracles, optimizers as pure transformations (YellowFin among them), the batched stale-gradient
engine (:func:`run`), measurements, and resumable sweeps.
"""

__version__ = "0.1.0"

from asyncsim._rng import SeedRecord, stream
from asyncsim.cluster import ClusterConfig, simulate
from asyncsim.distributions import Deterministic, Empirical, Exponential, Gamma, LogNormal, Uniform
from asyncsim.engine import History, run
from asyncsim.measure import (
    contraction_rate,
    iterations_to_target,
    statistical_penalty,
    time_to_target,
)
from asyncsim.optim import adam, chain, heavy_ball, nesterov, scale, sgd
from asyncsim.problems import (
    DigitsMLP,
    LeastSquares,
    LogisticRegression,
    NoisyQuadratic,
    make_problem,
    spectrum,
)
from asyncsim.sweep import Sweep, SweepResult, run_sweep
from asyncsim.trace import StalenessLaw, Trace
from asyncsim.yellowfin import yellowfin_tuner  # asyncsim.yellowfin stays the module

__all__ = [
    "ClusterConfig",
    "Deterministic",
    "DigitsMLP",
    "Empirical",
    "Exponential",
    "Gamma",
    "History",
    "LeastSquares",
    "LogNormal",
    "LogisticRegression",
    "NoisyQuadratic",
    "SeedRecord",
    "StalenessLaw",
    "Sweep",
    "SweepResult",
    "Trace",
    "Uniform",
    "adam",
    "chain",
    "contraction_rate",
    "heavy_ball",
    "iterations_to_target",
    "make_problem",
    "nesterov",
    "run",
    "run_sweep",
    "scale",
    "sgd",
    "simulate",
    "spectrum",
    "statistical_penalty",
    "stream",
    "time_to_target",
    "yellowfin_tuner",
]
