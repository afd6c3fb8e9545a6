"""Every claim of the papers, measured, with a verdict decided by a rule written before measuring.

A claim names the experiment that measures it, how to read its *effect* from the result (a number
with a 95% bootstrap interval over the experiment's seeds: resample the seeds with replacement,
recompute the effect, take the 2.5% and 97.5% quantiles of 1,000 resamples), and a :class:`Rule`:
a threshold the effect must clear. The verdict is

- ``reproduced``: the whole interval clears the threshold;
- ``partly``: the estimate clears it, the interval does not (or root seeds disagree: see below);
- ``refuted``: the estimate does not clear it.

Run over several root seeds (:func:`check_claims` with ``roots=2``), a claim whose verdicts differ
between roots is ``partly``, and its note says which root gave what.

Sources: [AbM] Mitliagkas, Zhang, Hadjis, Ré, "Asynchrony begets Momentum", Allerton 2016; [YF] Zhang,
Mitliagkas, Ré, "YellowFin and the Art of Momentum Tuning", MLSys 2019; [post] Mitliagkas, "Tune your
momentum" (2017) and the YellowFin blog post (2017).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from asyncsim._validate import check_choice, check_int
from asyncsim.experiments import _schedule
from asyncsim.experiments.adam import adam_beta1
from asyncsim.experiments.closed_loop import closed_loop
from asyncsim.experiments.cnn_real_asynchrony import cnn_real_asynchrony
from asyncsim.experiments.expected_dynamics import (
    implicit_momentum_equivalence,
    mean_iterate_momentum,
)
from asyncsim.experiments.group_conventions import groups_papers_convention
from asyncsim.experiments.groups import compute_groups
from asyncsim.experiments.momentum import TUNINGS, best_momentum, momentum_sweep
from asyncsim.experiments.nonconvex import robust_region_nonconvex
from asyncsim.experiments.result import ExperimentResult
from asyncsim.experiments.robust_region import robust_region
from asyncsim.experiments.settings import DIGITS, SCALES, settings
from asyncsim.experiments.staleness import staleness_law
from asyncsim.experiments.total_momentum import total_momentum
from asyncsim.experiments.tuners import tuners
from asyncsim.sweep import SweepResult

__all__ = [
    "CLAIMS",
    "COLUMNS",
    "VERDICTS",
    "Claim",
    "Measurement",
    "Rule",
    "bootstrap",
    "check_claims",
    "to_frame",
    "to_markdown",
]

VERDICTS = ("reproduced", "partly", "refuted")

COLUMNS = (
    "id",
    "source",
    "claim",
    "paper",
    "effect",
    "measured",
    "interval",
    "verdict",
    "rule",
    "note",
)
"""Columns of the claims table."""

RESAMPLES = 1000
"""Bootstrap resamples of an interval."""


# ------------------------------------------------------------------------------------------ rules
@dataclass(frozen=True)
class Measurement:
    """An effect: its estimate from all seeds and its 95% bootstrap interval ``[low, high]``."""

    estimate: float
    low: float
    high: float


@dataclass(frozen=True)
class Rule:
    """A threshold on the effect, fixed before measuring.

    ``direction`` ``"at_least"``: the effect must be ≥ ``threshold``; ``"at_most"``: ≤ ``threshold``;
    ``"within"``: within ``tolerance`` of ``threshold``. Reproduced when the whole interval
    satisfies it, partly when only the estimate does, refuted otherwise (a NaN effect is refuted).
    """

    direction: str
    threshold: float
    tolerance: float = 0.0

    def __post_init__(self) -> None:
        check_choice("direction", self.direction, ("at_least", "at_most", "within"))

    def holds(self, value: float) -> bool:
        if self.direction == "at_least":
            return bool(value >= self.threshold)
        if self.direction == "at_most":
            return bool(value <= self.threshold)
        return bool(abs(value - self.threshold) <= self.tolerance)

    def verdict(self, measured: Measurement) -> str:
        if not self.holds(measured.estimate):
            return "refuted"
        return "reproduced" if self.holds(measured.low) and self.holds(measured.high) else "partly"

    def __str__(self) -> str:
        if self.direction == "within":
            test = f"within {self.threshold:g} ± {self.tolerance:g}"
        else:
            test = f"{'≥' if self.direction == 'at_least' else '≤'} {self.threshold:g}"
        return f"effect {test}: reproduced if its whole 95% interval is, partly if the estimate is"


def bootstrap(
    n_seeds: int, effect: Callable[[np.ndarray], float], rng: np.random.Generator
) -> Measurement:
    """``effect(seed indices)`` on all seeds, and its 95% interval over resamples of the seeds
    (resamples where the effect is undefined, NaN, left out; an effect may be inf)."""
    with np.errstate(divide="ignore", invalid="ignore"):  # inf: a method never got there
        estimate = float(effect(np.arange(n_seeds)))
        draws = np.array([effect(rng.integers(n_seeds, size=n_seeds)) for _ in range(RESAMPLES)])
    draws = draws[~np.isnan(draws)]  # resamples where the effect is undefined (inf / inf)
    if draws.size == 0:
        return Measurement(estimate, np.nan, np.nan)
    # quantiles that pick resampled values (no interpolation between them, which inf would break)
    low, high = np.quantile(draws, (0.025, 0.975), method="inverted_cdf")
    return Measurement(estimate, float(low), float(high))


def exact(value: float) -> Measurement:
    """An effect without seeds to resample (a deterministic run): its interval is the point."""
    return Measurement(float(value), float(value), float(value))


# ------------------------------------------------------------------------------------------ claims
@dataclass(frozen=True)
class Claim:
    """One claim: where it comes from, what the paper reports, the experiment that measures it
    (a name of :data:`EXPERIMENTS`), its effect and its rule."""

    id: str
    source: str
    claim: str
    paper: str
    experiment: str
    effect: str
    measure: Callable[[ExperimentResult, np.random.Generator], Measurement]
    rule: Rule


def _medians(sweep: SweepResult, seeds: np.ndarray) -> np.ndarray:
    """Median iterations over the chosen seeds, shape (points, lrs, momenta)."""
    s = sweep.sweep
    shape = (len(s.points()), s.seeds, len(s.lrs), len(s.momenta))
    return np.median(sweep["iterations"].reshape(shape)[:, seeds], axis=1)


def _best_mu(sweep: SweepResult, seeds: np.ndarray, point: int) -> float:
    med = _medians(sweep, seeds)[point]
    flat = np.argmin(med)
    return float(np.asarray(sweep.sweep.momenta)[np.unravel_index(flat, med.shape)[1]])


def _tuned(sweep: SweepResult, seeds: np.ndarray, allowed: Any) -> np.ndarray:
    """Per point, the fewest median iterations over the allowed momenta (None: all)."""
    momenta = np.asarray(sweep.sweep.momenta)
    keep = np.isin(momenta, momenta if allowed is None else allowed)
    return _medians(sweep, seeds)[:, :, keep].min(axis=(1, 2))


def _penalty_ratio(sweep: SweepResult, seeds: np.ndarray, first: Any, second: Any) -> float:
    """Penalty at the last M under tuning ``first`` over that under ``second``."""
    a, b = _tuned(sweep, seeds, first), _tuned(sweep, seeds, second)
    return float((a[-1] / a[0]) / (b[-1] / b[0]))


def _nonnegative(sweep: SweepResult) -> np.ndarray:
    momenta = np.asarray(sweep.sweep.momenta)
    return momenta[momenta >= 0]


def _staleness_tv(result: ExperimentResult, rng: np.random.Generator) -> Measurement:
    rows = result.data.query("compute == 'exponential' and workers > 1")
    tv = rows.groupby("workers")["tv_distance"].first().to_numpy()
    return bootstrap(tv.size, lambda i: tv[i].mean(), rng)


def _sweep_of(result: ExperimentResult) -> SweepResult:
    return result.raw["sweep"]


def _best_mu_last(result: ExperimentResult, rng: np.random.Generator) -> Measurement:
    sweep = _sweep_of(result)
    last = len(sweep.sweep.points()) - 1
    return bootstrap(sweep.sweep.seeds, lambda i: _best_mu(sweep, i, last), rng)


def _best_mu_drop(result: ExperimentResult, rng: np.random.Generator) -> Measurement:
    sweep = _sweep_of(result)
    last = len(sweep.sweep.points()) - 1
    return bootstrap(
        sweep.sweep.seeds, lambda i: _best_mu(sweep, i, last) - _best_mu(sweep, i, 0), rng
    )


def _penalty_tuning(result: ExperimentResult, rng: np.random.Generator) -> Measurement:
    sweep = _sweep_of(result)
    fixed = TUNINGS[0][1]
    return bootstrap(
        sweep.sweep.seeds,
        lambda i: _penalty_ratio(sweep, i, fixed, _nonnegative(sweep)),
        rng,
    )


def _penalty_negative(result: ExperimentResult, rng: np.random.Generator) -> Measurement:
    sweep = _sweep_of(result)
    return bootstrap(
        sweep.sweep.seeds, lambda i: _penalty_ratio(sweep, i, _nonnegative(sweep), None), rng
    )


def _robust_rate(result: ExperimentResult, rng: np.random.Generator) -> Measurement:
    rows = result.data.query("kind == 'measured' and inside")
    return exact(np.max(np.abs(rows["rate"] / rows["sqrt_momentum"] - 1.0)))


def _per_seed(result: ExperimentResult, **where: Any) -> np.ndarray:
    """The per-seed column of ``raw["per_seed"]`` (or ``per_run``) rows matching ``where``."""
    table = result.raw.get("per_seed", result.raw.get("per_run"))
    mask = np.ones(len(table), dtype=bool)
    for column, value in where.items():
        mask &= (table[column] == value).to_numpy()
    return table[mask]


def _tuners_sync(result: ExperimentResult, rng: np.random.Generator) -> Measurement:
    table = result.raw["per_seed"].query("workers == 1")
    runs = table.pivot(index="seed", columns="method", values="iterations")
    yellowfin = runs[[c for c in runs.columns if c.startswith("YellowFin")]].to_numpy()
    grids = runs[[c for c in runs.columns if "grid-tuned" in c]].to_numpy()

    def ratio(i: np.ndarray) -> float:
        best_yf = np.median(yellowfin[i], axis=0).min()
        best_grid = np.median(grids[i], axis=0).min()
        return float(best_yf / best_grid)

    return bootstrap(len(runs), ratio, rng)


def _total_gaps(result: ExperimentResult, mode: str) -> np.ndarray:
    """Measured total momentum minus μ per (seed, μ) of the ``mode`` runs at the largest M."""
    runs = _per_seed(result, mode=mode)
    runs = runs[runs["workers"] == runs["workers"].max()]
    gaps = runs.assign(gap=runs["measured"] - runs["explicit"])
    return gaps.pivot_table(index="seed", columns="explicit", values="gap").to_numpy()


def _total_sync(result: ExperimentResult, rng: np.random.Generator) -> Measurement:
    gap = np.abs(_total_gaps(result, "sync"))
    return bootstrap(gap.shape[0], lambda i: float(np.median(gap[i], axis=0).max()), rng)


def _total_async(result: ExperimentResult, rng: np.random.Generator) -> Measurement:
    gap = _total_gaps(result, "async")
    return bootstrap(gap.shape[0], lambda i: float(np.median(gap[i], axis=0).min()), rng)


def _closed_tracks(result: ExperimentResult, rng: np.random.Generator) -> Measurement:
    data = result.data
    shown = data[(data["gain"] == data["shown_gain"]) & (data["step"] >= data["burn_in"])]
    gap = (shown["total"] - shown["target"]).to_numpy()
    low = (shown["total_low"] - shown["target"]).median()
    high = (shown["total_high"] - shown["target"]).median()
    return Measurement(float(np.median(gap)), float(low), float(high))


def _closed_speedup(result: ExperimentResult, rng: np.random.Generator) -> Measurement:
    runs = result.raw["per_seed"]
    open_ = runs[runs["gain"] == 0]["iterations"].to_numpy()
    gains = sorted(set(runs["gain"]) - {0.0})
    closed = np.array([runs[runs["gain"] == g]["iterations"].to_numpy() for g in gains])

    def ratio(i: np.ndarray) -> float:
        return float(np.median(open_[i]) / np.median(closed[:, i], axis=1).min())

    return bootstrap(open_.size, ratio, rng)


def _groups_intermediate(
    setting: int,
) -> Callable[[ExperimentResult, np.random.Generator], Measurement]:
    def measure(result: ExperimentResult, rng: np.random.Generator) -> Measurement:
        sweep = list(result.raw["sweeps"].values())[setting]
        groups = np.asarray(sweep.sweep.groups)
        n = sweep.sweep.seeds
        per_update = sweep["time_per_update"].reshape(len(groups), n, -1)[:, :, 0]

        def effect(i: np.ndarray) -> float:
            time = _tuned(sweep, i, None) * per_update[:, i].mean(axis=1)
            inner = (groups > 1) & (groups < groups.max())
            return float(time[~inner].min() / time[inner].min())

        return bootstrap(n, effect, rng)

    return measure


def _equivalence(explicit: bool) -> Callable[[ExperimentResult, np.random.Generator], Measurement]:
    """Largest relative gap between the expected iterate's rate and momentum SGD's (with the total
    momentum and step α/M): at μ = 0 (``explicit`` False) or at μ ≠ 0; a diverging case counts inf."""

    def measure(result: ExperimentResult, rng: np.random.Generator) -> Measurement:
        rows = result.data[(result.data["momentum"] != 0) == explicit]
        column = "heavy_ball_difference" if explicit else "relative_difference"
        gaps = np.where(rows["diverged"], np.inf, np.abs(rows[column]))
        return exact(np.max(gaps))

    return measure


def _mean_iterate(result: ExperimentResult, rng: np.random.Generator) -> Measurement:
    data = result.data
    return exact(np.max(np.abs(data["momentum_by_rate"] - data["theory_grid_momentum"])))


def _nonconvex_rate(result: ExperimentResult, rng: np.random.Generator) -> Measurement:
    rows = result.data.query("inside")
    gaps = np.where(rows["diverged"], np.inf, np.abs(rows["relative_difference"]))
    return Measurement(float(np.median(gaps)), float(gaps.min()), float(gaps.max()))


def _papers_groups(setting: int) -> Callable[[ExperimentResult, np.random.Generator], Measurement]:
    def measure(result: ExperimentResult, rng: np.random.Generator) -> Measurement:
        data = result.data[result.data["convention"] == "papers"]
        rows = data[data["setting"] == list(dict.fromkeys(data["setting"]))[setting]]
        groups, time = rows["groups"].to_numpy(), rows["relative_time"].to_numpy()
        inner = (groups > 1) & (groups < groups.max())
        return exact(time[~inner].min() / time[inner].min())

    return measure


def _real_gaps(result: ExperimentResult, workers: int) -> np.ndarray:
    """The real CNN runs' meter reading minus μ at ``workers``, shape (runs, momenta)."""
    runs = result.raw["runs"].query("workers == @workers")
    return runs.pivot(index="run", columns="momentum", values="gap").to_numpy()


