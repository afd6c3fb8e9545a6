"""Time distributions for compute, network and server work in the cluster model.

Each distribution is a small frozen dataclass, validated at construction, with a ``mean`` and a
``sample(size, *, rng)`` method returning float64 times (arbitrary time units; 1 = one mean compute time
in the reference problems). ``sample`` consumes the generator value by value, so drawing n values at once
gives the same numbers as n draws of one, which lets the SimPy model and the vectorized fast path share a
stream.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from asyncsim._validate import check_array, check_real

__all__ = [
    "Deterministic",
    "Distribution",
    "Empirical",
    "Exponential",
    "Gamma",
    "LogNormal",
    "Pareto",
    "Uniform",
]


class Distribution:
    """Base class: a law of non-negative times."""

    @property
    def mean(self) -> float:
        raise NotImplementedError

    def sample(self, size: int, *, rng: np.random.Generator) -> np.ndarray:
        """Draw ``size`` i.i.d. times, shape ``(size,)``, float64."""
        raise NotImplementedError

    @property
    def is_exponential(self) -> bool:
        """True for memoryless laws, under which staleness is exactly geometric."""
        return False


@dataclass(frozen=True)
class Exponential(Distribution):
    """Exponential times with the given mean (rate 1/mean)."""

    mean_time: float = 1.0

    def __post_init__(self) -> None:
        check_real("Exponential.mean_time", self.mean_time, low=0.0, low_open=True)

    @property
    def mean(self) -> float:
        return float(self.mean_time)

    @property
    def is_exponential(self) -> bool:
        return True

    def sample(self, size: int, *, rng: np.random.Generator) -> np.ndarray:
        return rng.standard_exponential(size) * self.mean_time


@dataclass(frozen=True)
class Deterministic(Distribution):
    """A constant time (consumes no randomness)."""

    value: float = 1.0

    def __post_init__(self) -> None:
        check_real("Deterministic.value", self.value, low=0.0)

    @property
    def mean(self) -> float:
        return float(self.value)

    def sample(self, size: int, *, rng: np.random.Generator) -> np.ndarray:
        return np.full(size, float(self.value))


@dataclass(frozen=True)
class Uniform(Distribution):
    """Times uniform on ``[low, high]``."""

    low: float = 0.5
    high: float = 1.5

    def __post_init__(self) -> None:
        check_real("Uniform.low", self.low, low=0.0)
        check_real("Uniform.high", self.high, low=self.low)

    @property
    def mean(self) -> float:
        return 0.5 * (self.low + self.high)

    def sample(self, size: int, *, rng: np.random.Generator) -> np.ndarray:
        return self.low + (self.high - self.low) * rng.random(size)


@dataclass(frozen=True)
class Gamma(Distribution):
    """Gamma times with shape k and the given mean (scale = mean/k); k = 1 is exponential."""

    shape: float = 2.0
    mean_time: float = 1.0

    def __post_init__(self) -> None:
        check_real("Gamma.shape", self.shape, low=0.0, low_open=True)
        check_real("Gamma.mean_time", self.mean_time, low=0.0, low_open=True)

    @property
    def mean(self) -> float:
        return float(self.mean_time)

    CV_MAX: ClassVar[float] = 10.0

    @classmethod
    def from_cv(cls, cv: float, mean_time: float = 1.0) -> Gamma | Deterministic:
        """The gamma law with coefficient of variation ``cv`` (standard deviation / mean) and the given
        mean: shape ``k = 1/cv²``. ``cv = 1`` is the exponential law (the very draws of
        :class:`Exponential`: NumPy's gamma sampler at shape 1 is its exponential sampler); ``cv = 0``,
        the limit, is :class:`Deterministic` ``(mean_time)``. ``cv`` is limited to ``[0, CV_MAX]``,
        ``CV_MAX = 10`` (shape 0.01, where most draws are already within 1e-30 of zero).

        >>> Gamma.from_cv(0.5, 2.0)
        Gamma(shape=4.0, mean_time=2.0)
        >>> Gamma.from_cv(0.0)
        Deterministic(value=1.0)
        """
        cv = check_real("cv", cv, low=0.0, high=cls.CV_MAX)
        mean_time = check_real("mean_time", mean_time, low=0.0, low_open=True)
        if cv == 0.0:
            return Deterministic(mean_time)
        return cls(1.0 / cv**2, mean_time)

    @property
    def cv(self) -> float:
        """Coefficient of variation, ``1/sqrt(shape)``."""
        return float(1.0 / np.sqrt(self.shape))

    def sample(self, size: int, *, rng: np.random.Generator) -> np.ndarray:
        return rng.standard_gamma(self.shape, size) * (self.mean_time / self.shape)


@dataclass(frozen=True)
class Pareto(Distribution):
    """Pareto (type I) times with tail index ``alpha`` and the given mean: a heavy tail,
    ``P(X > x) = (x_m / x)^alpha`` for ``x >= x_m = mean_time (alpha - 1)/alpha``.

    ``alpha`` must exceed 1 (a finite mean); the variance is infinite for ``alpha <= 2``. A draw is
    ``x_m (1 + L)`` with ``L`` NumPy's Lomax draw (``Generator.pareto``), one value per draw.

    >>> round(Pareto(3.0, 1.5).minimum, 12)
    1.0
    """

    alpha: float = 2.5
    mean_time: float = 1.0

    def __post_init__(self) -> None:
        check_real("Pareto.alpha", self.alpha, low=1.0, low_open=True)
        check_real("Pareto.mean_time", self.mean_time, low=0.0, low_open=True)

    @property
    def mean(self) -> float:
        return float(self.mean_time)

    @property
    def minimum(self) -> float:
        """The scale ``x_m``, the smallest time drawn."""
        return self.mean_time * (self.alpha - 1.0) / self.alpha

    def sample(self, size: int, *, rng: np.random.Generator) -> np.ndarray:
        return self.minimum * (1.0 + rng.pareto(self.alpha, size))


@dataclass(frozen=True)
class LogNormal(Distribution):
    """Log-normal times: log-space standard deviation ``sigma``, scaled so the mean is ``mean_time``.

    A draw is ``mean_time · exp(σ z - σ²/2)`` with ``z ~ N(0, 1)``. ``sigma`` is limited to
    ``[0, SIGMA_MAX]``, ``SIGMA_MAX = 30``: for every ``|z| ≤ 8.3`` (all draws but a fraction
    ``P(|z| > 8.3) ≈ 1e-16``) the unit-mean factor ``exp(σ z - σ²/2)`` then stays a normal float64,
    i.e. in ``[2.2e-308, 1.8e308]``. The low end binds: it needs ``σ²/2 + 8.3 σ ≤ 708.4``, i.e.
    ``σ ≤ 30.2`` (the high end, ``8.3 σ - σ²/2 ≤ 34.4``, holds for every σ). Beyond it the draws
    underflow to 0 (from σ ≈ 38.6 every draw is 0, since ``exp(-σ²/2)`` alone underflows) while
    ``mean`` would still report ``mean_time``.

    Within the bound the draws are finite and positive, but a large σ is a heavy tail: the mean is
    carried by draws near ``z = σ``, so a run of n draws has a sample mean near ``mean_time`` only for
    ``exp(σ²) ≪ n`` (σ ≲ 3 for a million draws).
    """

    SIGMA_MAX: ClassVar[float] = 30.0

    sigma: float = 0.5
    mean_time: float = 1.0

    def __post_init__(self) -> None:
        check_real("LogNormal.sigma", self.sigma, low=0.0, high=self.SIGMA_MAX)
        check_real("LogNormal.mean_time", self.mean_time, low=0.0, low_open=True)

    @property
    def mean(self) -> float:
        return float(self.mean_time)

    def sample(self, size: int, *, rng: np.random.Generator) -> np.ndarray:
        scale = self.mean_time * np.exp(-0.5 * self.sigma**2)
        return scale * np.exp(self.sigma * rng.standard_normal(size))


@dataclass(frozen=True)
class Empirical(Distribution):
    """Resamples (with replacement, uniformly) from measured times."""

    samples: tuple[float, ...] = field(default=(1.0,))

    def __post_init__(self) -> None:
        arr = check_array("Empirical.samples", self.samples, low=0.0)
        if arr.ndim != 1 or arr.size == 0:
            raise ValueError(
                f"Empirical.samples must be a non-empty 1-D sequence, got shape {arr.shape}"
            )
        object.__setattr__(self, "samples", tuple(float(x) for x in arr))

    @property
    def mean(self) -> float:
        return float(np.mean(self.samples))

    def sample(self, size: int, *, rng: np.random.Generator) -> np.ndarray:
        idx = rng.integers(0, len(self.samples), size=size, dtype=np.int64)
        return np.asarray(self.samples)[idx]
