"""The robust region on a non-convex objective (YellowFin §3): the heavy ball contracts at √μ on any
1-D objective whose *generalized curvature* ``h(x) = f'(x)/(x - x*)`` stays in ``[h_min, h_max]``
when ``(1 - √μ)²/h_min ≤ α ≤ (1 + √μ)²/h_max``, convex or not.

Along a trajectory the heavy ball is a product of linear operators (theory/README.md §6):

.. math:: \\begin{pmatrix} x_{t+1} - x^* \\\\ x_t - x^* \\end{pmatrix}
   = A_t \\begin{pmatrix} x_t - x^* \\\\ x_{t-1} - x^* \\end{pmatrix}, \\quad
   A_t = \\begin{pmatrix} 1 - \\alpha h(x_t) + \\mu & -\\mu \\\\ 1 & 0 \\end{pmatrix},

each of spectral radius √μ inside the region. The YellowFin paper measures the rate along the
trajectory, as the ratio of successive distances |x_{t+1} - x*|/|x_t - x*|, not as the decay of the
loss; so does :func:`robust_region_nonconvex`, on :class:`LogPeriodicCurvature` by default.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

import theory
from asyncsim.engine import run
from asyncsim.experiments._schedule import Runner
from asyncsim.experiments.result import ExperimentResult, conduct, documented
from asyncsim.experiments.settings import settings_from
from asyncsim.measure import contraction_rate
from asyncsim.optim import heavy_ball
from asyncsim.problems import Problem

__all__ = ["LogPeriodicCurvature", "robust_region_nonconvex"]


@dataclass(frozen=True, eq=False)
class LogPeriodicCurvature(Problem):
    """A non-convex 1-D objective whose generalized curvature oscillates at every scale:
    ``h(x) = f'(x)/(x - x*) = h0 + b cos(ω ln|x - x*|)``.

    .. math:: f(x) = y^2 \\left( \\frac{h_0}{2}
       + b \\, \\frac{2 \\cos(\\omega \\ln|y|) + \\omega \\sin(\\omega \\ln|y|)}{4 + \\omega^2}
       \\right), \\quad y = x - x^*,

    so that ``f'(x) = y (h0 + b cos(ω ln|y|))`` and
    ``f''(x) = h0 + b cos(ω ln|y|) - b ω sin(ω ln|y|)``, negative on an interval of every factor
    ``exp(2π/ω)`` in |y| once ``b √(1 + ω²) > h0`` (non-convex at every distance from x*). With
    ``h0 > b ≥ 0`` the generalized curvature lies in ``[h0 - b, h0 + b]``, x* is the only stationary
    point and ``f ≥ f(x*) = 0``. A smooth f would have h(x) → f''(x*) near x*, where a converging
    run spends most of its steps, and the rate measured there would be a quadratic's; here the
    iterates meet the whole range of h at every scale. Parameters have shape (B, 1); the gradient is
    exact (no noise).

    Parameters
    ----------
    h0 : float
        Mean generalized curvature, ``> b``.
    b : float
        Its amplitude, ``>= 0`` (0: the quadratic of curvature h0).
    omega : float
        Its angular frequency in ``ln|x - x*|``, ``> 0``.
    x0, w_star : float
        Start and optimum.

    Examples
    --------
    >>> p = LogPeriodicCurvature()
    >>> np.round(p.curvature_range, 12).tolist()
    [0.2, 1.8]
    >>> x = np.array([[np.exp(0.5)], [np.exp(-1.6)]])
    >>> (p.curvature(x) < 0).tolist(), (p.mean_gradient(x)[:, 0] > 0).tolist()
    ([True, True], [True, True])
    """

    h0: float = 1.0
    b: float = 0.8
    omega: float = 3.0
    x0: float = 10.0
    w_star: float = 0.0
    name: str = "log-periodic-curvature"
    dim: int = field(init=False, default=1, repr=False)

    def __post_init__(self) -> None:
        for key in ("h0", "b", "omega", "x0", "w_star"):
            value = getattr(self, key)
            if not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(
                    f"LogPeriodicCurvature.{key} must be a finite number, got {value!r}"
                )
        if self.b < 0 or self.h0 <= self.b:
            raise ValueError(
                f"LogPeriodicCurvature needs h0 > b >= 0 (a positive generalized curvature), got "
                f"h0 = {self.h0}, b = {self.b}"
            )
        if self.omega <= 0:
            raise ValueError(f"LogPeriodicCurvature.omega must be > 0, got {self.omega}")

    @property
    def curvature_range(self) -> tuple[float, float]:
        """``(h_min, h_max)``: the bounds of the generalized curvature."""
        return (float(self.h0 - self.b), float(self.h0 + self.b))

    def _phase(self, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``y = x - x*`` and ``ω ln|y|`` (0 at y = 0, where every term it enters vanishes or
        h is taken as h0 + b)."""
        y = w - self.w_star
        with np.errstate(divide="ignore"):
            phase = self.omega * np.log(np.abs(y))
        return y, np.where(y == 0.0, 0.0, phase)

    def generalized_curvature(self, w: np.ndarray) -> np.ndarray:
        """``f'(x)/(x - x*)`` per configuration, shape (B,)."""
        _, phase = self._phase(w[:, 0])
        return self.h0 + self.b * np.cos(phase)

    def curvature(self, w: np.ndarray) -> np.ndarray:
        """The second derivative f''(x) per configuration, shape (B,)."""
        _, phase = self._phase(w[:, 0])
        return self.h0 + self.b * (np.cos(phase) - self.omega * np.sin(phase))

    def init_params(self, batch: int) -> np.ndarray:
        return np.full((batch, 1), float(self.x0))

    def loss(self, w: np.ndarray) -> np.ndarray:
        y, phase = self._phase(w[:, 0])
        wave = (2.0 * np.cos(phase) + self.omega * np.sin(phase)) / (4.0 + self.omega**2)
        return y * y * (0.5 * self.h0 + self.b * wave)

    def distance(self, w: np.ndarray) -> np.ndarray:
        return np.abs(w[:, 0] - self.w_star)

    def mean_gradient(self, w: np.ndarray) -> np.ndarray:
        y, phase = self._phase(w)
        return y * (self.h0 + self.b * np.cos(phase))

    def gradient(self, w: np.ndarray, randomness: Any, n_aggregated: Any) -> np.ndarray:
        return self.mean_gradient(w)