def _real_sync_cnn(result: ExperimentResult, rng: np.random.Generator) -> Measurement:
    gaps = _real_gaps(result, 1)
    return bootstrap(len(gaps), lambda i: float(np.abs(np.median(gaps[i], axis=0)).max()), rng)


def _real_async_cnn(result: ExperimentResult, rng: np.random.Generator) -> Measurement:
    gaps = _real_gaps(result, 2)
    return bootstrap(len(gaps), lambda i: float(np.median(gaps[i], axis=0).min()), rng)


def _adam_beta1(result: ExperimentResult, rng: np.random.Generator) -> Measurement:
    sweeps = result.raw["sweeps"]
    n = next(iter(sweeps.values())).sweep.seeds

    def effect(i: np.ndarray) -> float:
        fewest = {b1: _tuned(sweep, i, None)[-1] for b1, sweep in sweeps.items()}
        return float(fewest[0.9] / min(fewest.values()))

    return bootstrap(n, effect, rng)


CLAIMS: tuple[Claim, ...] = (
    Claim(
        "staleness-geometric",
        "AbM Thm 5",
        "The staleness of M workers with exponential compute times is geometric, (1/M)(1 - 1/M)^l.",
        "exact under the queueing model",
        "staleness",
        "total-variation distance between the simulated and the geometric law, mean over M = 2..16",
        _staleness_tv,
        Rule("at_most", 0.02),
    ),
    Claim(
        "implicit-momentum",
        "AbM Thm 3, 5",
        "Under geometric staleness the expected stale-SGD iterate is momentum SGD with momentum "
        "1 - 1/M and step α/M.",
        "exact",
        "implicit_momentum",
        "largest relative gap between the expected iterate's rate and that momentum SGD's, μ = 0 "
        "(q10, expected dynamics)",
        _equivalence(explicit=False),
        Rule("at_most", 0.01),
    ),
    Claim(
        "implicit-momentum-explicit",
        "AbM Thm 6",
        "With explicit momentum μ the expected iterate is momentum SGD with total momentum "
        "1 - (1 - μ)/M and step α/M.",
        "the momenta add up (to first order)",
        "implicit_momentum",
        "largest relative gap between the expected iterate's rate and that momentum SGD's, μ ≠ 0 "
        "(inf where one diverges and the other does not)",
        _equivalence(explicit=True),
        Rule("at_most", 0.05),
    ),
    Claim(
        "best-momentum-negative-nq50",
        "AbM §5, Fig. 4",
        "At high asynchrony the best explicit momentum is negative (nq50, M = 16).",
        "negative explicit momentum is best at 16 workers",
        "momentum_nq50",
        "best explicit μ on the grid at the largest M (median updates to target over seeds)",
        _best_mu_last,
        Rule("at_most", -0.1),
    ),
    Claim(
        "best-momentum-falls-nq50",
        "AbM §5",
        "The best explicit momentum falls as the number of workers grows (nq50, M = 1 to 16).",
        "falls from about 0.9 towards negative values",
        "momentum_nq50",
        "best μ at the largest M minus best μ at M = 1",
        _best_mu_drop,
        Rule("at_most", -0.2),
    ),
    Claim(
        "best-momentum-negative-digits",
        "AbM §5 (CNNs there; a small MLP here)",
        "At high asynchrony the best explicit momentum is negative (digits-mlp, M = 16).",
        "negative explicit momentum is best at high asynchrony",
        "momentum_digits",
        "best explicit μ on the grid at the largest M",
        _best_mu_last,
        Rule("at_most", -0.1),
    ),
    Claim(
        "penalty-tuning",
        "post 'Tune your momentum' (CIFAR)",
        "Tuning the momentum per M cuts the statistical penalty at 16 workers by about 2.5x.",
        "about 2.5x",
        "momentum_nq50",
        "penalty with μ = 0.9 fixed over penalty with μ ≥ 0 tuned, at M = 16",
        _penalty_tuning,
        Rule("at_least", 2.0),
    ),
    Claim(
        "penalty-negative",
        "post 'Tune your momentum' (CIFAR)",
        "Allowing negative momentum cuts the statistical penalty at 16 workers by another 2x.",
        "about 2x more",
        "momentum_nq50",
        "penalty with μ ≥ 0 tuned over penalty with all μ tuned, at M = 16",
        _penalty_negative,
        Rule("at_least", 1.6),
    ),
    Claim(
        "mean-iterate-momentum",
        "AbM Thm 7, Fig. 6",
        "The optimal explicit momentum for the mean iterate follows theory's curve against M.",
        "falls from the single-worker optimum to negative values",
        "mean_iterate",
        "largest |best μ by measured rate - theory's best μ on the same grid| over M (expected dynamics)",
        _mean_iterate,
        Rule("at_most", 0.03),
    ),
    Claim(
        "robust-region-quadratic",
        "YF Lemma 2",
        "Inside the robust region the heavy ball contracts at √μ whatever the step size (quadratic).",
        "rate √μ exactly",
        "robust_region",
        "largest |measured rate / √μ - 1| over step sizes inside the region (q10, κ = 5)",
        _robust_rate,
        Rule("at_most", 0.05),
    ),
    Claim(
        "robust-region-nonconvex",
        "YF §3, Fig. 3",
        "On a non-convex 1-D objective, inside the robust region of its generalized curvature, the "
        "heavy ball contracts at √μ (measured along the trajectory).",
        "rate √μ",
        "robust_nonconvex",
        "median |rate / √μ - 1| over step sizes inside the region; interval: smallest to largest",
        _nonconvex_rate,
        Rule("at_most", 0.05),
    ),
    Claim(
        "yellowfin-vs-tuned-sync",
        "YF §5",
        "YellowFin needs no more updates than grid-tuned momentum SGD and Adam (synchronous).",
        "matches or beats hand-tuned momentum SGD and Adam",
        "tuners",
        "median updates to target of the better YellowFin variant over the better grid-tuned method",
        _tuners_sync,
        Rule("at_most", 1.25),
    ),
    Claim(
        "total-momentum-sync",
        "YF §5; AbM Thm 6",
        "Measured total momentum equals the algorithmic μ when synchronous.",
        "equal",
        "total_momentum",
        "largest |measured total - μ| over μ, synchronous (median over seeds)",
        _total_sync,
        Rule("at_most", 0.05),
    ),
    Claim(
        "total-momentum-async",
        "YF §5; AbM Thm 6",
        "Measured total momentum exceeds the algorithmic μ when asynchronous (M = 16).",
        "above μ, about 1 - (1 - μ)/M",
        "total_momentum",
        "smallest measured total - μ over μ at the largest M (median over seeds)",
        _total_async,
        Rule("at_least", 0.1),
    ),
    Claim(
        "closed-loop-tracks",
        "YF §5, Fig. 7",
        "The closed loop holds the measured total momentum at its target.",
        "tracks the target",
        "closed_loop",
        "median over the run (after three time constants) of total - target; range over seeds",
        _closed_tracks,
        Rule("within", 0.0, 0.05),
    ),
    Claim(
        "closed-loop-speedup",
        "YF §5, Fig. 7",
        "With the tuner's own target, the closed loop reaches the target about 2x sooner than the "
        "open loop at 16 workers.",
        "about 2x",
        "closed_loop_own_target",
        "open-loop median updates to target over the best closed loop's",
        _closed_speedup,
        Rule("at_least", 1.6),
    ),
    Claim(
        "groups-intermediate",
        "AbM §6; Omnivore",
        "An intermediate number of compute groups is fastest to the target (exponential compute, "
        "each member computes a full gradient).",
        "intermediate groups are best",
        "groups",
        "time to target of the best of g = 1 and g = M over the best intermediate g",
        _groups_intermediate(0),
        Rule("at_least", 1.05),
    ),
    Claim(
        "groups-intermediate-busy-server",
        "AbM §6; Omnivore",
        "An intermediate number of compute groups is fastest when the server is busy 0.2 per apply.",
        "intermediate groups are best",
        "groups",
        "as the row above, with a server busy 0.2 time units per apply",
        _groups_intermediate(1),
        Rule("at_least", 1.05),
    ),
    Claim(
        "groups-intermediate-papers",
        "AbM §6; Omnivore",
        "An intermediate number of compute groups is fastest, when a group splits one minibatch "
        "across its members (a group update: the slowest member's time for 1/k of the work, plus a "
        "synchronization cost 0.1).",
        "intermediate groups are best",
        "groups_papers",
        "time to target of the best of g = 1 and g = M over the best intermediate g",
        _papers_groups(0),
        Rule("at_least", 1.05),
    ),
    Claim(
        "groups-intermediate-papers-busy-server",
        "AbM §6; Omnivore",
        "The same, with a server busy 0.2 per apply.",
        "intermediate groups are best",
        "groups_papers",
        "as the row above, with a server busy 0.2 time units per apply",
        _papers_groups(1),
        Rule("at_least", 1.05),
    ),
    Claim(
        "adam-beta1",
        "YellowFin blog post (2017)",
        "Hand-tuning Adam's β1 helps under asynchrony (M = 16).",
        "lower β1 is better under asynchrony",
        "adam_beta1",
        "median updates to target with β1 = 0.9 over those with the best β1 of (0, 0.5, 0.9), M = 16",
        _adam_beta1,
        Rule("at_least", 1.2),
    ),
    Claim(
        "total-momentum-sync-cnn",
        "YF §5; AbM Thm 6 (CNNs there)",
        "Measured total momentum equals the algorithmic μ when synchronous (digits-cnn).",
        "equal",
        "total_momentum_cnn",
        "largest |measured total - μ| over μ, synchronous (median over seeds), digits-cnn",
        _total_sync,
        Rule("at_most", 0.05),
    ),
    Claim(
        "total-momentum-async-cnn",
        "YF §5; AbM Thm 6 (CNNs there)",
        "Measured total momentum exceeds the algorithmic μ when asynchronous (digits-cnn, M = 16).",
        "above μ, about 1 - (1 - μ)/M",
        "total_momentum_cnn",
        "smallest measured total - μ over μ at the largest M (median over seeds), digits-cnn",
        _total_async,
        Rule("at_least", 0.1),
    ),
    Claim(
        "total-momentum-sync-cnn-real",
        "YF §5; AbM Thm 6 (CNNs there)",
        "Measured total momentum equals the algorithmic μ when synchronous (digits-cnn in torch, "
        "one real worker).",
        "equal",
        "real_asynchrony_cnn",
        "largest |measured total - μ| over μ (median over committed real runs, MomentumMeter), M = 1",
        _real_sync_cnn,
        Rule("at_most", 0.05),
    ),
    Claim(
        "total-momentum-async-cnn-real",
        "YF §5; AbM Thm 6 (CNNs there)",
        "Measured total momentum exceeds the algorithmic μ under real lock-free asynchrony "
        "(digits-cnn in torch, M = 2 processes on 2 cores).",
        "above μ, about 1 - (1 - μ)/M",
        "real_asynchrony_cnn",
        "smallest measured total - μ over μ (median over committed real runs, MomentumMeter), M = 2",
        _real_async_cnn,
        Rule("at_least", 0.1),
    ),
    Claim(
        "best-momentum-negative-cnn",
        "AbM §5 (CNNs on CIFAR and ImageNet there)",
        "At high asynchrony the best explicit momentum is negative (digits-cnn, M = 16).",
        "negative explicit momentum is best at high asynchrony",
        "momentum_cnn",
        "best explicit μ on the grid at the largest M, digits-cnn",
        _best_mu_last,
        Rule("at_most", -0.1),
    ),
    Claim(
        "yellowfin-vs-tuned-sync-cnn",
        "YF §5 (ResNets there)",
        "YellowFin needs no more updates than grid-tuned momentum SGD and Adam (synchronous, "
        "digits-cnn).",
        "matches or beats hand-tuned momentum SGD and Adam",
        "tuners_cnn",
        "median updates to target of the better YellowFin variant over the better grid-tuned "
        "method, digits-cnn",
        _tuners_sync,
        Rule("at_most", 1.25),
    ),
)
"""The claims, in the order of the table."""


