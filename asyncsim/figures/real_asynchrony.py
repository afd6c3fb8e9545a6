"""Real asynchrony: lock-free SGD measured on this machine against the queueing model
(:func:`asyncsim.experiments.real_asynchrony`, which replays the committed measurements; and
:func:`asyncsim.experiments.real_asynchrony.measured_staleness` for one live run, what ``asyncsim
hogwild --plot`` draws)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib import style
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from asyncsim.experiments import ExperimentResult
from asyncsim.figures._draw import STYLE, TEXT, axes, log2_axis, plain_log, row

__all__ = [
    "make_measured_staleness",
    "make_real_asynchrony",
    "plot_iterations",
    "plot_law_distance",
    "plot_real_total_momentum",
    "plot_staleness_laws",
]

# Colours as the style's hex values (a "Cn" name would resolve against whatever cycle is current
# when it is read): grey for what was measured, blue for the fitted model, vermillion for the
# geometric law and the exponential cluster whose law it is, orange for the replayed trace.
_MEASURED, _FITTED, _GEOMETRIC, _REPLAYED = "#595959", "#0072B2", "#D55E00", "#E69F00"
_LAWS = (
    ("measured", "measured", _MEASURED),
    ("fitted", "fitted cluster model", _FITTED),
    ("geometric", "geometric law", _GEOMETRIC),
)
_SOURCES = (
    ("real", "real runs", "#000000", "o"),
    ("replayed", "measured trace, engine", _REPLAYED, "s"),
    ("fitted", "fitted model, engine", _FITTED, "^"),
    ("exponential", "exponential cluster", _GEOMETRIC, "v"),
)


def _part(result: ExperimentResult, part: str) -> pd.DataFrame:
    return result.data[result.data["part"] == part]


def plot_staleness_laws(
    result: ExperimentResult, ax: Axes | None = None, *, workers: int | None = None
) -> Axes:
    """The staleness pmf of M workers: measured, fitted model and geometric law side by side (bars,
    log scale), lags up to 3M + 6; the title gives the cores, the total-variation distances to the
    measured law, and the means and variances (measured / fitted / geometric, every lag).
    ``workers``: M (default the largest in the result)."""
    ax = axes(ax)
    pmf, summary = _part(result, "pmf"), _part(result, "staleness")
    m = int(pmf["workers"].max()) if workers is None else workers
    pmf, summary = pmf[pmf["workers"] == m], summary[summary["workers"] == m]
    pmf = pmf[pmf["lag"] <= 3 * m + 6]
    width = 0.28
    for i, (column, label, color) in enumerate(_LAWS):
        ax.bar(pmf["lag"] + (i - 1) * width, pmf[column], width, color=color, label=label)
    plain_log(ax)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylim(1e-4, 1.5)
    ax.set(xlabel="staleness τ (updates)", ylabel="P(τ = l)")
    laws = summary.set_index("source")
    tv, mean, var = laws["tv_measured"], laws["mean"], laws["variance"]
    cores = int(summary["cores"].iloc[0])
    over = ", oversubscribed" if bool(summary["oversubscribed"].iloc[0]) else ""
    ax.set_title(
        f"M = {m} on {cores} cores{over}\nTV to measured: fitted {tv['fitted']:.2f}, "
        f"geometric {tv['geometric']:.2f}\nmean {mean['measured']:.1f} / {mean['fitted']:.1f} / "
        f"{mean['geometric']:.1f}, var {var['measured']:.0f} / {var['fitted']:.0f} / "
        f"{var['geometric']:.0f}"
    )
    return ax


def plot_law_distance(result: ExperimentResult, ax: Axes | None = None) -> Axes:
    """P(τ = 0) of each law against M (solid), and the total-variation distance of the fitted
    model's and of the geometric law to the measured law (dashed)."""
    ax = axes(ax)
    summary = _part(result, "staleness")
    for column, _, color in _LAWS:
        rows = summary[summary["source"] == column].sort_values("workers")
        ax.plot(rows["workers"], rows["p_zero"], "o-", color=color, label=f"P(τ = 0), {column}")
        if column != "measured":
            ax.plot(rows["workers"], rows["tv_measured"], "x--", color=color, label=f"TV, {column}")
    log2_axis(ax, np.sort(summary["workers"].unique()))
    ax.set_ylim(0, 1.45)  # room for the legend above the lines
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.set(ylabel="probability")
    ax.set_title("P(τ = 0), and TV distance\nto the measured law")
    ax.legend(loc="upper center", ncols=2)
    return ax