def _generalized_curvature(problem: Any, x: np.ndarray) -> np.ndarray:
    """``f'(x)/(x - x*)`` at parameters ``x`` (..., B, 1): the problem's own method, or its mean
    gradient over the distance to ``w_star`` (NaN at x*)."""
    flat = x.reshape(-1, 1)
    own = getattr(problem, "generalized_curvature", None)
    if own is not None:
        return np.asarray(own(flat)).reshape(x.shape[:-1])
    with np.errstate(divide="ignore", invalid="ignore"):
        h = problem.mean_gradient(flat)[:, 0] / (flat[:, 0] - float(problem.w_star))
    return h.reshape(x.shape[:-1])


def _data(s: dict, problem: Any, optimizer: Any) -> pd.DataFrame:
    if getattr(problem, "dim", None) != 1 or not hasattr(problem, "curvature_range"):
        raise TypeError(
            "problem must be 1-D (dim = 1) with a curvature_range (h_min, h_max) of its "
            f"generalized curvature and its optimum w_star, got {problem!r}"
        )
    h_min, h_max = (float(v) for v in problem.curvature_range)
    lr, mu = [], []
    for m in s["momenta"]:
        lo, hi = theory.robust_region(m, h_min)[0], theory.robust_region(m, h_max)[1]
        if lo >= hi:
            continue  # μ too small: no α covers [h_min, h_max]
        cases = [*(lo * np.array([0.25, 0.5])), *np.geomspace(lo * 1.1, hi / 1.1, s["inside"])]
        cases.append(hi * 1.2)
        lr += cases
        mu += [m] * len(cases)
    lr_, mu_ = np.array(lr), np.array(mu)
    history = run(
        problem,
        optimizer(lr_, mu_),
        None,
        s["steps"],
        record_every=1,
        record_params=True,
        estimate_momentum=False,
    )
    if history.distance is None or history.params is None:
        raise TypeError(f"problem {problem!r} must know its optimum (distance)")
    relative = history.distance / history.distance[0]
    usable = np.isfinite(relative) & (relative > s["floor"])
    usable &= history.steps[:, None] < np.where(history.diverged, history.diverged_at, np.inf)
    length = np.where(usable.all(axis=0), usable.shape[0], np.argmin(usable, axis=0))
    h_path = _generalized_curvature(problem, history.params)  # (R, B)
    local = getattr(problem, "curvature", None)
    rate, operator_median, operator_max, nonconvex, h_low, h_high = (
        np.full(lr_.size, np.nan) for _ in range(6)
    )
    for b, n in enumerate(length):
        rate[b] = contraction_rate(relative[:n, b : b + 1], history.steps[:n])[0]
        if n < 1:
            continue
        h = h_path[:n, b]
        operator = theory.spectral_radius(lr_[b], mu_[b], h[np.isfinite(h)])
        operator_median[b], operator_max[b] = np.median(operator), operator.max()
        h_low[b], h_high[b] = np.nanmin(h), np.nanmax(h)
        if local is not None:
            nonconvex[b] = np.mean(local(history.params[:n, b]) < 0)
    measured = np.where(history.diverged, np.inf, rate)
    lower = theory.robust_region(mu_, h_min)[0]
    upper = theory.robust_region(mu_, h_max)[1]
    return pd.DataFrame(
        {
            "lr": lr_,
            "momentum": mu_,
            "measured": measured,
            "sqrt_momentum": np.sqrt(mu_),
            "relative_difference": np.abs(measured - np.sqrt(mu_)) / np.sqrt(mu_),
            "operator_median": operator_median,
            "operator_max": operator_max,
            "inside": (lr_ >= lower) & (lr_ <= upper),
            "h_min_visited": h_low,
            "h_max_visited": h_high,
            "nonconvex_steps": nonconvex,
            "window": length,
            "diverged": history.diverged,
        }
    )


