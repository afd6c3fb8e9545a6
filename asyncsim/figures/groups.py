"""Figure 8, compute groups: 16 workers in g ∈ {1, 2, 4, 8, 16} groups, (α, μ) tuned per g on nq50, in
two hardware settings: hardware against statistical efficiency
(:func:`asyncsim.experiments.compute_groups`)."""

from __future__ import annotations

import numpy as np
from matplotlib import style
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from asyncsim.experiments import ExperimentResult
from asyncsim.figures._draw import STYLE, TEXT, axes, log2_axis, plain_log

__all__ = ["make_groups", "plot_groups"]


def plot_groups(result: ExperimentResult, ax: Axes | None = None, *, setting: str) -> Axes:
    """Hardware efficiency (time per update), statistical efficiency (updates to target) and their
    product (time to target) against the number of groups, each relative to g = 1; best g starred."""
    ax = axes(ax)
    rows = result.data[result.data["setting"] == setting]
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
            label="theory: time per update H(M/g) / (g·H(M))",
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
            xytext=(0, 6),
            textcoords="offset points",
            ha="center",
            fontsize=TEXT,
            color="C1",
        )
    log2_axis(ax, g.tolist(), "compute groups g (16 workers)")
    plain_log(ax)
    ax.set_ylabel("relative to g = 1 (synchronous)")
    ax.set_title(setting)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncols=1)
    return ax


def make_groups(result: ExperimentResult) -> Figure:
    """One panel per hardware setting, sharing the y axis."""
    settings = list(dict.fromkeys(result.data["setting"]))
    with style.context(STYLE):
        fig = Figure(figsize=(14, 7))
        drawn = np.atleast_1d(fig.subplots(1, len(settings), sharey=True))
        for ax, setting in zip(drawn, settings, strict=True):
            plot_groups(result, ax, setting=setting)
        fig.suptitle(
            "Compute groups on nq50: hardware against statistical efficiency, (α, μ) tuned per g"
        )
    return fig