def _errorbars(ax: Axes, rows: pd.DataFrame, shift: float, source: tuple, label: bool) -> None:
    """Median and 95% interval of ``rows`` against M (shifted by a factor 2^shift to stay apart)."""
    _, name, color, marker = source
    ax.errorbar(
        rows["workers"].to_numpy(dtype=float) * 2.0**shift,
        rows["median"],
        yerr=[rows["median"] - rows["low"], rows["high"] - rows["median"]],
        fmt=marker,
        color=color,
        label=name if label else None,
    )


def plot_iterations(result: ExperimentResult, ax: Axes | None = None) -> Axes:
    """Updates to the problem's target per M and explicit μ: the real runs, the measured trace
    replayed through the engine, the fitted model's traces and the exponential cluster (median and
    95% bootstrap interval over runs or replays)."""
    ax = axes(ax)
    rows = _part(result, "iterations")
    momenta = np.sort(rows["momentum"].unique())
    for j, source in enumerate(_SOURCES):
        for k, mu in enumerate(momenta):
            shown = rows[(rows["source"] == source[0]) & (rows["momentum"] == mu)]
            _errorbars(ax, shown, 0.07 * (j - 1.5), source, label=k == 0)
    for mu in momenta:
        first = rows[(rows["momentum"] == mu) & (rows["workers"] == rows["workers"].min())]
        ax.annotate(
            f"μ = {mu:g}",
            (float(first["workers"].iloc[0]), float(first["high"].max())),
            xytext=(0, 6),
            textcoords="offset points",
            fontsize=TEXT,
        )
    log2_axis(ax, np.sort(rows["workers"].unique()))
    ax.set(ylabel="updates to target (median)")
    ax.set_title("Iterations to target: real runs\nagainst the engine on traces")
    ax.legend(loc="center right")
    return ax


def plot_real_total_momentum(result: ExperimentResult, ax: Axes | None = None) -> Axes:
    """The worker-local total-momentum estimate of the real runs, and of the engine on the measured
    and the fitted model's traces, against M, beside 1 - (1 - μ)/M for each explicit μ."""
    ax = axes(ax)
    rows = _part(result, "total_momentum")
    workers = np.sort(rows["workers"].unique())
    grid = np.geomspace(workers.min(), workers.max(), 50)
    for k, mu in enumerate(np.sort(rows["momentum"].unique())):
        label = "1 - (1 - μ)/M" if k == 0 else None
        ax.plot(grid, 1 - (1 - mu) / grid, ":", color=_MEASURED, lw=1.2, label=label)
        for j, source in enumerate(_SOURCES[:3]):
            shown = rows[(rows["source"] == source[0]) & (rows["momentum"] == mu)]
            _errorbars(ax, shown, 0.07 * (j - 1), source, label=k == 0)
    log2_axis(ax, workers)
    ax.set(ylabel="total momentum (estimate)")
    ax.set_title("Total momentum, μ = 0 and 0.5\n(95% intervals over runs)")
    ax.legend(loc="lower right")
    return ax


def make_real_asynchrony(result: ExperimentResult) -> Figure:
    """Two rows: the staleness laws at the three largest M, then P(τ = 0) and the distances against
    M, the iterations to target and the total momentum."""
    workers = np.sort(_part(result, "pmf")["workers"].unique())[-3:]
    with style.context(STYLE):
        fig = Figure(figsize=(15, 9.5))
        top, bottom = fig.subplots(2, 3)
        for m, ax in zip(workers, top, strict=False):
            plot_staleness_laws(result, ax, workers=int(m))
        for ax in top[len(workers) :]:  # fewer than three worker counts
            ax.remove()
        top[len(workers) - 1].legend(loc="upper right")
        plot_law_distance(result, bottom[0])
        plot_iterations(result, bottom[1])
        plot_real_total_momentum(result, bottom[2])
        fig.suptitle(
            "Real lock-free SGD on this machine against the queueing model (committed "
            "measurements, replayed;\nreal runs are not reproducible from a seed)"
        )
    return fig


_one = row((7.5, 4.5), plot_staleness_laws)


def make_measured_staleness(result: ExperimentResult) -> Figure:
    """One measured trace's staleness pmf beside the fitted model's and the geometric law
    (:func:`~asyncsim.experiments.real_asynchrony.measured_staleness`)."""
    fig = _one(result)
    fig.axes[0].legend(loc="upper right")
    return fig