def _compute(
    s: dict, root: int, runner: Runner, problem: Any, optimizer: Any
) -> tuple[pd.DataFrame, dict[str, Any]]:
    data = runner.call(_data, s, problem, optimizer)
    return data, {"per_case": data.copy()}


@documented
def robust_region_nonconvex(
    problem: Any = None,
    *,
    optimizer: Any = heavy_ball,
    momenta: Sequence[float] | None = None,
    inside: int | None = None,
    steps: int | None = None,
    floor: float | None = None,
    scale: str = "quick",
    rng: Any = None,
    jobs: int = 1,
    executor: Executor | None = None,
    progress: bool | None = None,
) -> ExperimentResult:
    """The heavy ball's rate along its trajectory on a non-convex 1-D objective, inside and outside
    the robust region of its generalized curvature range (YellowFin §3; theory/README.md §6).

    Per μ: two steps α below the region (1/4 and 1/2 of its lower edge), ``inside`` steps inside it
    (from 1.1 times the lower edge to the upper edge over 1.1) and one above (1.2 times the upper
    edge), all in one run from the problem's start, without noise or staleness. The rate is the
    contraction of |x_t - x*| per step along the trajectory: the slope of the log envelope of the
    successive distances (:func:`~asyncsim.measure.contraction_rate`, their geometric mean ratio
    freed of the oscillation), until the distance falls below ``floor`` times the start; beside it
    the per-step operator A_t's spectral radius at the visited generalized curvature h(x_t)
    (median and max over the same window): √μ at every step inside the region.

    ``data``: one row per (α, μ): ``measured``, ``sqrt_momentum``, their relative difference,
    ``operator_median``, ``operator_max``, ``inside`` (α in the region of the problem's
    ``curvature_range``), the range of h(x_t) visited, the fraction of steps where f''(x_t) < 0
    (``nonconvex_steps``, where the problem gives its ``curvature``), the window's length in steps
    and the divergence flag. ``raw["per_case"]``: the same (deterministic runs: no seeds).

    Parameters
    ----------
    problem : Problem or None
        A 1-D problem (``dim = 1``) with ``curvature_range`` (h_min, h_max), ``w_star`` and exact
        ``mean_gradient`` and ``distance`` (and optionally ``generalized_curvature(w)`` and
        ``curvature(w)``, f''); default :class:`LogPeriodicCurvature` ``()`` (h in [0.2, 1.8], start 10).
    optimizer : callable
        A factory ``(lr, momentum) -> GradientTransformation`` with (B,) arrays (default the heavy
        ball, which the lemma is about).
    momenta : sequence of float or None
        The μ, in [0, 1).
    inside : int or None
        Step sizes inside the region per μ.
    steps : int or None
        Updates per run.
    floor : float or None
        Relative distance where the rate's window ends.

    References
    ----------
    J. Zhang, I. Mitliagkas, C. Ré, "YellowFin and the Art of Momentum Tuning", MLSys 2019,
    arXiv:1706.03471, §3 (generalized curvature, Lemma 2 and Fig. 3)."""
    arguments = dict(locals())
    arguments["problem"] = LogPeriodicCurvature() if problem is None else problem
    s = settings_from("robust_nonconvex", arguments, skip=("problem", "optimizer"))
    return conduct(
        "robust_region_nonconvex", _compute, s, arguments, inputs=("problem", "optimizer")
    )