# ------------------------------------------------------------------------------------------ running
Task = Callable[..., ExperimentResult]


def _experiments(scale: str, root: int, progress: bool | None) -> dict[str, Task]:
    """The experiments behind the claims at ``scale``: name -> ``task(executor)``."""
    common = {"scale": scale, "rng": root, "progress": progress}
    nq50 = _schedule.Once(lambda executor: momentum_sweep(executor=executor, **common))
    digits = {k: DIGITS[k] for k in ("workers", "lrs", "momenta", "seeds", "steps", "record_every")}

    def shared(function: Task, **options: Any) -> Task:
        return lambda executor: function(
            sweep=nq50.get(executor), executor=executor, **options, **common
        )

    def plain(function: Task, **options: Any) -> Task:
        return functools.partial(_call, function, options | common)

    def cnn(function: Task, name: str) -> Task:
        return plain(function, problem="digits-cnn", **settings(name, scale))

    return {
        "staleness": plain(staleness_law),
        "momentum_nq50": shared(best_momentum),
        "momentum_digits": plain(best_momentum, problem="digits-mlp", **digits),
        "robust_region": plain(robust_region),
        "tuners": plain(tuners),
        "total_momentum": plain(total_momentum),
        "closed_loop": plain(closed_loop),
        "closed_loop_own_target": plain(closed_loop, target=float("nan")),
        "groups": plain(compute_groups),
        "implicit_momentum": plain(implicit_momentum_equivalence),
        "mean_iterate": plain(mean_iterate_momentum),
        "robust_nonconvex": plain(robust_region_nonconvex),
        "groups_papers": plain(groups_papers_convention),
        "adam_beta1": plain(adam_beta1),
        "total_momentum_cnn": cnn(total_momentum, "cnn_total_momentum"),
        "momentum_cnn": cnn(best_momentum, "cnn_momentum"),
        "tuners_cnn": cnn(tuners, "cnn_tuners"),
        "real_asynchrony_cnn": plain(cnn_real_asynchrony),
    }


