r"""The teaching figures: each claim of [AbM]_ and [YF]_ measured in the simulator, theory beside it.

Every figure has a ``make_<name>(*, scale, rng, jobs, ...)`` that returns a :class:`FigureResult`: the
matplotlib figure and the tidy table behind it (a :class:`pandas.DataFrame`, one row per plotted
point). The tables come from :mod:`asyncsim.experiments` (where ``theory``'s predictions are set beside
the measurements); this module only draws: panel functions ``plot_<panel>(data, ax=None) -> ax``
use nothing but the table, so what a figure shows can be checked from its data.

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

import functools
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from matplotlib import colormaps, style
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from asyncsim import experiments
from asyncsim._rng import SeedRecord
from asyncsim._validate import check_choice
from asyncsim.experiments import (
    GROUP_SETTINGS,
    MU_GRID,
    NEAR_OPTIMAL,
    SCALES,
    TUNINGS,
    Once,
    concurrently,
    root_seed,
)

if TYPE_CHECKING:
    from asyncsim.sweep import SweepResult  # the type of a shared sweep, not a dependency

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
def _finish(
    data: pd.DataFrame, draw: Callable[[pd.DataFrame], Figure], **attrs: Any
) -> FigureResult:
    data.attrs.update(attrs)
    with style.context(STYLE):
        fig = draw(data)
    return FigureResult(fig, data)


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
        ``momentum`` and ``penalty`` only: a precomputed
        :func:`asyncsim.experiments.momentum_sweep` to share.

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
        check_choice("scale", scale, SCALES)
        root = root_seed(rng)
        nq50 = _nq50_once(scale, root, progress) if sweep is None else Once(lambda _: sweep)
        task = functools.partial(_COMPUTE[name], scale, root, progress, nq50)
        ((_, data, _),) = concurrently(
            {name: task}, jobs=jobs, executor=executor, progress=progress
        )
        return _finish(data, _DRAW[name], figure=name, scale=scale, seed=str(SeedRecord(root)))

    make.__name__ = make.__qualname__ = f"make_{name}"
    make.__doc__ = doc.rstrip() + _COMMON_PARAMETERS
    return make


# ------------------------------------------------------------------------------------------ 1 staleness


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


# ------------------------------------------------------------------------------------------ 2 momentum


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


def plot_penalty(data: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """Iterations to target relative to M = 1 against M, per tuning, the chosen μ written beside."""
    ax = _axes(ax)
    for i, (label, _) in enumerate(TUNINGS):
        rows = data[data["tuning"] == label]
        ax.plot(rows["workers"], rows["penalty"], "o-", color=f"C{i}", label=label)
        if label != TUNINGS[0][0]:
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


# ------------------------------------------------------------------------------------------ data
# Each figure's data: ``(scale, root, progress, nq50, executor) -> DataFrame`` from the experiments.
def _nq50_once(scale: str, root: int, progress: bool | None) -> Once:
    """The nq50 sweep the momentum and penalty figures share, computed by the first that needs it."""
    return Once(
        lambda executor: experiments.momentum_sweep(
            scale=scale, rng=root, executor=executor, progress=progress
        )
    )


def _staleness(scale: str, root: int, progress: bool | None, nq50: Once, executor: Any):
    return experiments.staleness_law(scale=scale, rng=root, executor=executor).data


def _momentum(scale: str, root: int, progress: bool | None, nq50: Once, executor: Any):
    common = {"scale": scale, "rng": root, "executor": executor, "progress": progress}
    digits = experiments.settings("digits", scale)
    frames = [
        experiments.best_momentum(sweep=nq50.get(executor), **common).data,
        experiments.single_run_momentum(**common).data,
        experiments.best_momentum(
            "digits-mlp", **{k: digits[k] for k in _GRID_FIELDS}, **common
        ).data,
    ]
    data = pd.concat(frames, ignore_index=True)
    order = {"grid": 0, "single-run": 1, "expected-dynamics": 2, "additive-rule": 3}
    rank = (data["problem"] != "nq50") * 10 + data["kind"].map(order)
    return data.iloc[np.argsort(rank.to_numpy(), kind="stable")].reset_index(drop=True)


_GRID_FIELDS = ("workers", "lrs", "momenta", "seeds", "steps", "record_every")


def _penalty(scale: str, root: int, progress: bool | None, nq50: Once, executor: Any):
    return experiments.penalty(
        sweep=nq50.get(executor), scale=scale, rng=root, executor=executor
    ).data


def _robust_region(scale: str, root: int, progress: bool | None, nq50: Once, executor: Any):
    return experiments.robust_region(scale=scale, rng=root, executor=executor).data


def _total_momentum(scale: str, root: int, progress: bool | None, nq50: Once, executor: Any):
    return experiments.total_momentum(scale=scale, rng=root, executor=executor).data


def _closed_loop(scale: str, root: int, progress: bool | None, nq50: Once, executor: Any):
    return experiments.closed_loop(scale=scale, rng=root, executor=executor).data


def _tuners(scale: str, root: int, progress: bool | None, nq50: Once, executor: Any):
    return experiments.tuners(scale=scale, rng=root, executor=executor, progress=progress).data


def _groups(scale: str, root: int, progress: bool | None, nq50: Once, executor: Any):
    return experiments.compute_groups(
        scale=scale, rng=root, executor=executor, progress=progress
    ).data


_COMPUTE: dict[str, Callable[..., pd.DataFrame]] = {
    "staleness": _staleness,
    "momentum": _momentum,
    "penalty": _penalty,
    "robust_region": _robust_region,
    "total_momentum": _total_momentum,
    "closed_loop": _closed_loop,
    "tuners": _tuners,
    "groups": _groups,
}
_USES_NQ50 = ("momentum", "penalty")


# ------------------------------------------------------------------------------------------ registry
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

FIGURES: tuple[str, ...] = tuple(_COMPUTE)
"""Figure names, in the order of the README."""


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

    With ``jobs > 1`` one process pool serves every figure (:func:`asyncsim.experiments.concurrently`):
    the chunks of the sweeps and the other experiments' runs queue on it together, so the cores stay
    busy. The nq50 sweep is computed once for the ``momentum`` and ``penalty`` figures. Figures are
    drawn in this thread, in the style file.
    """
    names = list(FIGURES) if names is None else list(dict.fromkeys(names))
    for name in names:
        check_choice("figure", name, FIGURES)
    check_choice("scale", scale, SCALES)
    root = root_seed(rng)
    nq50 = _nq50_once(scale, root, progress)
    tasks = {name: functools.partial(_COMPUTE[name], scale, root, progress, nq50) for name in names}
    for name, data, seconds in concurrently(tasks, jobs=jobs, progress=progress):
        result = _finish(data, _DRAW[name], figure=name, scale=scale, seed=str(SeedRecord(root)))
        yield name, result, seconds
