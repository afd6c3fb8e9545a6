"""Figure 6, closed-loop YellowFin at M = 16 on nq50: the target μ*, the measured total momentum and
the applied (algorithmic) μ over time, and the loss of the open against the closed loop
(:func:`asyncsim.experiments.closed_loop`)."""

from __future__ import annotations

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from asyncsim.experiments import ExperimentResult
from asyncsim.figures._draw import TEXT, axes, plain_log, row

__all__ = [
    "loop_colors",
    "make_closed_loop",
    "plot_closed_loop_loss",
    "plot_closed_loop_momentum",
]


_OPEN = "0.45"
"""The open loop's colour in every panel; each closed loop has its own (:func:`loop_colors`)."""

_TARGET = "k"
"""The target's colour (the momentum target in (a), the loss target in (b))."""


def loop_colors(result: ExperimentResult) -> dict[str, str]:
    """One colour per loop, the same in both panels: grey for the open loop, then the colour cycle
    (the shown closed loop first)."""
    data = result.data
    shown = data.loc[np.isclose(data["gain"], data["shown_gain"]), "loop"].iloc[0]
    closed = [loop for loop in dict.fromkeys(data["loop"]) if loop not in ("open", shown)]
    return {"open": _OPEN, shown: "C0"} | {loop: f"C{i + 1}" for i, loop in enumerate(closed)}


def plot_closed_loop_momentum(result: ExperimentResult, ax: Axes | None = None) -> Axes:
    """Target, measured total and applied (algorithmic) momentum over time of the shown closed loop
    (solid, dashed), the measured total of the open loop; colours are loops, as in
    :func:`plot_closed_loop_loss`."""
    ax = axes(ax)
    data = result.data
    colors = loop_colors(result)
    shown = data[np.isclose(data["gain"], data["shown_gain"])]
    loop = shown["loop"].iloc[0]
    open_ = data[data["loop"] == "open"]
    target, band, burn = (float(shown[c].iloc[0]) for c in ("target", "band", "burn_in"))
    ax.axhspan(target - band, target + band, color="0.85", label=f"target ± {band:g}")
    ax.axhline(target, color=_TARGET, lw=1.2, label=f"target μ* = {target:g}")
    ax.fill_between(
        shown["step"], shown["total_low"], shown["total_high"], color=colors[loop], alpha=0.2, lw=0
    )
    ax.plot(shown["step"], shown["total"], color=colors[loop], label=f"{loop}: measured total")
    ax.plot(
        shown["step"],
        shown["momentum"],
        "--",
        color=colors[loop],
        label=f"{loop}: applied (algorithmic) μ",
    )
    fixed = float(shown["fixed_point"].iloc[0])
    ax.axhline(fixed, color=colors[loop], ls=":", label=f"fixed point 1 - M(1 - μ*) = {fixed:g}")
    ax.plot(open_["step"], open_["total"], color=_OPEN, lw=1.0, label="open: measured total")
    ax.axvline(burn, color="k", ls="--", lw=0.8)
    ax.annotate(
        "burn-in 3M/γ", (burn, 0.3), xytext=(4, 0), textcoords="offset points", fontsize=TEXT
    )
    ax.set_ylim(-1.0, 1.15)
    ax.set(xlabel="update", ylabel="momentum")
    ax.set_title(
        f"(a) momentum, M = {int(shown['workers'].iloc[0])}: median over seeds (band: min-max)"
    )
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncols=2)
    return ax


def plot_closed_loop_loss(result: ExperimentResult, ax: Axes | None = None) -> Axes:
    """Loss over time of each loop (median over seeds); colours are loops, as in
    :func:`plot_closed_loop_momentum`."""
    ax = axes(ax)
    data = result.data
    colors = loop_colors(result)
    for loop in data["loop"].unique():
        rows = data[data["loop"] == loop]
        its = float(rows["iterations"].iloc[0])
        note = f"{its:.0f} updates to target" if np.isfinite(its) else "target not reached"
        ax.plot(rows["step"], rows["loss"], color=colors[loop], label=f"{loop}: {note}")
    ax.axhline(
        float(data["loss_target"].iloc[0]), color=_TARGET, ls=":", lw=1.2, label="target 1e-3 f(w0)"
    )
    plain_log(ax)
    ax.set(xlabel="update", ylabel="loss (median over seeds)")
    ax.set_title("(b) loss of each loop")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncols=1)
    return ax


_draw = row(
    (14, 6.4),
    plot_closed_loop_momentum,
    plot_closed_loop_loss,
    title="Closed-loop YellowFin on nq50 at M = 16, fixed target μ* (paper variant, α₀ = 1e-4)",
)


def make_closed_loop(result: ExperimentResult) -> Figure:
    """The momenta over time and the loss over time, open against closed loop."""
    return _draw(result)