def _call(function: Task, options: dict[str, Any], executor: Any) -> ExperimentResult:
    return function(executor=executor, **options)


def _selected(only: Sequence[str] | None) -> tuple[Claim, ...]:
    if not only:
        return CLAIMS
    ids = [c.id for c in CLAIMS]
    for claim_id in only:
        check_choice("only", claim_id, ids)
    return tuple(c for c in CLAIMS if c.id in only)


def check_claims(
    *,
    scale: str = "quick",
    roots: int = 1,
    only: Sequence[str] | None = None,
    jobs: int = 1,
    progress: bool | None = None,
) -> Iterator[dict[str, str]]:
    """Measure each claim at root seeds 0 ... ``roots`` - 1 and yield its row (:data:`COLUMNS`) as it
    is ready. One pool serves every experiment of every root; an experiment several claims read
    runs once per root."""
    check_choice("scale", scale, SCALES)
    roots = check_int("roots", roots, low=1)
    claims = _selected(only)
    needed = list(dict.fromkeys(c.experiment for c in claims))
    available = [_experiments(scale, root, progress) for root in range(roots)]
    tasks = {(root, name): available[root][name] for name in needed for root in range(roots)}
    results: dict[tuple[int, str], ExperimentResult] = {}
    pending = list(claims)
    for key, result, _ in _schedule.concurrently(tasks, jobs=jobs, progress=progress):
        results[key] = result
        while pending and all((r, pending[0].experiment) in results for r in range(roots)):
            claim = pending.pop(0)
            yield _row(claim, [results[(r, claim.experiment)] for r in range(roots)])


