"""One bench of staleness mitigations: every method of :data:`asyncsim.mitigations.METHODS` on the same
simulated staleness traces and gradient noise, seed by seed, under two staleness regimes.

Each method's step size is tuned over six values (factors of 2 around a centre found in a pilot run
on other seeds) and its own hyperparameter over its paper's default and two alternatives; a cell
(problem, regime, M) compares the methods at their tuned settings. Every (method, setting) is a
:class:`~asyncsim.sweep.Sweep` of one cluster config with the bench's root seed, so that all of them
draw the same trace and noise streams for a given (M, seed): common random numbers, which make the
comparison sharp. The two regimes share those streams too; only the compute law differs:

- ``exponential``: Exp(1) compute times, geometric staleness (theory/README.md §1);
- ``uniform``: compute times uniform on [0.9, 1.1], near-deterministic staleness (M - 1 after the
  warm-up), as clusters measured in practice show.

Updates count arrivals (gradients computed), so a method that discards or buffers gradients is charged
for them; time to target is the trace's clock at the arrival that met the target.

Cost: a sweep holds a method's six step sizes and, where they share that grid and its factory takes
arrays, all its settings (a batch of 18 runs in lockstep: the per-step overhead is shared). M = 1 is
run in the first regime only: without staleness the runs are the same whatever the compute law, and
the other regimes take them on their own clock (:func:`_one_worker`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import Executor
from typing import Any

import numpy as np
import pandas as pd

from asyncsim._validate import check_choice, check_int
from asyncsim.cluster import ClusterConfig, simulate
from asyncsim.distributions import Distribution, Exponential, Uniform
from asyncsim.experiments._schedule import Runner, stream_of
from asyncsim.experiments.result import ExperimentResult, conduct, documented
from asyncsim.experiments.settings import RUN_OPTIONS, SCALES
from asyncsim.measure import time_to_target
from asyncsim.mitigations import METHODS
from asyncsim.problems import LeastSquares, make_problem, spectrum
from asyncsim.sweep import Sweep, SweepResult, chunk_streams

__all__ = [
    "BASELINE",
    "LR_OFFSETS",
    "REGIMES",
    "SETTINGS",
    "least_squares",
    "mitigations",
    "summary_markdown",
]

REGIMES: dict[str, Distribution] = {
    "exponential": Exponential(1.0),
    "uniform": Uniform(0.9, 1.1),
}
"""The staleness regimes: the compute-time law of every worker (mean 1)."""

BASELINE = "asgd"
"""The method speed-ups are measured against: plain asynchronous SGD, tuned the same way."""

LR_OFFSETS = (-3, -2, -1, 0, 1, 2)
"""The six step sizes of a (method, setting): ``2^(centre + offset)``."""

RESAMPLES = 1000
"""Bootstrap resamples of the seeds behind an interval."""

_SGD_LIKE = {"asgd": -1.0, "staleness_aware": -1.0, "dc_asgd_c": -1.0, "dc_asgd_a": -1.0,
             "gap_aware": -1.0, "delay_adaptive": -1.0, "ringmaster": -1.0}  # fmt: skip
_NQ50 = _SGD_LIKE | {
    "heavy_ball": {0.9: -5.0, 0.5: -2.0, -0.3: -1.0},
    "dana": {0.9: -4.0, 0.5: -2.0, 0.0: -1.0},
    "fedbuff": 0.0,
    "fedasync": 0.5,
    "adam": -5.0,
    "yellowfin": -3.0,
    "yellowfin_closed": -2.0,
}
_DIGITS = _SGD_LIKE | {
    "heavy_ball": {0.9: -4.0, 0.5: -2.0, -0.3: -1.0},
    "dana": {0.9: -3.0, 0.5: -2.0, 0.0: -1.0},
    "fedbuff": 0.0,
    "fedasync": 0.0,
    "adam": -6.0,
    "yellowfin": -3.0,
    "yellowfin_closed": -2.0,
}
_QUICK: dict[str, Any] = {
    "problems": ("nq50", "digits-mlp"),
    "methods": tuple(METHODS),
    "regimes": REGIMES,
    "workers": (1, 4, 16),
    "seeds": 4,
    # per problem: updates per M (1.3 to 3 times what tuned async SGD needs under exponential
    # compute: a run that has not met the target by then counts as not reaching it) and
    # record_every, the resolution
    "budgets": {
        "nq50": ({1: 800, 4: 800, 16: 1600, 64: 4000}, 5),
        "least-squares": ({1: 800, 4: 800, 16: 1600, 64: 4000}, 5),
        "digits-mlp": ({1: 800, 4: 1500, 16: 2000, 64: 6000}, 25),
    },
    # log2 of the centre of each method's step sizes (per setting where they differ by a lot), from
    # pilot runs on other trace and noise seeds (one seed, 8 to 12 step sizes, M = 1, 4, 16 for
    # nq50 and 4, 16 for digits-mlp); least-squares takes nq50's (the same curvatures)
    "lr_centers": {"nq50": _NQ50, "least-squares": _NQ50, "digits-mlp": _DIGITS},
}
SETTINGS: dict[str, dict[str, Any]] = {
    "quick": _QUICK,
    "full": _QUICK
    | {
        "problems": ("nq50", "digits-mlp", "least-squares"),
        "workers": (1, 4, 16, 64),
        "seeds": 8,
    },
}
"""The bench's grids and budgets per scale; its function's keyword arguments override them."""


def least_squares() -> LeastSquares:
    """The bench's least-squares problem: n = 1000 rows, d = 50 Gaussian features with variances
    logspace(0, -2) (curvatures 1 to 0.01, as nq50), targets ``X·1 + 0.1 z``, minibatches of 32,
    from w0 = 0 to 10⁻³ of the initial excess loss; data from seed 0."""
    rng = np.random.default_rng(0)
    features = rng.standard_normal((1000, 50)) * np.sqrt(spectrum(50, 100.0))
    targets = features @ np.ones(50) + 0.1 * rng.standard_normal(1000)
    return LeastSquares(features, targets)


def _name(problem: Any) -> str:
    """A problem's key in the settings: the reference name as given, or the instance's name."""
    return problem if isinstance(problem, str) else str(problem.name)


def _instance(problem: Any) -> Any:
    """A problem instance: a reference name built once (``least-squares`` is :func:`least_squares`)."""
    if not isinstance(problem, str):
        return problem
    return least_squares() if problem == "least-squares" else make_problem(problem)


def _settings_of(centers: Mapping[str, Any], method_name: str) -> list[tuple[Any, ...]]:
    """The settings of a method its sweeps hold, one tuple per sweep: all of its values in one
    when its factory takes them as an array and they share a step-size grid, else one each."""
    method = METHODS[method_name]
    values = method.values or (None,)
    together = (
        method.vectorized
        and method.axis != "momentum"
        and not isinstance(centers[method_name], Mapping)
    )
    return [values] if together else [(value,) for value in values]


def _lr_grid(centers: Mapping[str, Any], method: str, value: Any) -> tuple[float, ...]:
    center = centers[method]
    if isinstance(center, Mapping):
        center = center[value]
    return tuple(float(2.0 ** (center + k)) for k in LR_OFFSETS)


def _sweeps(s: dict, root: int, name: str, problem: Any) -> dict[tuple, Sweep]:
    """Every sweep of one problem (named ``name`` in the settings), keyed by (regime, M, method,
    settings). M = 1 only in the first regime (see :func:`_one_worker`)."""
    steps, every = s["budgets"][name]
    centers = s["lr_centers"][name]
    first = next(iter(s["regimes"]))
    out = {}
    for regime, law in s["regimes"].items():
        for m in s["workers"]:
            if m == 1 and regime != first:
                continue
            config = ClusterConfig(m, compute=law)
            for method_name in s["methods"]:
                method = METHODS[method_name]
                for values in _settings_of(centers, method_name):
                    momenta, options = method.arguments(values if len(values) > 1 else values[0], m)
                    out[regime, m, method_name, values] = Sweep(
                        problem,
                        lrs=_lr_grid(centers, method_name, values[0]),
                        momenta=momenta,
                        cluster=(config,),
                        staleness="cluster",
                        seeds=s["seeds"],
                        steps=steps[m],
                        record_every=every,
                        optimizer=method.factory,
                        options=options,
                        seed=root,  # every sweep: the same streams per (M, seed)
                    )
    return out


def _per_seed(problem: str, key: tuple, result: SweepResult) -> pd.DataFrame:
    regime, m, method, _ = key
    axis = METHODS[method].axis
    values = result[axis] if axis else np.full(len(result), "")
    return pd.DataFrame(
        {
            "problem": problem,
            "regime": regime,
            "workers": m,
            "method": method,
            "value": np.asarray(values).astype(str),
            "lr": result["lr"],
            "seed": result["seed"],
            "iterations": result["iterations"],
            "time": result["time_to_target"],
            "diverged": result["diverged"],
            "budget": result.sweep.steps,
        }
    )


def _one_worker(runs: pd.DataFrame, sweep: Sweep, regime: str, law: Distribution) -> pd.DataFrame:
    """The runs of M = 1 in another regime, from the first regime's: with one worker there is no
    staleness, and the trace depends on the compute law only through its clock (the engine reads
    none), so every run is the same; only its time to target is taken on the other clock, seed by
    seed, from the trace the sweep would simulate (its streams, :func:`chunk_streams`)."""
    runs = runs.assign(regime=regime)
    for seed in range(sweep.seeds):
        trace = simulate(
            ClusterConfig(1, compute=law), sweep.steps, rng=chunk_streams(sweep, 0, seed)[0]
        )
        rows = runs["seed"] == seed
        runs.loc[rows, "time"] = time_to_target(runs.loc[rows, "iterations"], trace.apply_time)
    return runs


def _compute(
    s: dict, root: int, runner: Runner, problems: Sequence[Any]
) -> tuple[pd.DataFrame, dict[str, Any]]:
    futures = []
    for problem in problems:
        name = _name(problem)
        for key, sweep in _sweeps(s, root, name, _instance(problem)).items():
            futures.append((name, key, sweep, runner.background(runner.sweep, sweep)))
    frames = []
    for name, key, sweep, future in futures:
        runs = _per_seed(name, key, future.result())
        frames.append(runs)
        if key[1] == 1:
            frames += [
                _one_worker(runs, sweep, r, law) for r, law in list(s["regimes"].items())[1:]
            ]
    per_seed = pd.concat(frames, ignore_index=True)
    # cells in the order of the problems, then the regimes (M = 1 included), then M
    order = {
        "problem": {name: i for i, name in enumerate(dict.fromkeys(per_seed["problem"]))},
        "regime": {regime: i for i, regime in enumerate(s["regimes"])},
    }
    per_seed = per_seed.sort_values(
        ["problem", "regime", "workers"],
        key=lambda column: column.map(order[column.name]) if column.name in order else column,
        kind="stable",
    )
    resamples = np.random.default_rng(stream_of(root, "mitigations", "bootstrap")).integers(
        s["seeds"], size=(RESAMPLES, s["seeds"])
    )
    cells = [
        _cell(group, resamples)
        for _, group in per_seed.groupby(["problem", "regime", "workers"], sort=False)
    ]
    return pd.concat(cells, ignore_index=True), {"per_seed": per_seed.reset_index(drop=True)}


# ------------------------------------------------------------------------------------------ summary
def _quantiles(draws: np.ndarray) -> tuple[float, float]:
    """The 95% interval of bootstrap draws (NaN draws, undefined effects, left out)."""
    draws = draws[~np.isnan(draws)]
    if draws.size == 0:
        return np.nan, np.nan
    low, high = np.quantile(draws, (0.025, 0.975), method="inverted_cdf")
    return float(low), float(high)


def _tuned(iterations: np.ndarray, times: np.ndarray, seeds: np.ndarray) -> tuple:
    """Tuning over the settings (C) on the given seed columns (..., S'): the fewest median
    updates, the setting that gives them and its median time, each of shape (...)."""
    medians = np.median(iterations[:, seeds], axis=-1)  # (C, ...)
    best = np.argmin(medians, axis=0)
    time = np.median(np.take_along_axis(times[:, seeds], best[None, ..., None], axis=0)[0], axis=-1)
    return np.min(medians, axis=0), best, time


def _speedup(baseline: np.ndarray, method: np.ndarray, budget: int) -> np.ndarray:
    """Baseline updates over the method's; a baseline that never met the target counts as the
    budget (the speed-up is then a lower bound), a method that never did as 0, neither as NaN."""
    bound = np.where(np.isinf(baseline), budget, baseline)
    ratio = bound / np.where(np.isinf(method), 1.0, method)
    return np.where(np.isinf(method), np.where(np.isinf(baseline), np.nan, 0.0), ratio)


def _cell(group: pd.DataFrame, resamples: np.ndarray) -> pd.DataFrame:
    """One (problem, regime, M): per method its tuned setting, median updates and time to target
    with 95% bootstrap intervals over seeds (the tuning redone in each resample), and its speed-up
    over the tuned baseline on the same resampled seeds (:func:`_speedup`)."""
    budget = int(group["budget"].iloc[0])
    everything = np.arange(resamples.shape[1])
    tuned = {}
    for method, runs in group.groupby("method", sort=False):
        table = runs.pivot_table(
            index=["value", "lr"], columns="seed", values=["iterations", "time"], sort=False
        )
        its, times = table["iterations"].to_numpy(), table["time"].to_numpy()
        estimate, best, time = _tuned(its, times, everything)
        draws, _, time_draws = _tuned(its, times, resamples)
        reached = float(np.isfinite(its[best]).mean())
        tuned[method] = (estimate, draws, time, time_draws, table.index[best], reached)
    base, base_draws = tuned[BASELINE][0], tuned[BASELINE][1]
    at_least = bool(np.isinf(base))  # the baseline never met the target: speed-ups are bounds
    rows = []
    with np.errstate(divide="ignore", invalid="ignore"):
        for method, (estimate, draws, time, time_draws, (value, lr), reached) in tuned.items():
            rows.append(
                {
                    "problem": group["problem"].iloc[0],
                    "regime": group["regime"].iloc[0],
                    "workers": int(group["workers"].iloc[0]),
                    "method": method,
                    "label": METHODS[method].label,
                    "axis": METHODS[method].axis or "",
                    "value": value,
                    "lr": lr,
                    "iterations": estimate,
                    "iterations_low": _quantiles(draws)[0],
                    "iterations_high": _quantiles(draws)[1],
                    "time": time,
                    "time_low": _quantiles(time_draws)[0],
                    "time_high": _quantiles(time_draws)[1],
                    "speedup": float(_speedup(base, estimate, budget)),
                    "speedup_low": _quantiles(_speedup(base_draws, draws, budget))[0],
                    "speedup_high": _quantiles(_speedup(base_draws, draws, budget))[1],
                    "speedup_at_least": at_least,
                    "reached": reached,
                    "budget": budget,
                }
            )
    cell = pd.DataFrame(rows)
    cell["rank"] = cell["iterations"].rank(method="min").astype(int)
    return cell


def _settings(scale: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """The scale's settings with the function's arguments that are not None (run options and the
    problems left out), methods and workers checked."""
    check_choice("scale", scale, SCALES)
    overrides = {
        k: v
        for k, v in arguments.items()
        if k not in RUN_OPTIONS and k != "problems" and v is not None
    }
    s = SETTINGS[scale] | overrides
    s["methods"] = tuple(dict.fromkeys([BASELINE, *s["methods"]]))
    for name in s["methods"]:
        check_choice("methods", name, tuple(METHODS))
    s["workers"] = tuple(check_int("workers", m, low=1) for m in s["workers"])
    check_int("seeds", s["seeds"], low=1)
    if not s["regimes"] or not all(isinstance(v, Distribution) for v in s["regimes"].values()):
        raise TypeError(f"regimes must map names to Distributions, got {s['regimes']!r}")
    return s


@documented
def mitigations(
    problems: Sequence[Any] | None = None,
    *,
    methods: Sequence[str] | None = None,
    regimes: Mapping[str, Distribution] | None = None,
    workers: Sequence[int] | None = None,
    seeds: int | None = None,
    budgets: Mapping[str, tuple[Mapping[int, int], int]] | None = None,
    lr_centers: Mapping[str, Mapping[str, Any]] | None = None,
    scale: str = "quick",
    rng: Any = None,
    jobs: int = 1,
    executor: Executor | None = None,
    progress: bool | None = None,
) -> ExperimentResult:
    """The staleness-mitigation bench: updates and time to each problem's target of every method,
    tuned, at each number of asynchronous workers M and in each staleness regime, on common random
    numbers, with speed-ups over tuned asynchronous SGD (:data:`BASELINE`).

    ``data``: one row per (problem, regime, M, method): the tuned setting (``axis`` = ``value``, and
    ``lr``), the median over seeds of updates to target (``iterations``) and of the time to target
    (``time``, in mean compute times), each with a 95% bootstrap interval over seeds in which the
    tuning is redone per resample (``_low``, ``_high``), ``speedup`` = tuned ASGD's median updates over
    the method's with its paired interval, ``reached`` (fraction of seeds reaching the target at the
    tuned setting), ``rank`` (1 = fewest updates in the cell) and ``budget`` (updates run). Where
    async SGD never met the target (``speedup_at_least``) its budget stands in for its updates and
    the speed-ups are lower bounds; a method that never met it has speed-up 0 (NaN when neither
    did). ``raw["per_seed"]``: every run (problem, regime, M, method, setting, step size, seed:
    updates, time, diverged, budget).

    Parameters
    ----------
    problems : sequence of str or Problem, or None
        Reference names (``nq50``, ``digits-mlp``, ``least-squares``: :func:`least_squares`) or
        problem instances; each needs its ``budgets`` and ``lr_centers`` entries under its name.
    methods : sequence of str or None
        Names in :data:`asyncsim.mitigations.METHODS` (asynchronous SGD, the baseline, is always in).
    regimes : mapping of str to Distribution or None
        Compute-time laws by name (default :data:`REGIMES`).
    workers : sequence of int or None
        The worker counts M.
    seeds : int or None
        Seeds per configuration.
    budgets : mapping of problem name to ({M: updates}, record_every), or None
    lr_centers : mapping of problem name to {method: log2 centre, or {setting value: centre}}, or None
        Where each method's six step sizes ``2^(centre + LR_OFFSETS)`` sit.

    References
    ----------
    The methods' papers are listed in :mod:`asyncsim.mitigations`."""
    arguments = dict(locals())
    s = _settings(scale, arguments)
    arguments["problems"] = tuple(s.pop("problems") if problems is None else problems)
    for name in map(_name, arguments["problems"]):
        for table in ("budgets", "lr_centers"):
            if name not in s[table]:
                raise ValueError(
                    f"{table} has no entry for problem {name!r}; give {table}={{{name!r}: ...}}"
                )
        missing = [m for m in s["workers"] if m not in s["budgets"][name][0]]
        if missing:
            raise ValueError(f"budgets[{name!r}] gives no updates for M = {missing}")
    s.pop("problems", None)
    return conduct("mitigations", _compute, s, arguments, inputs=("problems",))


