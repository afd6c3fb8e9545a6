"""The staleness-mitigation bench: each method's speed-up over tuned asynchronous SGD, per problem,
staleness regime and number of workers (:func:`asyncsim.experiments.mitigations`)."""

from __future__ import annotations

import numpy as np
from matplotlib import style
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from asyncsim.experiments import ExperimentResult
from asyncsim.figures._draw import STYLE, TEXT, axes, plain_log

__all__ = ["make_mitigations", "plot_speedups"]

FLOOR = 0.1
"""Where a method that never reached the target is drawn (speed-up 0), on the log axis."""


def plot_speedups(
    result: ExperimentResult, ax: Axes | None = None, *, problem: str, regime: str
) -> Axes:
    """Speed-up over tuned asynchronous SGD (its median updates to target over the method's) of each
    method, one marker per M with its 95% bootstrap interval over seeds; right of the line at 1 is
    faster than async SGD. A triangle is a lower bound (async SGD never reached the target; its
    budget stands in), an open marker at the left a method that never reached it."""
    ax = axes(ax)
    data = result.data
    cell = data[(data["problem"] == problem) & (data["regime"] == regime)]
    labels = list(dict.fromkeys(data["label"]))  # the bench's order, the same in every panel
    workers = sorted(cell["workers"].unique())
    height = 0.7 / max(len(workers), 1)
    for i, m in enumerate(workers):
        rows = cell[cell["workers"] == m].set_index("label").reindex(labels)
        y = np.arange(len(labels)) + (i - (len(workers) - 1) / 2) * height
        speedup = rows["speedup"].to_numpy()
        drawn = np.isfinite(speedup) & (speedup > 0)
        low, high = (
            np.clip(rows[k].to_numpy(), FLOOR, None) for k in ("speedup_low", "speedup_high")
        )
        bound = rows["speedup_at_least"].to_numpy(dtype=bool)
        for marker, where, label in (("o", drawn & ~bound, f"M = {m}"), (">", drawn & bound, None)):
            ax.errorbar(
                speedup[where],
                y[where],
                xerr=[speedup[where] - low[where], high[where] - speedup[where]],
                fmt=marker,
                color=f"C{i}",
                label=label,
            )
        ax.plot(np.full((~drawn).sum(), FLOOR), y[~drawn], "o", mfc="none", color=f"C{i}")
    ax.axvline(1.0, color="k", lw=0.9)
    ax.set_yticks(np.arange(len(labels)), labels)
    ax.invert_yaxis()
    plain_log(ax, "x")
    finite = data[["speedup", "speedup_high"]].to_numpy()
    finite = finite[np.isfinite(finite)]
    right = 1.3 * max(2.0, float(finite.max()) if finite.size else 2.0)
    ax.set_xlim(FLOOR / 1.3, right)
    ticks = [t for t in (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50) if t <= right]
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.set_xlabel("speed-up over tuned async SGD (updates to target)")
    ax.set_title(f"{problem}, {regime} compute")
    ax.grid(axis="y", visible=False)
    return ax


def make_mitigations(result: ExperimentResult) -> Figure:
    """One panel per problem (rows) and staleness regime (columns)."""
    data = result.data
    problems = list(dict.fromkeys(data["problem"]))
    regimes = list(dict.fromkeys(data["regime"]))
    with style.context(STYLE):
        fig = Figure(
            figsize=(6.2 * len(regimes), 0.36 * data["label"].nunique() * len(problems) + 1.5)
        )
        grid = np.atleast_2d(fig.subplots(len(problems), len(regimes), sharex=True, squeeze=False))
        for r, problem in enumerate(problems):
            for c, regime in enumerate(regimes):
                plot_speedups(result, grid[r, c], problem=problem, regime=regime)
        handles, labels = grid[0, 0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncols=len(labels), fontsize=TEXT)
        fig.suptitle(
            "Staleness mitigations, each tuned: speed-up over tuned async SGD\n"
            "bars: 95% bootstrap interval over seeds; open: never reached the target; "
            "▶: a lower bound (async SGD never reached it)"
        )
    return fig
