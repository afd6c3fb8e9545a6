"""asyncsim: asynchrony begets momentum, and YellowFin, as a simulator you can measure."""

from asyncsim.cluster import ClusterConfig, simulate
from asyncsim.distributions import Deterministic, Empirical, Exponential, Gamma, LogNormal, Uniform
from asyncsim.trace import Trace

__all__ = [
    "ClusterConfig",
    "Deterministic",
    "Empirical",
    "Exponential",
    "Gamma",
    "LogNormal",
    "Trace",
    "Uniform",
    "simulate",
]
