r"""The teaching figures: each claim of [AbM]_ and [YF]_ measured in the simulator, theory beside it.

Every figure has a ``make_<name>(*, scale, rng, jobs, ...)`` that returns a :class:`FigureResult`: the
matplotlib figure and the tidy table behind it (a :class:`pandas.DataFrame`, one row per plotted
point). The figure is drawn by panel functions ``plot_<panel>(data, ax=None) -> ax`` from that table
alone, so what a figure shows can be checked from its data. Where ``theory`` predicts a quantity, the
prediction is drawn beside the measurement (this module is the one part of asyncsim that imports
``theory``; the simulator never does).

==================  ============================================================================
name                claim
==================  ============================================================================
``staleness``       M exponential workers give geometric staleness; uniform compute times do not
``momentum``        asynchrony begets momentum: the best explicit μ falls as the implicit 1 - 1/M grows
``penalty``         tuning μ per M shrinks the statistical penalty of asynchrony
``robust_region``   inside the robust region the heavy ball contracts at √μ whatever α
``total_momentum``  the measured total momentum is μ when synchronous, 1 - (1 - μ)/M when not
``closed_loop``     YellowFin's closed loop holds the measured total momentum at its target
``tuners``          YellowFin against grid-tuned momentum SGD and Adam
``groups``          compute groups: hardware against statistical efficiency
==================  ============================================================================

Scales: ``"quick"`` (the committed ``figures/`` folder, about a minute on two cores) and ``"full"``
(the grids of theory/README.md §5). Matplotlib figures are built without pyplot (Agg canvas), in the style
of ``asyncsim/style.mplstyle``.

References
----------
.. [AbM] I. Mitliagkas, C. Zhang, S. Hadjis, C. Ré, "Asynchrony begets Momentum, with an Application to
   Deep Learning", Allerton 2016, arXiv:1605.09774.
.. [YF] J. Zhang, I. Mitliagkas, C. Ré, "YellowFin and the Art of Momentum Tuning", MLSys 2019,
   arXiv:1706.03471.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import colormaps, style
from matplotlib.axes import Axes
from matplotlib.figure import Figure

import theory
from asyncsim._rng import SeedRecord, stream
from asyncsim._validate import check_choice, check_int, check_rng
from asyncsim.cluster import ClusterConfig, simulate
from asyncsim.comparisons import compare_tuners
from asyncsim.distributions import Deterministic, Uniform
from asyncsim.engine import run
from asyncsim.measure import contraction_rate, iterations_to_target
from asyncsim.optim import heavy_ball
from asyncsim.problems import NoisyQuadratic, make_problem
from asyncsim.sweep import Sweep, SweepResult, _init_pool_worker, run_sweep
from asyncsim.yellowfin import yellowfin_tuner

__all__ = [
    "FIGURES",
    "GROUP_SETTINGS",
    "MU_GRID",
    "NEAR_OPTIMAL",
    "SCALES",
    "STYLE",
    "FigureResult",
    "make_closed_loop",
    "make_figures",
    "make_groups",
    "make_momentum",
    "make_penalty",
    "make_robust_region",
    "make_staleness",
    "make_total_momentum",
    "make_tuners",
    "nq50_sweep",
    "plot_closed_loop_loss",
    "plot_closed_loop_momentum",
    "plot_explicit_momentum",
    "plot_groups",
    "plot_penalty",
    "plot_rates",
    "plot_spectral_radius",
    "plot_stacked_momentum",
    "plot_staleness_distance",
    "plot_staleness_pmf",
    "plot_total_momentum",
    "plot_tuners",
    "plot_uniform_staleness",
]

STYLE = Path(__file__).with_name("style.mplstyle")
"""The one style file of the figures."""

SCALES = ("quick", "full")
"""Scales of :func:`make_figures` and every ``make_<name>``."""

MU_GRID = (-0.9, -0.675, -0.45, -0.225, 0.0, 0.225, 0.45, 0.675, 0.9)
"""The explicit momenta of theory/README.md §5."""

NEAR_OPTIMAL = 0.05
"""Tolerance of the near-optimal band: momenta whose best median iterations are within 5% of the best."""


def _lr_grid(low: float, high: float) -> tuple[float, ...]:
    """Step sizes 2^low ... 2^high by factors √2 (theory/README.md §5)."""
    return tuple(float(a) for a in 2.0 ** np.arange(low, high + 0.01, 0.5))


def _scales(quick: dict[str, Any], **full: Any) -> dict[str, dict[str, Any]]:
    """The settings of both scales: ``full`` is ``quick`` with the given changes."""
    return {"quick": quick, "full": quick | full}


_SINGLE_RUN = {  # the single-run optimum of theory/README.md §3: noiseless nq50, relative distance 1e-6
    "lrs": _lr_grid(-4, 1),
    "seeds": 8,
    "budget": {1: 500, 2: 1300, 4: 2300, 8: 4000, 16: 5500},  # updates per M: ~2x the best
    "record_every": 5,
    "target": 1e-6,
}
_DIGITS = {
    "workers": (1, 4, 16),
    "lrs": tuple(2.0 ** np.arange(-2, 2.01, 1.0)),
    "momenta": MU_GRID[::2],
    "seeds": 3,
    "steps": 1600,
    "record_every": 10,
}

# Settings per figure and scale. "quick" keeps the claims' resolution where they need it (128 seeds and
# record_every 2 for nq50) and trims what they do not (α outside the useful range, long budgets).
_SETTINGS: dict[str, dict[str, dict[str, Any]]] = {
    "staleness": _scales({"updates": 20_000, "max_workers": 16}, updates=400_000),
    "nq50": _scales(  # the noisy-quadratic sweep shared by "momentum" and "penalty"
        {
            "workers": (1, 2, 4, 8, 16),
            "lrs": _lr_grid(-6.5, -0.5),
            # 128 seeds, not the 32 of theory/README.md §5: the landscape is flat at high M (every μ in
            # [-0.225, 0.675] within 3% at M = 4), and with 32 seeds the grid's argmin jumps by
            # two grid steps between root seeds; with 128 it is non-increasing within one grid
            # step in 97% of bootstrap resamples and negative at M = 16 in 99%
            "seeds": 128,
            "steps": 1200,
            "record_every": 2,
        },
        workers=(1, 2, 4, 8, 16, 32),
        lrs=_lr_grid(-13, 1),
        steps=3000,  # the best runs need 300-700 updates; slower ones count as not reaching it
        record_every=1,
    ),
    "momentum": _scales(
        {"single_run": _SINGLE_RUN, "digits": _DIGITS},
        single_run=_SINGLE_RUN
        | {
            "lrs": _lr_grid(-8, 1),
            "seeds": 32,
            "budget": {1: 800, 2: 2000, 4: 3500, 8: 6000, 16: 9000, 32: 15000},
            "record_every": 1,
        },
        digits=_DIGITS
        | {
            "workers": (1, 2, 4, 8, 16),
            "lrs": _lr_grid(-4, 3),
            "momenta": MU_GRID,
            "seeds": 8,
            "steps": 4000,
            "record_every": 5,
        },
    ),
    "penalty": _scales({}),
    "robust_region": _scales(
        {"momenta": (0.36, 0.64, 0.81), "inside": 6, "steps": 1500, "grid": (80, 50)},
        momenta=(0.25, 0.36, 0.49, 0.64, 0.81),
        inside=10,
        steps=3000,
    ),
    "total_momentum": _scales(
        {
            "workers": (1, 2, 4, 8, 16),
            "momenta": (-0.5, -0.25, 0.0, 0.25, 0.5, 0.75),
            "lr": 0.05,
            "seeds": 2,
            "steps": 6000,
            "record_every": 10,
        },
        workers=(1, 2, 4, 8, 16, 32),
        seeds=8,
        steps=20_000,
    ),
    "closed_loop": _scales(
        {
            "workers": 16,
            "target": 0.9,
            "gains": (0.01, 0.05),
            "shown_gain": 0.05,
            "lr_init": 1e-4,
            "seeds": 4,
            "steps": 6000,
            "record_every": 10,
            "band": 0.1,
        },
        gains=(0.01, 0.05, 0.1),
        seeds=16,
        steps=20_000,
    ),
    "tuners": _scales(
        {
            "workers": (1, 16),
            "seeds": 4,
            "steps": 2500,
            "record_every": 5,
            "lrs": _lr_grid(-6, 0.5),
            "adam_lrs": _lr_grid(-9, -2),
        },
        workers=(1, 4, 16),
        seeds=32,
        steps=6000,
        record_every=2,
        lrs=_lr_grid(-13, 1),
        adam_lrs=_lr_grid(-13, -1),
    ),
    "groups": _scales(
        {"lrs": _lr_grid(-5, 1.5), "seeds": 8, "steps": 1500, "record_every": 2},
        lrs=_lr_grid(-8, 2),
        seeds=32,
        steps=4000,
        record_every=1,
    ),
}

#: YellowFin settings compared in the "tuners" figure: (label, options of
#: :func:`~asyncsim.yellowfin.yellowfin_tuner`).
_TUNER_VARIANTS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("YellowFin (paper, α₀ = 1)", {}),
    ("YellowFin (paper, α₀ = 1e-4)", {"lr_init": 1e-4}),
)

#: Hardware settings of the "groups" figure: (label, cluster of 16 workers).
GROUP_SETTINGS: tuple[tuple[str, ClusterConfig], ...] = (
    ("Exp(1) compute, no server cost", ClusterConfig(16)),
    (
        "Exp(1) compute, server busy 0.2 per apply",
        ClusterConfig(16, server_time=Deterministic(0.2)),
    ),
)


# ------------------------------------------------------------------------------------------ results
@dataclass(frozen=True, eq=False)
class FigureResult:
    """A figure and the data behind it.

    Attributes
    ----------
    fig : matplotlib.figure.Figure
        Built without pyplot; save with :meth:`save` (or ``fig.savefig``).
    data : pandas.DataFrame
        One row per plotted point; ``data.attrs`` holds the figure name, the scale and the root seed.
    """

    fig: Figure
    data: pd.DataFrame

    def save(self, folder: str | Path, name: str) -> tuple[Path, Path]:
        """Write ``<folder>/<name>.png`` and ``<folder>/<name>.csv``; return the two paths."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        png, csv = folder / f"{name}.png", folder / f"{name}.csv"
        with style.context(STYLE):
            self.fig.savefig(png)
        self.data.to_csv(csv, index=False, float_format="%.8g")
        return png, csv


