"""Figure 5, measured total momentum: the engine's worker-local estimate on cluster event traces of
nq50 against the algorithmic μ, with 1 - (1 - μ)/M: equal when synchronous, higher when
asynchronous (:func:`asyncsim.experiments.total_momentum`)."""

from __future__ import annotations

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from asyncsim.experiments import ExperimentResult
from asyncsim.figures._draw import axes, row

__all__ = ["make_total_momentum", "plot_total_momentum"]


def plot_total_momentum(result: ExperimentResult, ax: Axes | None = None) -> Axes:
    """Measured total momentum against the explicit μ, with 1 - (1 - μ)/M for each M."""
    ax = axes(ax)
    data = result.data
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
        "Measured on nq50 event traces (median over time;\nbars: 10-90%); lines: 1 - (1 - μ)/M"
    )
    ax.legend(loc="lower right")
    return ax


_draw = row((8.5, 6.2), plot_total_momentum)


def make_total_momentum(result: ExperimentResult) -> Figure:
    """The measured total momentum against μ per M."""
    return _draw(result)