# ------------------------------------------------------------------------------------------ report
def _interval(value: float, low: float, high: float, digits: int = 0) -> str:
    def text(x: float) -> str:
        return "∞" if np.isinf(x) else "–" if np.isnan(x) else f"{x:.{digits}f}"

    return f"{text(value)} [{text(low)}, {text(high)}]"


def summary_markdown(result: ExperimentResult) -> str:
    """The bench as markdown: the table per problem, regime and M (methods by rank), each cell's
    winner, and where the ranking changes between the regimes."""
    data = result.data
    lines = [
        "# Staleness mitigations: one bench",
        "",
        f"{result.config.get('seeds')} seeds per setting, root seed {result.seed}. Updates to "
        "target: median over seeds at the tuned setting [95% bootstrap interval over seeds, the "
        "tuning redone per resample]; time in mean compute times; speed-up: tuned async SGD's "
        "median updates over the method's, on the same resampled seeds; ≥: async SGD never met "
        "the target within the budget, which stands in for its updates (a lower bound); 0: the "
        "method never met it.",
        "",
    ]
    for (problem, regime, m), cell in data.groupby(["problem", "regime", "workers"], sort=False):
        lines += [
            f"## {problem}, {regime} compute, M = {m} (budget {cell['budget'].iloc[0]} updates)",
            "",
            "| rank | method | setting | lr | updates to target | time to target | speed-up | reached |",
            "|---:|---|---|---:|---:|---:|---:|---:|",
        ]
        for row in cell.sort_values(["rank", "method"]).itertuples():
            setting = f"{row.axis} = {row.value}" if row.axis else ""
            lines.append(
                f"| {row.rank} | {row.label} | {setting} | {row.lr:.3g} | "
                f"{_interval(row.iterations, row.iterations_low, row.iterations_high)} | "
                f"{_interval(row.time, row.time_low, row.time_high, 1)} | "
                f"{_speedup_text(row._asdict())} | "
                f"{row.reached:.2f} |"
            )
        lines.append("")
    lines += ["## Winners", ""] + [f"- {text}" for text in winners(data)]
    lines += ["", "## Where the ranking changes between the regimes", ""]
    lines += [f"- {text}" for text in ranking_changes(data)]
    return "\n".join(lines) + "\n"


