"""Figure 7, YellowFin against grid-tuned momentum SGD and Adam: median updates to the nq50 target
at M = 1 and M = 16 (:func:`asyncsim.experiments.tuners`)."""

from __future__ import annotations

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from asyncsim.experiments import ExperimentResult
from asyncsim.figures._draw import TEXT, axes, plain_log, row

__all__ = ["make_tuners", "plot_tuners"]


def plot_tuners(result: ExperimentResult, ax: Axes | None = None) -> Axes:
    """Grouped bars of median updates to target (range: min-max over seeds), one colour per method;
    a method that did not reach the target has a pale hatched bar to the top of the axis."""
    ax = axes(ax)
    data = result.data
    methods = sorted(dict.fromkeys(data["method"]), key=lambda m: m.startswith("YellowFin"))
    workers = sorted(data["workers"].unique())
    width = 0.8 / len(methods)
    finite = data["iterations"][np.isfinite(data["iterations"])]
    top = float(finite.max()) * 3 if len(finite) else 1e4
    handles = []
    for i, method in enumerate(methods):
        rows = data[data["method"] == method].set_index("workers").reindex(workers)
        x = np.arange(len(workers)) + (i - (len(methods) - 1) / 2) * width
        its = rows["iterations"].to_numpy()
        reached = np.isfinite(its)
        bars = ax.bar(x, np.where(reached, its, top), width, color=f"C{i}", label=method)
        for bar in np.asarray(bars.patches)[~reached]:
            bar.set(alpha=0.3, hatch="//", edgecolor=f"C{i}")
        high = np.where(np.isfinite(rows["high"]), rows["high"], top)
        ax.errorbar(
            x[reached],
            its[reached],
            yerr=[its[reached] - rows["low"].to_numpy()[reached], high[reached] - its[reached]],
            fmt="none",
            ecolor="k",
            lw=0.9,
        )
        for xi in x[~reached]:
            ax.annotate(
                "not\nreached", (xi, top / 1.1), ha="center", va="top", fontsize=TEXT, rotation=90
            )
        handles.append(Patch(facecolor=f"C{i}", label=method))
    ax.set_xticks(np.arange(len(workers)), [f"M = {m}" for m in workers])
    plain_log(ax)
    ax.set_ylabel("updates to target (median over seeds)")
    ax.set_title(
        "nq50: YellowFin against grid-tuned momentum SGD and Adam\n(bars: min-max over seeds)"
    )
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncols=2)
    return ax


_draw = row((10, 6.6), plot_tuners)


def make_tuners(result: ExperimentResult) -> Figure:
    """Grouped bars of updates to target per method and M."""
    return _draw(result)
