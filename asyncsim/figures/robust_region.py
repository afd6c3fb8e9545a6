"""Figure 4, the robust region: the heavy ball's spectral radius over (α, μ) on ``q10`` (κ = 5) with
the region's edges, and rates measured by the engine at several α: on √μ inside the region, above it
outside (:func:`asyncsim.experiments.robust_region`)."""

from __future__ import annotations

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from asyncsim.experiments import ExperimentResult
from asyncsim.figures._draw import axes, plain_log, row

_EDGE = "k"
"""The robust region's edges: black, seen on the map's colours (its radii are all above 0.3)."""

__all__ = ["make_robust_region", "plot_rates", "plot_spectral_radius"]


def _problem(result: ExperimentResult) -> str:
    """The problem's name and condition number, as the result records them."""
    name = result.config.get("problem", "the problem")
    curvatures = result.data.attrs.get("curvatures")
    return f"{name}, κ = {max(curvatures) / min(curvatures):.3g}" if curvatures else str(name)


def plot_spectral_radius(result: ExperimentResult, ax: Axes | None = None) -> Axes:
    """Heatmap of the heavy ball's worst spectral radius over (α, μ) with the robust region's edges
    and the measured configurations."""
    ax = axes(ax)
    data = result.data
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
        "-",
        color=_EDGE,
        lw=2.2,
        label="robust region: (1-√μ)²/h_min ≤ α ≤ (1+√μ)²/h_max",
    )
    ax.plot(bounds["upper"][ok], bounds["momentum"][ok], "-", color=_EDGE, lw=2.2)
    measured = data[data["kind"] == "measured"]
    for i, mu in enumerate(np.unique(measured["momentum"])):
        rows = measured[np.isclose(measured["momentum"], mu)]
        ax.plot(rows["lr"], rows["momentum"], "o", color=f"C{i}", mec="k", ms=6)
    plain_log(ax, "x")
    ax.set_xlim(alphas.min(), alphas.max())
    ax.set(xlabel="step size α", ylabel="momentum μ")
    ax.set_title(
        f"(a) theory: worst spectral radius on {_problem(result)};\ndots: the runs of (b), by μ"
    )
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncols=1)
    ax.grid(False)
    return ax


def plot_rates(result: ExperimentResult, ax: Axes | None = None) -> Axes:
    """Measured contraction per step against α for each μ: on √μ inside the region."""
    ax = axes(ax)
    data = result.data
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
            label=f"μ = {mu:g}: measured (√μ = {np.sqrt(mu):.3g})",
        )
    plain_log(ax, "x")
    ax.set_ylim(0.3, 1.05)
    ax.set(xlabel="step size α", ylabel="contraction per step")
    ax.set_title("(b) measured rates (dots), theory's ρ (lines),\n√μ (dotted); shaded: the region")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncols=1)
    return ax


_draw = row((14, 6.2), plot_spectral_radius, plot_rates)


def make_robust_region(result: ExperimentResult) -> Figure:
    """The spectral-radius map with the region, and the measured rates against α."""
    return _draw(result)