def winners(data: pd.DataFrame) -> list[str]:
    """Per (problem, regime, M): the method with the fewest median updates, its interval and speed-up,
    and whether its interval clears the runner-up's estimate."""
    out = []
    for (problem, regime, m), cell in data.groupby(["problem", "regime", "workers"], sort=False):
        first, second = cell.sort_values("iterations").iloc[:2].itertuples()
        clear = first.iterations_high < second.iterations
        out.append(
            f"{problem}, {regime}, M = {m}: **{first.label}** "
            f"{_interval(first.iterations, first.iterations_low, first.iterations_high)} updates, "
            f"speed-up {_speedup_text(first._asdict())}; "
            f"runner-up {second.label} {second.iterations:.0f}"
            + ("" if clear else " (within the winner's interval)")
        )
    return out


def ranking_changes(data: pd.DataFrame) -> list[str]:
    """Per (problem, M), between the first two regimes: the three fastest methods where they differ,
    and the methods that are faster than async SGD in one regime and slower in the other (speed-up
    estimates on either side of 1, and the interval clear of 1 in at least one regime)."""
    regimes = list(dict.fromkeys(data["regime"]))
    if len(regimes) < 2:
        return []
    first, second = regimes[:2]
    out = []
    for (problem, m), both in data.groupby(["problem", "workers"], sort=False):
        a, b = (both[both["regime"] == r].set_index("method") for r in (first, second))
        tops = [list(x.sort_values(["iterations", "label"])["label"].iloc[:3]) for x in (a, b)]
        parts = []
        if tops[0] != tops[1]:
            parts.append(
                f"fastest {', '.join(tops[0])} ({first}) but {', '.join(tops[1])} ({second})"
            )
        for method in a.index.intersection(b.index):
            x, y = a.loc[method], b.loc[method]
            opposite = (x["speedup"] - 1.0) * (y["speedup"] - 1.0) < 0
            clear = any(r["speedup_low"] > 1.0 or r["speedup_high"] < 1.0 for r in (x, y))
            if opposite and clear:
                parts.append(f"{x['label']} {_speedup_text(x)} → {_speedup_text(y)}")
        if parts:
            out.append(f"{problem}, M = {m}: " + "; ".join(parts))
    return out or ["none: the same three fastest methods, and no method changes sides of async SGD"]


def _speedup_text(row: Any) -> str:
    """A speed-up with its interval, ``≥`` where async SGD never met the target (a bound)."""
    text = _interval(row["speedup"], row["speedup_low"], row["speedup_high"], 2)
    return f"≥ {text}" if row["speedup_at_least"] else text