# ------------------------------------------------------------------------------------------ running
class _Runner:
    """Where a figure's work runs: on an executor (chunks of sweeps and whole tasks, queued together)
    with threads that wait on it, or all in this process, one thing after another."""

    def __init__(self, executor: Executor | None, progress: bool | None) -> None:
        self.executor = executor
        self.progress = progress
        self.threads = None if executor is None else ThreadPoolExecutor(32)

    def sweep(self, sweep: Sweep) -> SweepResult:
        return run_sweep(sweep, executor=self.executor, progress=self.progress)

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        """``fn(*args)`` as a future: queued on the executor, or run now in this process."""
        if self.executor is not None:
            return self.executor.submit(fn, *args)
        return _done(fn, *args)

    def background(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future:
        """``fn(*args, **kwargs)`` in a thread of this process, for work that itself waits on the
        executor (a sweep); run now without an executor."""
        if self.threads is not None:
            return self.threads.submit(fn, *args, **kwargs)
        return _done(fn, *args, **kwargs)

    def map(self, fn: Callable[..., Any], calls: Sequence[tuple]) -> list[Any]:
        """``[fn(*args) for args in calls]``, on the executor when there is one."""
        return [f.result() for f in [self.submit(fn, *args) for args in calls]]

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self.submit(fn, *args).result()


def _done(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future:
    future: Future = Future()
    future.set_result(fn(*args, **kwargs))
    return future


@contextlib.contextmanager
def _runner(jobs: int, executor: Executor | None, progress: bool | None) -> Iterator[_Runner]:
    """A runner on ``executor``, or on a pool of ``jobs`` processes (one BLAS thread each) owned here."""
    jobs = check_int("jobs", jobs, low=1)
    with contextlib.ExitStack() as stack:
        if executor is None and jobs > 1:
            executor = stack.enter_context(ProcessPoolExecutor(jobs, initializer=_init_pool_worker))
            # Start the workers now, from this one thread: forked later, while threads of the runner
            # hold locks, a child can inherit a held lock and hang.
            executor.submit(int).result()
        runner = _Runner(executor, progress)
        if runner.threads is not None:
            stack.enter_context(runner.threads)
        yield runner


def _root_seed(rng: Any) -> int:
    """The root seed of a figure: an int as given, else one drawn from ``default_rng(rng)``."""
    rng = check_rng("rng", rng)
    if isinstance(rng, int):
        return rng
    return int(np.random.default_rng(rng).integers(2**31))


def _settings(name: str, scale: str) -> dict[str, Any]:
    check_choice("scale", scale, SCALES)
    return _SETTINGS[name][scale]


def _stream(root: int, name: str, *labels: int | str) -> np.random.SeedSequence:
    """The stream of figure ``name`` keyed by value from ``labels`` (:func:`asyncsim._rng.stream`), so
    adding a figure or a case changes no other; sweeps take ``root`` as their seed and key their own
    chunks."""
    return stream(np.random.SeedSequence(root), name, *labels)


def _finish(
    data: pd.DataFrame, draw: Callable[[pd.DataFrame], Figure], **attrs: Any
) -> FigureResult:
    data.attrs.update(attrs)
    with style.context(STYLE):
        fig = draw(data)
    return FigureResult(fig, data)


def _curvatures(name: str, **options: Any) -> np.ndarray:
    """Hessian eigenvalues of a reference quadratic (theory's input)."""
    problem = make_problem(name, **options)
    if not isinstance(problem, NoisyQuadratic):
        raise TypeError(f"{name!r} is not a quadratic with a known spectrum")
    return np.asarray(problem.curvatures)


def _quantiles(values: np.ndarray, q: Sequence[float]) -> np.ndarray:
    """Quantiles ``q`` over the last axis ignoring NaN, shape ``(len(q), ...)``; NaN where a row has no
    finite value (the estimator's first records)."""
    values = np.where(np.isfinite(values), values, np.nan)
    out = np.full((len(q), *values.shape[:-1]), np.nan)
    rows = ~np.isnan(values).all(axis=-1)
    out[:, rows] = np.nanquantile(values[rows], q, axis=-1)
    return out


def _axes(ax: Axes | None) -> Axes:
    if ax is not None:
        return ax
    with style.context(STYLE):
        return Figure().subplots()


def _row(
    size: tuple[float, float],
    *panels: Callable[[pd.DataFrame, Axes], Axes],
    title: str | None = None,
    width_ratios: Sequence[float] | None = None,
) -> Callable[[pd.DataFrame], Figure]:
    """A figure's drawing: one row of panels, each ``plot_<panel>(data, ax)``."""

    def draw(data: pd.DataFrame) -> Figure:
        fig = Figure(figsize=size)
        axes = np.atleast_1d(fig.subplots(1, len(panels), width_ratios=width_ratios))
        for panel, ax in zip(panels, axes, strict=True):
            panel(data, ax)
        if title:
            fig.suptitle(title)
        return fig

    return draw


def _log2_axis(ax: Axes, workers: Sequence[int], label: str = "workers M") -> None:
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(workers), [str(m) for m in workers])
    ax.minorticks_off()
    ax.set_xlabel(label)


_COMMON_PARAMETERS = """

    Parameters
    ----------
    scale : {"quick", "full"}
        Grids and budgets (:data:`SCALES`).
    rng : int, numpy.random.Generator or None
        Root seed (an int is used as is, else one is drawn); ``data.attrs["seed"]`` records it as the
        text of its :class:`~asyncsim._rng.SeedRecord`.
    jobs : int
        Processes of a local pool when no ``executor`` is given (1: everything in this process).
    executor : concurrent.futures.Executor or None
        Where the runs and sweep chunks go (a Dask cluster through ``client.get_executor()``).
    progress : bool or None
        Progress bars of the sweeps (default: on a terminal, not in CI).
    sweep : SweepResult or None
        ``momentum`` and ``penalty`` only: a precomputed :func:`nq50_sweep` to share.

    Returns
    -------
    FigureResult
        The figure and its data.
    """


def _maker(name: str, doc: str) -> Callable[..., FigureResult]:
    """The public ``make_<name>``: one signature for every figure."""

    def make(
        *,
        scale: str = "quick",
        rng: Any = None,
        jobs: int = 1,
        executor: Executor | None = None,
        progress: bool | None = None,
        sweep: SweepResult | None = None,
    ) -> FigureResult:
        if sweep is not None and name not in _USES_NQ50:
            raise ValueError(f"sweep is only taken by {' and '.join(_USES_NQ50)}, not {name!r}")
        return _make(
            name, scale=scale, rng=rng, jobs=jobs, executor=executor, progress=progress, sweep=sweep
        )

    make.__name__ = make.__qualname__ = f"make_{name}"
    make.__doc__ = doc.rstrip() + _COMMON_PARAMETERS
    return make


# ------------------------------------------------------------------------------------------ 1 staleness
def _staleness_case(
    compute: str, config: ClusterConfig, updates: int, seq: np.random.SeedSequence
) -> pd.DataFrame:
    """Empirical staleness law of one cluster beside the geometric law of its worker count."""
    m = config.n_workers
    trace = simulate(config, updates, rng=seq)
    skip = 20 * m  # warm-up: the first writes read version 0
    tau = trace.staleness[skip:]
    lags = np.arange(int(tau.max()) + 1)
    empirical = np.bincount(tau, minlength=lags.size) / tau.size
    geometric = theory.staleness_pmf(lags, m)
    distance = 0.5 * (np.abs(empirical - geometric).sum() + (1.0 - geometric.sum()))
    shown = (
        lags <= max(1, int(np.ceil(np.log(1e-3) / np.log(1.0 - 1.0 / m)))) if m > 1 else lags < 2
    )
    return pd.DataFrame(
        {
            "compute": compute,
            "workers": m,
            "lag": lags[shown],
            "empirical": empirical[shown],
            "geometric": geometric[shown],
            "mean": tau.mean(),
            "geometric_mean": float(theory.staleness_mean(m)),
            "tv_distance": distance,
        }
    )


def _compute_staleness(s: dict, root: int, runner: _Runner) -> pd.DataFrame:
    workers = range(1, s["max_workers"] + 1)
    cases = [("exponential", ClusterConfig(m)) for m in workers]
    cases.append(("uniform [0.5, 1.5]", ClusterConfig(4, compute=Uniform(0.5, 1.5))))
    calls = [
        (label, config, s["updates"], _stream(root, "staleness", label, config.n_workers))
        for label, config in cases
    ]
    return pd.concat(runner.map(_staleness_case, calls), ignore_index=True)


def plot_staleness_pmf(data: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """Simulated staleness pmf (dots) against the geometric law (lines) for each M, log scale."""
    ax = _axes(ax)
    exp = data[data["compute"] == "exponential"]
    workers = np.sort(exp["workers"].unique())
    colors = colormaps["viridis"](np.linspace(0.0, 0.92, workers.size))
    for m, color in zip(workers, colors, strict=True):
        rows = exp[exp["workers"] == m]
        ax.plot(rows["lag"], rows["geometric"], color=color, lw=1.0)
        ax.plot(rows["lag"], rows["empirical"], "o", color=color, ms=2.2)
    ax.set_yscale("log")
    ax.set_ylim(1e-4, 1.2)
    ax.set(xlabel="staleness τ (updates)", ylabel="P(τ = l)")
    ax.set_title("(a) M = 1..16 Exp(1) workers: simulated (dots), geometric (lines)")
    for m in (1, 2, 4, 16):
        row = exp[(exp["workers"] == m) & (exp["lag"] == 0)]
        ax.annotate(
            f"M = {m}",
            (0.0, float(row["empirical"].iloc[0])),
            xytext=(4, 0),
            textcoords="offset points",
            fontsize=7,
            va="center",
        )
    return ax


def plot_staleness_distance(data: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """Total-variation distance between the simulated law and the geometric law, against M."""
    ax = _axes(ax)
    per_case = data.groupby(["compute", "workers"], as_index=False).first()
    exp = per_case[per_case["compute"] == "exponential"]
    other = per_case[per_case["compute"] != "exponential"]
    ax.plot(exp["workers"], exp["tv_distance"], "o-", label="Exp(1) compute")
    for _, row in other.iterrows():
        ax.plot(
            row["workers"], row["tv_distance"], "s", color="C1", label=f"{row['compute']} compute"
        )
    ax.set(xlabel="workers M", ylabel="TV distance to geometric law")
    ax.set_title("(b) distance to (1/M)(1 - 1/M)^l")
    ax.set_ylim(bottom=0)
    ax.legend()
    return ax


def plot_uniform_staleness(data: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """The non-exponential case: simulated pmf (bars) against the geometric law of its M."""
    ax = _axes(ax)
    rows = data[data["compute"] != "exponential"]
    label, m = rows["compute"].iloc[0], int(rows["workers"].iloc[0])
    rows = rows[rows["lag"] <= 4 * m]
    ax.bar(rows["lag"], rows["empirical"], color="C1", alpha=0.7, label=f"simulated, {label}")
    ax.plot(rows["lag"], rows["geometric"], "o-", color="k", ms=3, label="geometric law")
    ax.set(xlabel="staleness τ (updates)", ylabel="P(τ = l)")
    ax.set_title(
        f"(c) M = {m}, compute {label}:\nmean {rows['mean'].iloc[0]:.2f} = M - 1, law not geometric"
    )
    ax.legend()
    return ax


make_staleness = _maker(
    "staleness",
    """Figure 1: the staleness law of M = 1..16 exponential workers against the geometric law
    ``(1/M)(1 - 1/M)^l``, and uniform [0.5, 1.5] compute times at M = 4 against it.

    Data: one row per (compute law, M, lag) with the ``empirical`` and ``geometric`` pmf, the mean
    staleness and the total-variation distance ``tv_distance`` of the whole law (after a warm-up of
    20 M updates).
    """,
)


# ------------------------------------------------------------------------------------------ nq50 sweep
def nq50_sweep(
    *,
    scale: str = "quick",
    rng: Any = None,
    jobs: int = 1,
    executor: Executor | None = None,
    progress: bool | None = None,
) -> SweepResult:
    """The grid search on ``nq50`` behind the ``momentum`` and ``penalty`` figures (compute it once
    and pass it to both as ``sweep=``): M × α × the nine μ of theory/README.md §5 × 128 seeds."""
    s = _settings("nq50", scale)
    sweep = Sweep(
        "nq50",
        lrs=s["lrs"],
        momenta=MU_GRID,
        workers=s["workers"],
        seeds=s["seeds"],
        steps=s["steps"],
        record_every=s["record_every"],
        seed=_root_seed(rng),
    )
    with _runner(jobs, executor, progress) as runner:
        return runner.sweep(sweep)


def _grid_optimum(result: SweepResult, tolerance: float = NEAR_OPTIMAL) -> pd.DataFrame:
    """Per staleness point: the best (α, μ) by median iterations, and the band of μ within
    ``tolerance`` of the best (each μ at its own best α)."""
    med = result.median_iterations()  # (points, lrs, momenta)
    per_mu = med.min(axis=1)
    momenta = np.asarray(result.sweep.momenta)
    best = result.best()
    rows = []
    for p, (m, g) in enumerate(result.sweep.points()):
        near = momenta[per_mu[p] <= (1.0 + tolerance) * per_mu[p].min()]
        rows.append(
            {
                "workers": m if result.sweep.groups is None else g,
                "momentum": best["momentum"][p],
                "lr": best["lr"][p],
                "iterations": best["iterations"][p],
                "band_low": near.min() if near.size else np.nan,
                "band_high": near.max() if near.size else np.nan,
            }
        )
    return pd.DataFrame(rows)


def _theory_explicit(curvatures: np.ndarray, workers: np.ndarray) -> pd.DataFrame:
    """Expected-dynamics optimum of the explicit momentum (and the additive rule) per M."""
    mu_s = theory.implicit_momentum(workers)
    opt = theory.optimal_explicit_momentum(mu_s, curvatures)
    single = theory.optimal_explicit_momentum(0.0, curvatures)
    return pd.DataFrame(
        {
            "workers": workers,
            "momentum": opt.mu_l,
            "lr": opt.alpha,
            "rate": opt.rate,
            "additive_rule": theory.additive_rule(float(single.mu_l), mu_s),
        }
    )


# ------------------------------------------------------------------------------------------ 2 momentum
def _single_run_sweeps(s: dict, root: int) -> list[Sweep]:
    """The single-run optimum of theory/README.md §3 on noiseless nq50: median iterations to
    ‖w - w*‖ ≤ 1e-6 ‖w_0 - w*‖; one sweep per M with its own budget (M = 1 has no randomness: one seed)."""
    return [
        Sweep(
            "nq50",
            lrs=s["lrs"],
            momenta=MU_GRID,
            workers=(m,),
            seeds=1 if m == 1 else s["seeds"],
            steps=budget,
            record_every=s["record_every"],
            target=s["target"],
            metric="distance",
            problem_options=(("noise", 0.0),),
            seed=root,
        )
        for m, budget in s["budget"].items()
    ]


def _digits_sweep(d: dict, root: int) -> Sweep:
    """The digits-mlp grid of the momentum figure at settings ``d`` and root seed ``root``."""
    return Sweep(
        "digits-mlp",
        lrs=d["lrs"],
        momenta=d["momenta"],
        workers=d["workers"],
        seeds=d["seeds"],
        steps=d["steps"],
        record_every=d["record_every"],
        seed=root,
    )


def _compute_momentum(
    s: dict, root: int, runner: _Runner, nq50: SweepResult | Future
) -> pd.DataFrame:
    digits = runner.background(runner.sweep, _digits_sweep(s["digits"], root))
    single = [
        runner.background(runner.sweep, sw) for sw in _single_run_sweeps(s["single_run"], root)
    ]
    workers = np.array(list(s["single_run"]["budget"]))
    fine = np.unique(np.round(np.concatenate([np.geomspace(1, workers.max(), 13), workers]), 9))
    theory_rows = runner.submit(_theory_explicit, _curvatures("nq50"), fine)
    nq50 = nq50.result() if isinstance(nq50, Future) else nq50
    theory_rows = theory_rows.result()
    frames = [
        _grid_optimum(nq50).assign(problem="nq50", kind="grid"),
        pd.concat([_grid_optimum(f.result()) for f in single]).assign(
            problem="nq50", kind="single-run"
        ),
        theory_rows.drop(columns="additive_rule").assign(problem="nq50", kind="expected-dynamics"),
        theory_rows[["workers"]].assign(
            momentum=theory_rows["additive_rule"], problem="nq50", kind="additive-rule"
        ),
        _grid_optimum(digits.result()).assign(problem="digits-mlp", kind="grid"),
    ]
    data = pd.concat(frames, ignore_index=True)
    data.insert(2, "implicit", 1.0 - 1.0 / data["workers"])
    return data[["problem", "kind", *[c for c in data.columns if c not in ("problem", "kind")]]]


def _grid_rows(data: pd.DataFrame, problem: str, kind: str) -> pd.DataFrame:
    return data[(data["problem"] == problem) & (data["kind"] == kind)].sort_values("workers")


def plot_stacked_momentum(
    data: pd.DataFrame, problem: str = "nq50", ax: Axes | None = None
) -> Axes:
    """Stacked bars per M: the implicit momentum 1 - 1/M from zero up, and the best explicit μ of the
    grid stacked on it when positive, from zero down when negative; a tick marks their sum."""
    ax = _axes(ax)
    grid = _grid_rows(data, problem, "grid")
    x, mu_s, mu_l = (grid[c].to_numpy() for c in ("workers", "implicit", "momentum"))
    width = x * 0.45
    ax.bar(x, mu_s, width=width, color="0.78", label="implicit 1 - 1/M")
    ax.bar(
        x,
        mu_l,
        width=width,
        bottom=np.where(mu_l >= 0, mu_s, 0.0),
        color="C0",
        label="explicit: best on the grid",
    )
    ax.plot(x, mu_s + mu_l, "_", color="k", ms=16, mew=2, label="sum (first-order total)")
    for xi, m in zip(x, mu_l, strict=True):
        ax.annotate(f"{m:+.3g}", (xi, -0.98), ha="center", fontsize=7.5, color="C0")
    ax.axhline(0, color="k", lw=0.6)
    _log2_axis(ax, x.astype(int).tolist())
    ax.set_ylim(-1.0, max(1.6, float(np.max(mu_s + np.maximum(mu_l, 0))) + 0.35))
    ax.set_ylabel("momentum")
    ax.set_title(f"{problem}: best explicit μ (blue, value below) with the implicit 1 - 1/M")
    ax.legend(loc="upper left", ncols=3)
    return ax


def plot_explicit_momentum(
    data: pd.DataFrame, problem: str = "nq50", ax: Axes | None = None
) -> Axes:
    """The best explicit μ against M (error bars: the μ within 5% of the best), beside the theory's
    optimal explicit μ (expected dynamics), the additive rule and the single-run optimum."""
    ax = _axes(ax)
    grid = _grid_rows(data, problem, "grid")
    x, mu_l = grid["workers"].to_numpy(), grid["momentum"].to_numpy()
    ax.errorbar(
        x,
        mu_l,
        yerr=[mu_l - grid["band_low"], grid["band_high"] - mu_l],
        fmt="o-",
        color="C0",
        label=f"best on the grid (bars: μ within {NEAR_OPTIMAL:.0%} of it)",
    )
    single = _grid_rows(data, problem, "single-run")
    if len(single):
        ax.plot(
            single["workers"],
            single["momentum"],
            "D--",
            color="C1",
            ms=5,
            label="single-run optimum (noiseless, ‖w - w*‖ ≤ 1e-6 ‖w0 - w*‖)",
        )
    expected = _grid_rows(data, problem, "expected-dynamics")
    if len(expected):
        ax.plot(
            expected["workers"],
            expected["momentum"],
            "-",
            color="C2",
            label="theory: optimal explicit μ (expected dynamics)",
        )
        additive = _grid_rows(data, problem, "additive-rule")
        ax.plot(
            additive["workers"],
            additive["momentum"],
            ":",
            color="0.35",
            label="additive rule μ* - (1 - 1/M)",
        )
    else:
        ax.annotate(
            "no curvature spectrum: no theory curve",
            (0.98, 0.96),
            xycoords="axes fraction",
            ha="right",
            va="top",
            fontsize=7.5,
            color="0.3",
        )
    ax.axhline(0, color="k", lw=0.6)
    _log2_axis(ax, x.astype(int).tolist())
    ax.set_ylim(-1.0, 1.0)
    ax.set_ylabel("explicit momentum μ")
    ax.set_title(f"{problem}: explicit momentum against M")
    ax.legend(loc="lower left")
    return ax


def _draw_momentum(data: pd.DataFrame) -> Figure:
    fig = Figure(figsize=(11, 7.4))
    axes = fig.subplots(2, 2)
    for column, problem in enumerate(("nq50", "digits-mlp")):
        plot_stacked_momentum(data, problem, axes[0, column])
        plot_explicit_momentum(data, problem, axes[1, column])
    fig.suptitle(
        "Asynchrony begets momentum: the best explicit momentum falls as the implicit grows"
    )
    return fig


make_momentum = _maker(
    "momentum",
    """Figure 2, asynchrony begets momentum: the best explicit μ by grid search for each M, stacked on
    the implicit 1 - 1/M, on ``nq50`` and ``digits-mlp``; on nq50 beside the theory's optimal explicit
    momentum (expected dynamics on its spectrum; digits-mlp has none) and the single-run optimum.

    Data: one row per (problem, kind, M) with ``kind`` in ``grid`` (median iterations to the loss
    target over seeds; ``band_low``/``band_high``: the μ within :data:`NEAR_OPTIMAL` of the best),
    ``single-run`` (noiseless nq50, relative distance 1e-6), ``expected-dynamics`` (theory, with its
    ``rate``) and ``additive-rule`` (μ* - μ_S).""",
)


# ------------------------------------------------------------------------------------------ 3 penalty
_TUNINGS = (
    ("μ = 0.9 fixed", (0.9,)),
    ("tuned over μ ≥ 0", "nonnegative"),
    ("tuned over all μ", None),
)


def _compute_penalty(
    s: dict, root: int, runner: _Runner, nq50: SweepResult | Future
) -> pd.DataFrame:
    nq50 = nq50.result() if isinstance(nq50, Future) else nq50
    workers = np.array(nq50.sweep.workers)
    momenta = np.array(nq50.sweep.momenta)
    frames = []
    for label, allowed in _TUNINGS:
        chosen = momenta[momenta >= 0] if allowed == "nonnegative" else allowed
        best = nq50.best(momenta=chosen)
        frames.append(
            pd.DataFrame(
                {
                    "tuning": label,
                    "workers": workers,
                    "momentum": best["momentum"],
                    "lr": best["lr"],
                    "iterations": best["iterations"],
                    "penalty": best["iterations"] / best["iterations"][0],
                }
            )
        )
    predicted = runner.call(theory.predicted_penalty, workers, _curvatures("nq50"))
    frames.append(
        pd.DataFrame(
            {
                "tuning": "theory: tuned μ (expected dynamics)",
                "workers": workers,
                "penalty": predicted,
            }
        )
    )
    return pd.concat(frames, ignore_index=True)


def plot_penalty(data: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """Iterations to target relative to M = 1 against M, per tuning, the chosen μ written beside."""
    ax = _axes(ax)
    for i, (label, _) in enumerate(_TUNINGS):
        rows = data[data["tuning"] == label]
        ax.plot(rows["workers"], rows["penalty"], "o-", color=f"C{i}", label=label)
        if label != _TUNINGS[0][0]:
            offset = 8 if i == 1 else -12
            for _, r in rows.iterrows():
                ax.annotate(
                    f"{r['momentum']:g}",
                    (r["workers"], r["penalty"]),
                    xytext=(3, offset),
                    textcoords="offset points",
                    fontsize=6.5,
                    color=f"C{i}",
                )
    rows = data[data["tuning"].str.startswith("theory")]
    ax.plot(
        rows["workers"],
        rows["penalty"],
        "--",
        color="0.4",
        label="theory: tuned μ, mean iterate (expected dynamics)",
    )
    _log2_axis(ax, rows["workers"].astype(int).tolist())
    ax.set_yscale("log")
    ax.set_ylabel("iterations to target / iterations at M = 1")
    ax.set_title("Statistical penalty of asynchrony on nq50 (numbers: the μ chosen at each M)")
    ax.legend()
    return ax


make_penalty = _maker(
    "penalty",
    """Figure 3, the statistical penalty: median iterations to target on nq50 relative to M = 1, with
    μ = 0.9 fixed, tuned over μ ≥ 0, and tuned over all μ (the momentum chosen at each M), beside
    theory's predicted penalty of the mean iterate (``theory.predicted_penalty``).

    Data: one row per (tuning, M): ``momentum``, ``lr``, ``iterations``, ``penalty``.
    """,
)


# ------------------------------------------------------------------------------------------ 4 robust region
def _compute_robust_region(s: dict, root: int, runner: _Runner) -> pd.DataFrame:
    return runner.call(_robust_region_data, s)


def _robust_region_data(s: dict) -> pd.DataFrame:
    problem = make_problem("q10", kappa=5)
    h = _curvatures("q10", kappa=5)
    h_min, h_max = float(h.min()), float(h.max())

    def radius(alpha: np.ndarray, mu: np.ndarray) -> np.ndarray:
        return theory.spectral_radius(alpha[..., None], mu[..., None], h).max(axis=-1)

    n_alpha, n_mu = s["grid"]
    alphas = np.geomspace(0.02, 5.0, n_alpha)
    mus = np.linspace(0.0, 0.98, n_mu)
    a, m = (v.ravel() for v in np.meshgrid(alphas, mus))
    heat = pd.DataFrame({"kind": "radius", "lr": a, "momentum": m, "rate": radius(a, m)})
    edge_mu = np.linspace(0.0, 0.99, 100)
    low = theory.robust_region(edge_mu, h_min)[0]
    high = theory.robust_region(edge_mu, h_max)[1]
    bounds = pd.DataFrame({"kind": "bounds", "momentum": edge_mu, "lower": low, "upper": high})
    measured_mu, measured_lr = [], []
    for mu in s["momenta"]:
        lo, hi = theory.robust_region(mu, h_min)[0], theory.robust_region(mu, h_max)[1]
        inside = np.geomspace(lo * 1.15, hi / 1.15, s["inside"])
        below = lo * np.array([0.25, 0.5])
        measured_lr += [*below, *inside]
        measured_mu += [mu] * (below.size + inside.size)
    lr, mu = np.array(measured_lr), np.array(measured_mu)
    hist = run(
        problem, heavy_ball(lr, mu), None, s["steps"], record_every=1, estimate_momentum=False
    )
    assert hist.distance is not None  # a quadratic knows its optimum
    rate = contraction_rate(hist.distance[20:], hist.steps[20:])
    lo_all = theory.robust_region(mu, h_min)[0]
    hi_all = theory.robust_region(mu, h_max)[1]
    measured = pd.DataFrame(
        {
            "kind": "measured",
            "lr": lr,
            "momentum": mu,
            "rate": np.where(hist.diverged, np.inf, rate),
            "predicted": radius(lr, mu),
            "sqrt_momentum": np.sqrt(mu),
            "inside": (lr >= lo_all) & (lr <= hi_all),
        }
    )
    curve_lr = np.geomspace(0.01, 5.0, 200)
    curves = [
        pd.DataFrame(
            {
                "kind": "curve",
                "lr": curve_lr,
                "momentum": mu_c,
                "rate": radius(curve_lr, np.full_like(curve_lr, mu_c)),
            }
        )
        for mu_c in s["momenta"]
    ]
    data = pd.concat([heat, bounds, measured, *curves], ignore_index=True)
    data.attrs["curvatures"] = h.tolist()
    return data


def plot_spectral_radius(data: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """Heatmap of the heavy ball's worst spectral radius over (α, μ) with the robust region's edges
    and the measured configurations."""
    ax = _axes(ax)
    heat = data[data["kind"] == "radius"]
    alphas, mus = np.unique(heat["lr"]), np.unique(heat["momentum"])
    values = heat.pivot(index="momentum", columns="lr", values="rate").to_numpy()
    mesh = ax.pcolormesh(alphas, mus, np.minimum(values, 1.0), shading="nearest", vmin=0, vmax=1)
    ax.figure.colorbar(mesh, ax=ax, label="max spectral radius ρ (≥ 1 clipped)")
    bounds = data[data["kind"] == "bounds"]
    ok = bounds["lower"] <= bounds["upper"]
    ax.plot(
        bounds["lower"][ok],
        bounds["momentum"][ok],
        "w-",
        lw=1.5,
        label="robust region: (1-√μ)²/h_min ≤ α ≤ (1+√μ)²/h_max",
    )
    ax.plot(bounds["upper"][ok], bounds["momentum"][ok], "w-", lw=1.5)
    measured = data[data["kind"] == "measured"]
    ax.plot(
        measured["lr"], measured["momentum"], "o", mfc="none", mec="w", ms=4, label="measured runs"
    )
    ax.set_xscale("log")
    ax.set_xlim(alphas.min(), alphas.max())
    ax.set(xlabel="step size α", ylabel="momentum μ")
    ax.set_title("(a) spectral radius on q10, κ = 5 (theory)")
    ax.legend(loc="lower left", labelcolor="w")
    ax.grid(False)
    return ax


def plot_rates(data: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """Measured contraction per step against α for each μ: on √μ inside the region."""
    ax = _axes(ax)
    measured = data[data["kind"] == "measured"]
    for i, mu in enumerate(np.unique(measured["momentum"])):
        color = f"C{i}"
        curve = data[(data["kind"] == "curve") & np.isclose(data["momentum"], mu)]
        ax.plot(curve["lr"], curve["rate"], "-", color=color, lw=1.0)
        rows = measured[np.isclose(measured["momentum"], mu)]
        inside = rows[rows["inside"].astype(bool)]
        ax.fill_betweenx(
            [0, 1.2], inside["lr"].min() / 1.15, inside["lr"].max() * 1.15, color=color, alpha=0.08
        )
        ax.axhline(np.sqrt(mu), color=color, ls=":", lw=0.9)
        ax.plot(
            rows["lr"],
            rows["rate"],
            "o",
            color=color,
            label=f"μ = {mu:g}: measured (√μ = {np.sqrt(mu):g})",
        )
    ax.set_xscale("log")
    ax.set_ylim(0.3, 1.05)
    ax.set(xlabel="step size α", ylabel="contraction per step")
    ax.set_title("(b) measured rates (dots) and ρ (lines); shaded: the region")
    ax.legend(loc="lower right")
    return ax


make_robust_region = _maker(
    "robust_region",
    """Figure 4, the robust region: the heavy ball's spectral radius over (α, μ) on ``q10`` (κ = 5)
    with the region's edges, and rates measured by the engine (noiseless runs, ``contraction_rate``)
    at several α: on √μ inside the region, above it outside.

    Data: ``kind`` ``radius`` (the heatmap), ``bounds`` (the edges per μ), ``measured`` (``rate``
    against the ``predicted`` radius, ``inside`` the region) and ``curve`` (ρ against α per μ).
    Deterministic: ``rng`` is not used.
    """,
)


# ------------------------------------------------------------------------------------------ 5 total momentum
def _total_momentum_data(s: dict, root: int) -> pd.DataFrame:
    problem = make_problem("nq50")
    cases = [("async", m) for m in s["workers"]] + [("sync", max(s["workers"]))]
    mus = np.asarray(s["momenta"])
    traces, explicit, keys = [], [], []
    for mode, m in cases:
        for k in range(s["seeds"]):
            seq = _stream(root, "total_momentum", mode, m, k)
            trace = simulate(ClusterConfig(m, mode=mode), s["steps"], rng=seq)
            traces += [trace] * mus.size
            explicit += list(mus)
            keys += [(mode, m, k)] * mus.size
    hist = run(
        problem,
        heavy_ball(s["lr"], np.array(explicit)),
        traces,
        s["steps"],
        rng=_stream(root, "total_momentum", "noise"),
        record_every=s["record_every"],
        estimate_momentum=True,
    )
    late = hist.steps >= s["steps"] // 3  # past the transient: at the noise floor
    total = _quantiles(hist["total_momentum"][late].T, (0.5, 0.1, 0.9))
    per_run = pd.DataFrame(
        {
            "mode": [k[0] for k in keys],
            "workers": [k[1] for k in keys],
            "seed": [k[2] for k in keys],
            "explicit": explicit,
            "measured": total[0],
            "low": total[1],
            "high": total[2],
            "diverged": hist.diverged,
        }
    )
    data = per_run.groupby(["mode", "workers", "explicit"], as_index=False, sort=False).median()
    data = data.drop(columns="seed")
    data["writers"] = np.where(data["mode"] == "async", data["workers"], 1)
    data["predicted"] = theory.total_momentum(
        data["explicit"].to_numpy(), data["writers"].to_numpy()
    )
    return data


def _compute_total_momentum(s: dict, root: int, runner: _Runner) -> pd.DataFrame:
    return runner.call(_total_momentum_data, s, root)


def plot_total_momentum(data: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """Measured total momentum against the explicit μ, with 1 - (1 - μ)/M for each M."""
    ax = _axes(ax)
    grid = np.linspace(data["explicit"].min() - 0.05, data["explicit"].max() + 0.05, 50)
    asyn = data[data["mode"] == "async"]
    for i, m in enumerate(np.sort(asyn["workers"].unique())):
        rows = asyn[asyn["workers"] == m]
        color = f"C{i}"
        ax.plot(grid, 1.0 - (1.0 - grid) / m, "-", color=color, lw=0.9)
        ax.errorbar(
            rows["explicit"],
            rows["measured"],
            yerr=[rows["measured"] - rows["low"], rows["high"] - rows["measured"]],
            fmt="o",
            color=color,
            label=f"async M = {m}",
        )
    sync = data[data["mode"] == "sync"]
    ax.plot(
        sync["explicit"],
        sync["measured"],
        "ks",
        mfc="none",
        ms=7,
        label=f"sync M = {int(sync['workers'].iloc[0])} (one writer)",
    )
    ax.plot(grid, grid, "k:", lw=0.9, label="algorithmic μ")
    ax.set(xlabel="explicit (algorithmic) momentum μ", ylabel="measured total momentum μ̂_T")
    ax.set_title(
        "Measured on nq50 event traces (median over time; bars: 10-90%); lines: 1 - (1 - μ)/M"
    )
    ax.legend(loc="lower right")
    return ax


make_total_momentum = _maker(
    "total_momentum",
    """Figure 5, measured total momentum: the engine's worker-local estimate (``total_momentum``) on
    cluster event traces of nq50 (heavy ball, α = 0.05, at the noise floor) against the algorithmic μ,
    with ``theory.total_momentum`` = 1 - (1 - μ)/M: equal when synchronous, higher when asynchronous.

    Data: one row per (mode, M, μ): ``measured`` (median over the run's last two thirds, then over
    seeds), its 10-90% range over time ``low``/``high``, and ``predicted``.
    """,
)


# ------------------------------------------------------------------------------------------ 6 closed loop
def _closed_loop_data(s: dict, root: int) -> pd.DataFrame:
    problem = make_problem("nq50")
    m, n_seeds = s["workers"], s["seeds"]
    gains = np.array([0.0, *s["gains"]])
    traces = [
        simulate(ClusterConfig(m), s["steps"], rng=_stream(root, "closed_loop", "trace", k))
        for k in range(n_seeds)
    ]
    g_index, seed_index = (a.ravel() for a in np.indices((gains.size, n_seeds)))
    hist = run(
        problem,
        yellowfin_tuner(
            lr_init=s["lr_init"],
            closed_loop=gains[g_index] > 0,
            target_momentum=s["target"],
            gain=gains[g_index],
        ),
        [traces[i] for i in seed_index],
        s["steps"],
        rng=[_stream(root, "closed_loop", "noise", k) for k in seed_index],
        record_every=s["record_every"],
        estimate_momentum=True,
    )
    shape = (hist.steps.size, gains.size, n_seeds)
    its = iterations_to_target(hist, problem.target).reshape(gains.size, n_seeds)
    frames = []
    for j, gain in enumerate(gains):
        total = _quantiles(hist["total_momentum"].reshape(shape)[:, j], (0.5, 0.0, 1.0))
        frames.append(
            pd.DataFrame(
                {
                    "loop": "open" if gain == 0 else f"closed, γ = {gain:g}",
                    "gain": gain,
                    "step": hist.steps,
                    "target": hist["mu_star"].reshape(shape)[:, j].mean(axis=1),
                    "total": total[0],
                    "total_low": total[1],
                    "total_high": total[2],
                    "momentum": np.median(hist["momentum"].reshape(shape)[:, j], axis=1),
                    "lr": np.median(hist["lr"].reshape(shape)[:, j], axis=1),
                    "loss": np.median(hist.loss.reshape(shape)[:, j], axis=1),
                    "iterations": np.median(its[j]),
                    "reached": np.isfinite(its[j]).mean(),
                    "diverged": hist.diverged.reshape(gains.size, n_seeds)[j].mean(),
                }
            )
        )
    data = pd.concat(frames, ignore_index=True)
    data["loss_target"] = problem.target
    data["fixed_point"] = 1.0 - m * (1.0 - s["target"])
    data["workers"] = m
    data["shown_gain"] = s["shown_gain"]
    data["burn_in"] = 3 * m / s["shown_gain"]  # three time constants M/γ of the shown loop
    data["band"] = s["band"]
    return data


def _compute_closed_loop(s: dict, root: int, runner: _Runner) -> pd.DataFrame:
    return runner.call(_closed_loop_data, s, root)


def plot_closed_loop_momentum(data: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """Target, measured total and applied (algorithmic) momentum over time, closed loop against open."""
    ax = _axes(ax)
    shown = data[np.isclose(data["gain"], data["shown_gain"])]
    gain = float(shown["gain"].iloc[0])
    open_ = data[data["loop"] == "open"]
    target, band, burn = (float(shown[c].iloc[0]) for c in ("target", "band", "burn_in"))
    ax.axhspan(target - band, target + band, color="C2", alpha=0.12, label=f"target ± {band:g}")
    ax.axhline(target, color="C2", lw=1.2, label=f"target μ* = {target:g}")
    ax.fill_between(
        shown["step"], shown["total_low"], shown["total_high"], color="C0", alpha=0.2, lw=0
    )
    ax.plot(
        shown["step"], shown["total"], color="C0", label=f"closed (γ = {gain:g}): measured total"
    )
    ax.plot(shown["step"], shown["momentum"], color="C1", label="closed: applied (algorithmic) μ")
    ax.axhline(
        float(shown["fixed_point"].iloc[0]),
        color="C1",
        ls=":",
        label=f"fixed point 1 - M(1 - μ*) = {float(shown['fixed_point'].iloc[0]):g}",
    )
    ax.plot(open_["step"], open_["total"], color="0.5", lw=0.9, label="open loop: measured total")
    ax.axvline(burn, color="k", ls="--", lw=0.7)
    ax.annotate("burn-in 3M/γ", (burn, 0.3), xytext=(3, 0), textcoords="offset points", fontsize=7)
    ax.set_ylim(-1.0, 1.15)
    ax.set(xlabel="update", ylabel="momentum")
    ax.set_title(f"(a) M = {int(shown['workers'].iloc[0])}: median over seeds (band: min-max)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncols=2)
    return ax


def plot_closed_loop_loss(data: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """Loss over time of the open and closed loops (median over seeds)."""
    ax = _axes(ax)
    for i, loop in enumerate(data["loop"].unique()):
        rows = data[data["loop"] == loop]
        its = float(rows["iterations"].iloc[0])
        note = f"{its:.0f} updates to target" if np.isfinite(its) else "target not reached"
        ax.plot(
            rows["step"],
            rows["loss"],
            color="0.5" if loop == "open" else f"C{i}",
            label=f"{loop}: {note}",
        )
    ax.axhline(
        float(data["loss_target"].iloc[0]), color="k", ls=":", lw=0.9, label="target 1e-3 f(w0)"
    )
    ax.set_yscale("log")
    ax.set(xlabel="update", ylabel="loss (median over seeds)")
    ax.set_title("(b) loss: open against closed loop")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncols=2)
    return ax


make_closed_loop = _maker(
    "closed_loop",
    """Figure 6, closed-loop YellowFin at M = 16 on nq50: the target μ*, the measured total momentum
    and the applied (algorithmic) μ over time, and the loss of the open against the closed loop.

    The target is fixed (μ* = 0.9, so that the loop has a fixed point inside its clamp: 1 - M(1 - μ*)
    = -0.6) and the tuner starts from α₀ = 1e-4 (with the paper's α₀ = 1 every run diverges at M = 16).
    Data: one row per (loop, recorded step) of medians over seeds; ``burn_in`` (three time constants
    M/γ of the shown loop) and ``band`` state the claim on the measured total.
    """,
)


# ------------------------------------------------------------------------------------------ 7 tuners
def _tuner_rows(s: dict, m: int, label: str, options: dict, root: int, grids: bool) -> pd.DataFrame:
    """One :func:`compare_tuners` call; only the first call per M needs the grids."""
    lrs, adam_lrs = (s["lrs"], s["adam_lrs"]) if grids else ((0.1,), (0.01,))
    result = compare_tuners(
        "nq50",
        n_workers=m,
        seeds=s["seeds"],
        steps=s["steps"],
        record_every=s["record_every"],
        lrs=lrs,
        momenta=MU_GRID if grids else (0.0,),
        adam_lrs=adam_lrs,
        rng=root,
        **options,
    )
    rows = []
    for i, method in enumerate(result.methods):
        if method != "yellowfin" and not grids:
            continue
        per_seed = result.per_seed[i]
        rows.append(
            {
                "workers": m,
                "method": label if method == "yellowfin" else f"{method} (grid-tuned)",
                "iterations": result.iterations[i],
                "low": per_seed.min(),
                "high": per_seed.max(),
                "reached": np.isfinite(per_seed).mean(),
                "lr": result.best[i].get("lr", np.nan),
                "momentum": result.best[i].get("momentum", np.nan),
            }
        )
    return pd.DataFrame(rows)


def _compute_tuners(s: dict, root: int, runner: _Runner) -> pd.DataFrame:
    calls = [
        (s, m, label, options, root, k == 0)
        for m in s["workers"]
        for k, (label, options) in enumerate(_TUNER_VARIANTS)
    ]
    return pd.concat(runner.map(_tuner_rows, calls), ignore_index=True)


def plot_tuners(data: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """Grouped bars of median iterations to target (range: min-max over seeds); missing: not reached."""
    ax = _axes(ax)
    methods = sorted(dict.fromkeys(data["method"]), key=lambda m: m.startswith("YellowFin"))
    workers = sorted(data["workers"].unique())
    width = 0.8 / len(methods)
    finite = data["iterations"][np.isfinite(data["iterations"])]
    top = float(finite.max()) * 3 if len(finite) else 1e4
    for i, method in enumerate(methods):
        rows = data[data["method"] == method].set_index("workers").reindex(workers)
        x = np.arange(len(workers)) + (i - (len(methods) - 1) / 2) * width
        its = rows["iterations"].to_numpy()
        reached = np.isfinite(its)
        ax.bar(x[reached], its[reached], width, color=f"C{i}", label=method)
        high = np.where(np.isfinite(rows["high"]), rows["high"], top)
        ax.errorbar(
            x[reached],
            its[reached],
            yerr=[its[reached] - rows["low"].to_numpy()[reached], high[reached] - its[reached]],
            fmt="none",
            ecolor="k",
            lw=0.7,
        )
        for xi in x[~reached]:
            ax.bar(xi, top, width, color=f"C{i}", alpha=0.3, hatch="//", edgecolor=f"C{i}")
            ax.annotate("target\nnot\nreached", (xi, top / 1.15), ha="center", va="top", fontsize=7)
    ax.set_xticks(np.arange(len(workers)), [f"M = {m}" for m in workers])
    ax.set_yscale("log")
    ax.set_ylabel("updates to target (median over seeds)")
    ax.set_title(
        "nq50: YellowFin against grid-tuned momentum SGD and Adam (bars: min-max over seeds)"
    )
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncols=2)
    return ax


make_tuners = _maker(
    "tuners",
    """Figure 7, YellowFin against grid-tuned momentum SGD and Adam: median updates to the nq50 target
    at M = 1 and M = 16 (:func:`asyncsim.comparisons.compare_tuners`; common random numbers).

    Data: one row per (M, method): ``iterations`` (median), ``low``/``high`` (min/max over seeds),
    ``reached`` (fraction of seeds that met the target) and the grid's choice ``lr``, ``momentum``.
    """,
)


# ------------------------------------------------------------------------------------------ 8 groups
def _compute_groups(s: dict, root: int, runner: _Runner) -> pd.DataFrame:
    frames = []
    groups = (1, 2, 4, 8, 16)
    sweeps = [
        runner.background(
            runner.sweep,
            Sweep(
                "nq50",
                lrs=s["lrs"],
                momenta=MU_GRID,
                workers=(cluster.n_workers,),
                groups=groups,
                staleness="cluster",
                cluster=cluster,
                seeds=s["seeds"],
                steps=s["steps"],
                record_every=s["record_every"],
                seed=root,
            ),
        )
        for _, cluster in GROUP_SETTINGS
    ]
    for (label, cluster), future in zip(GROUP_SETTINGS, sweeps, strict=True):
        result = future.result()
        best = _grid_optimum(result)
        shape = (len(groups), s["seeds"], -1)
        per_update = result["time_per_update"].reshape(shape)[:, :, 0].mean(axis=1)
        pick = [
            (result["lr"].reshape(shape)[p, 0] == best["lr"][p])
            & (result["momentum"].reshape(shape)[p, 0] == best["momentum"][p])
            for p in range(len(groups))
        ]
        measured_time = [
            np.median(result["time_to_target"].reshape(shape)[p][:, pick[p]])
            for p in range(len(groups))
        ]
        frame = best.assign(setting=label, time_per_update=per_update)
        frame["theory_time_per_update"] = (
            theory.time_per_update(cluster.n_workers, np.array(groups))
            if cluster.server_time is None
            else np.nan
        )
        frame["time_to_target"] = frame["time_per_update"] * frame["iterations"]
        frame["measured_time_to_target"] = measured_time
        for name, column in (
            ("hardware", "time_per_update"),
            ("statistical", "iterations"),
            ("relative_time", "time_to_target"),
        ):
            frame[name] = frame[column] / frame[column].iloc[0]
        frame["best"] = frame["time_to_target"] == frame["time_to_target"].min()
        frames.append(frame.rename(columns={"workers": "groups"}))
    data = pd.concat(frames, ignore_index=True)
    return data[["setting", *[c for c in data.columns if c != "setting"]]]


def plot_groups(data: pd.DataFrame, setting: str, ax: Axes | None = None) -> Axes:
    """Hardware efficiency (time per update), statistical efficiency (updates to target) and their
    product (time to target) against the number of groups, each relative to g = 1; best g starred."""
    ax = _axes(ax)
    rows = data[data["setting"] == setting]
    g = rows["groups"].to_numpy()
    ax.plot(g, rows["hardware"], "o-", color="C0", label="time per update (HE)")
    ax.plot(g, rows["statistical"], "o-", color="C1", label="updates to target (SE)")
    ax.plot(g, rows["relative_time"], "o-", color="C2", lw=2.2, label="time to target = HE·SE")
    theory_tpu = rows["theory_time_per_update"].to_numpy()
    if np.isfinite(theory_tpu).all():
        ax.plot(
            g,
            theory_tpu / theory_tpu[0],
            "x",
            color="k",
            ms=7,
            label="theory: time per update H_{M/g}/(g H_M)",
        )
    best = rows[rows["best"].astype(bool)]
    ax.plot(
        best["groups"],
        best["relative_time"],
        "*",
        color="C3",
        ms=14,
        zorder=5,
        label=f"best: g = {int(best['groups'].iloc[0])}",
    )
    for _, r in rows.iterrows():
        ax.annotate(
            f"μ={r['momentum']:g}",
            (r["groups"], r["statistical"]),
            xytext=(0, 5),
            textcoords="offset points",
            ha="center",
            fontsize=6.5,
            color="C1",
        )
    _log2_axis(ax, g.tolist(), "compute groups g (16 workers)")
    ax.set_yscale("log")
    ax.set_ylabel("relative to g = 1 (synchronous)")
    ax.set_title(setting)
    ax.legend(loc="lower left")
    return ax


def _draw_groups(data: pd.DataFrame) -> Figure:
    settings = list(dict.fromkeys(data["setting"]))
    fig = Figure(figsize=(11, 4.3))
    axes = fig.subplots(1, len(settings), sharey=True)
    for ax, setting in zip(np.atleast_1d(axes), settings, strict=True):
        plot_groups(data, setting, ax)
    fig.suptitle(
        "Compute groups on nq50: hardware against statistical efficiency, (α, μ) tuned per g"
    )
    return fig


make_groups = _maker(
    "groups",
    """Figure 8, compute groups: 16 workers in g ∈ {1, 2, 4, 8, 16} groups, (α, μ) tuned per g on nq50
    (cluster sweeps), in two hardware settings (:data:`GROUP_SETTINGS`): exponential compute without
    server cost, where fully asynchronous wins, and a server busy 0.2 time units per apply (the SimPy
    model's contention), where the time to target has an interior minimum.

    Data: one row per (setting, g): the tuned ``lr``, ``momentum``, ``iterations``, the measured
    ``time_per_update`` (theory's H_{M/g}/g for exponential compute without server), their product
    ``time_to_target``, the median measured time to target at the tuned point, the ratios to g = 1
    (``hardware``, ``statistical``, ``relative_time``) and the ``best`` g.
    """,
)


# ------------------------------------------------------------------------------------------ registry
_COMPUTE: dict[str, Callable[..., pd.DataFrame]] = {
    "staleness": _compute_staleness,
    "momentum": _compute_momentum,
    "penalty": _compute_penalty,
    "robust_region": _compute_robust_region,
    "total_momentum": _compute_total_momentum,
    "closed_loop": _compute_closed_loop,
    "tuners": _compute_tuners,
    "groups": _compute_groups,
}
_DRAW: dict[str, Callable[[pd.DataFrame], Figure]] = {
    "staleness": _row(
        (12, 3.6),
        plot_staleness_pmf,
        plot_staleness_distance,
        plot_uniform_staleness,
        width_ratios=(1.4, 1, 1),
    ),
    "momentum": _draw_momentum,
    "penalty": _row((6.4, 4.2), plot_penalty),
    "robust_region": _row((11, 4.0), plot_spectral_radius, plot_rates),
    "total_momentum": _row((6.8, 4.6), plot_total_momentum),
    "closed_loop": _row(
        (11, 4.2),
        plot_closed_loop_momentum,
        plot_closed_loop_loss,
        title="Closed-loop YellowFin on nq50 at M = 16, fixed target μ* (paper variant, α₀ = 1e-4)",
    ),
    "tuners": _row((7.2, 4.2), plot_tuners),
    "groups": _draw_groups,
}
_USES_NQ50 = ("momentum", "penalty")

FIGURES: tuple[str, ...] = tuple(_COMPUTE)
"""Figure names, in the order of the README."""


def _make(
    name: str,
    *,
    scale: str,
    rng: Any,
    jobs: int,
    executor: Executor | None,
    progress: bool | None = None,
    sweep: SweepResult | None = None,
) -> FigureResult:
    s = _settings(name, scale)
    root = _root_seed(rng)
    with _runner(jobs, executor, progress) as runner:
        extra = {}
        if name in _USES_NQ50:
            extra["nq50"] = sweep or nq50_sweep(
                scale=scale, rng=root, executor=runner.executor, progress=progress
            )
        data = _COMPUTE[name](s, root, runner, **extra)
    return _finish(data, _DRAW[name], figure=name, scale=scale, seed=str(SeedRecord(root)))


def make_figures(
    names: Sequence[str] | None = None,
    *,
    scale: str = "quick",
    rng: Any = 0,
    jobs: int = 1,
    progress: bool | None = None,
) -> Iterator[tuple[str, FigureResult, float]]:
    """Compute the named figures (default: all of :data:`FIGURES`) concurrently and yield each as it is
    ready: ``(name, result, seconds since the start)``.

    With ``jobs > 1`` one process pool serves every figure: the chunks of the sweeps and the other
    figures' runs queue on it together, so the cores stay busy. The nq50 sweep is computed once for
    the ``momentum`` and ``penalty`` figures. Figures are drawn in this thread, in the style file.
    """
    names = list(FIGURES) if names is None else list(dict.fromkeys(names))
    for name in names:
        check_choice("figure", name, FIGURES)
    check_choice("scale", scale, SCALES)
    root = _root_seed(rng)
    start = time.perf_counter()
    with _runner(jobs, None, progress) as runner:
        shared = None
        if any(n in _USES_NQ50 for n in names):
            shared = runner.background(
                nq50_sweep, scale=scale, rng=root, executor=runner.executor, progress=progress
            )

        def compute(name: str) -> pd.DataFrame:
            extra = {"nq50": shared} if name in _USES_NQ50 else {}
            return _COMPUTE[name](_settings(name, scale), root, runner, **extra)

        futures = {name: runner.background(compute, name) for name in names}
        for name in names:
            result = _finish(
                futures[name].result(),
                _DRAW[name],
                figure=name,
                scale=scale,
                seed=str(SeedRecord(root)),
            )
            yield name, result, time.perf_counter() - start
