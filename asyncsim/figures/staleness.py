"""Figure 1, the staleness law: M = 1..16 exponential workers against the geometric law
``(1/M)(1 - 1/M)^l``, and uniform [0.5, 1.5] compute times at M = 4 against it
(:func:`asyncsim.experiments.staleness_law`)."""

from __future__ import annotations

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from asyncsim.experiments import ExperimentResult
from asyncsim.figures._draw import TEXT, axes, plain_log, row

__all__ = [
    "make_staleness",
    "plot_staleness_distance",
    "plot_staleness_pmf",
    "plot_uniform_staleness",
]


def plot_staleness_pmf(result: ExperimentResult, ax: Axes | None = None) -> Axes:
    """Simulated staleness pmf (dots) against the geometric law (lines) for each M, log scale."""
    ax = axes(ax)
    data = result.data
    exp = data[data["compute"] == "exponential"]
    workers = np.sort(exp["workers"].unique())
    colors = colormaps["viridis"](np.linspace(0.0, 0.92, workers.size))
    for m, color in zip(workers, colors, strict=True):
        rows = exp[exp["workers"] == m]
        ax.plot(rows["lag"], rows["geometric"], color=color, lw=1.2)
        ax.plot(rows["lag"], rows["empirical"], "o", color=color, ms=3)
    plain_log(ax)
    ax.set_ylim(1e-4, 1.5)
    ax.set(xlabel="staleness τ (updates)", ylabel="P(τ = l)")
    ax.set_title(f"(a) M = 1..{workers.max()} Exp(1) workers:\nsimulated (dots), geometric (lines)")
    for m in (1, 2, 4, workers.max()):
        first = exp[(exp["workers"] == m) & (exp["lag"] == 0)]
        ax.annotate(
            f"M = {m}",
            (0.0, float(first["empirical"].iloc[0])),
            xytext=(5, 0),
            textcoords="offset points",
            fontsize=TEXT,
            va="center",
        )
    return ax


def plot_staleness_distance(result: ExperimentResult, ax: Axes | None = None) -> Axes:
    """Total-variation distance between the simulated law and the geometric law, against M."""
    ax = axes(ax)
    per_case = result.data.groupby(["compute", "workers"], as_index=False).first()
    exp = per_case[per_case["compute"] == "exponential"]
    other = per_case[per_case["compute"] != "exponential"]
    ax.plot(exp["workers"], exp["tv_distance"], "o-", label="Exp(1) compute")
    for _, case in other.iterrows():
        ax.plot(
            case["workers"],
            case["tv_distance"],
            "s",
            color="C1",
            label=f"{case['compute']} compute",
        )
    ax.set(xlabel="workers M", ylabel="TV distance to geometric law")
    ax.set_title("(b) distance to the geometric law\n(1/M)(1 - 1/M)^l")
    ax.set_xticks(sorted({1, *range(4, int(per_case["workers"].max()) + 1, 4)}))
    ax.set_ylim(bottom=0)
    ax.legend(loc="center right")
    return ax


def plot_uniform_staleness(result: ExperimentResult, ax: Axes | None = None) -> Axes:
    """The non-exponential case: simulated pmf (bars) against the geometric law of its M."""
    ax = axes(ax)
    rows = result.data[result.data["compute"] != "exponential"]
    label, m = rows["compute"].iloc[0], int(rows["workers"].iloc[0])
    rows = rows[rows["lag"] <= 4 * m]
    ax.bar(rows["lag"], rows["empirical"], color="C1", alpha=0.7, label=f"simulated, {label}")
    ax.plot(rows["lag"], rows["geometric"], "o-", color="k", ms=3, label="geometric law")
    ax.set(xlabel="staleness τ (updates)", ylabel="P(τ = l)")
    ax.set_title(
        f"(c) M = {m}, compute {label}:\nmean {rows['mean'].iloc[0]:.2f} ≈ M - 1, law not geometric"
    )
    ax.legend()
    return ax


_draw = row(
    (14, 4.6),
    plot_staleness_pmf,
    plot_staleness_distance,
    plot_uniform_staleness,
    width_ratios=(1.4, 1, 1),
)


def make_staleness(result: ExperimentResult) -> Figure:
    """The three panels of :func:`asyncsim.experiments.staleness_law`'s result: the pmf per M, the
    total-variation distance to the geometric law against M, and the uniform-compute case."""
    return _draw(result)