def _row(claim: Claim, per_root: list[ExperimentResult]) -> dict[str, str]:
    measured = [
        claim.measure(result, np.random.default_rng(result.seed.sequence())) for result in per_root
    ]
    verdicts = [claim.rule.verdict(m) for m in measured]
    verdict = verdicts[0] if len(set(verdicts)) == 1 else "partly"
    note = (
        ""
        if len(set(verdicts)) == 1
        else "root seeds disagree: " + ", ".join(f"root {r}: {v}" for r, v in enumerate(verdicts))
    )
    return {
        "id": claim.id,
        "source": claim.source,
        "claim": claim.claim,
        "paper": claim.paper,
        "effect": claim.effect,
        "measured": "; ".join(f"{m.estimate:.3g}" for m in measured),
        "interval": "; ".join(f"[{m.low:.3g}, {m.high:.3g}]" for m in measured),
        "verdict": verdict,
        "rule": str(claim.rule),
        "note": note,
    }


def to_markdown(rows: Sequence[dict[str, str]]) -> str:
    """The claims table as Markdown (pipes in cells escaped)."""
    shown = ("id", "claim", "source", "paper", "effect", "measured", "interval", "verdict", "note")
    lines = ["| " + " | ".join(shown) + " |", "|" + "---|" * len(shown)]
    for row in rows:
        lines.append("| " + " | ".join(row[c].replace("|", "\\|") for c in shown) + " |")
    return "\n".join(lines) + "\n"


def to_frame(rows: Sequence[dict[str, str]]) -> pd.DataFrame:
    return pd.DataFrame(list(rows), columns=list(COLUMNS))
