"""Figure 2, asynchrony begets momentum: the best explicit μ by grid search for each M, stacked on
the implicit 1 - 1/M, on ``nq50`` and ``digits-mlp``; on nq50 beside the theory's optimal explicit
momentum (expected dynamics on its spectrum; digits-mlp has none) and the single-run optimum.

Its result (:func:`momentum_results`) stacks three experiments: :func:`asyncsim.experiments.best_momentum`
on nq50 and on digits-mlp, and :func:`asyncsim.experiments.single_run_momentum` on nq50.
"""

from __future__ import annotations

from concurrent.futures import Executor
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import style
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from asyncsim import experiments
from asyncsim.experiments import NEAR_OPTIMAL, ExperimentResult
from asyncsim.figures._draw import STYLE, TEXT, axes, log2_axis

__all__ = ["make_momentum", "momentum_results", "plot_explicit_momentum", "plot_stacked_momentum"]

_DIGITS_GRID = ("workers", "lrs", "momenta", "seeds", "steps", "record_every")


def momentum_results(
    *,
    scale: str = "quick",
    rng: Any = None,
    executor: Executor | None = None,
    progress: bool | None = None,
    sweep: Any = None,
) -> ExperimentResult:
    """The three experiments the figure draws, at one root seed, as one result (``sweep``: the nq50
    :func:`asyncsim.experiments.momentum_sweep` to share, else computed here)."""
    common = {"scale": scale, "rng": experiments.root_seed(rng), "executor": executor}
    digits = experiments.settings("digits", scale)
    parts = {
        "nq50": experiments.best_momentum(sweep=sweep, progress=progress, **common),
        "single_run": experiments.single_run_momentum(progress=progress, **common),
        "digits": experiments.best_momentum(
            "digits-mlp", **{k: digits[k] for k in _DIGITS_GRID}, progress=progress, **common
        ),
    }
    return experiments.combine("momentum", parts)


def _rows(data: pd.DataFrame, problem: str, kind: str) -> pd.DataFrame:
    return data[(data["problem"] == problem) & (data["kind"] == kind)].sort_values("workers")


def plot_stacked_momentum(
    result: ExperimentResult, ax: Axes | None = None, *, problem: str = "nq50"
) -> Axes:
    """Stacked bars per M: the implicit momentum 1 - 1/M from zero up, and the best explicit μ of the
    grid stacked on it when positive, from zero down when negative; a tick marks their sum."""
    ax = axes(ax)
    grid = _rows(result.data, problem, "grid")
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
        ax.annotate(f"{m:+.3g}", (xi, -0.97), ha="center", fontsize=TEXT, color="C0")
    ax.axhline(0, color="k", lw=0.6)
    log2_axis(ax, x.astype(int).tolist())
    ax.set_ylim(-1.0, max(1.6, float(np.max(mu_s + np.maximum(mu_l, 0))) + 0.55))
    ax.set_ylabel("momentum")
    ax.set_title(f"{problem}: best explicit μ (blue, value below)\nstacked on the implicit 1 - 1/M")
    ax.legend(loc="upper left", ncols=2)
    return ax


def plot_explicit_momentum(
    result: ExperimentResult, ax: Axes | None = None, *, problem: str = "nq50"
) -> Axes:
    """The best explicit μ against M (error bars: the μ within 5% of the best), beside the theory's
    optimal explicit μ (expected dynamics), the additive rule and the single-run optimum."""
    ax = axes(ax)
    data = result.data
    grid = _rows(data, problem, "grid")
    x, mu_l = grid["workers"].to_numpy(), grid["momentum"].to_numpy()
    ax.errorbar(
        x,
        mu_l,
        yerr=[mu_l - grid["band_low"], grid["band_high"] - mu_l],
        fmt="o-",
        color="C0",
        label=f"best on the grid (bars: μ within {NEAR_OPTIMAL:.0%} of it)",
    )
    single = _rows(data, problem, "single-run")
    if len(single):
        ax.plot(
            single["workers"],
            single["momentum"],
            "D--",
            color="C1",
            ms=5,
            label="single-run optimum (noiseless, ‖w - w*‖ ≤ 1e-6 ‖w0 - w*‖)",
        )
    expected = _rows(data, problem, "expected-dynamics")
    if len(expected):
        ax.plot(
            expected["workers"],
            expected["momentum"],
            "-",
            color="C2",
            label="theory: optimal explicit μ (expected dynamics)",
        )
        additive = _rows(data, problem, "additive-rule")
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
            fontsize=TEXT,
            color="0.3",
        )
    ax.axhline(0, color="k", lw=0.6)
    log2_axis(ax, x.astype(int).tolist())
    ax.set_ylim(-1.0, 1.0)
    ax.set_ylabel("explicit momentum μ")
    ax.set_title(f"{problem}: explicit momentum against M")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncols=1)
    return ax


def make_momentum(result: ExperimentResult) -> Figure:
    """Four panels: per problem (nq50, digits-mlp) the stacked momenta and the explicit μ against M."""
    with style.context(STYLE):
        fig = Figure(figsize=(14, 11.5))
        grid = fig.subplots(2, 2)
        for column, problem in enumerate(("nq50", "digits-mlp")):
            plot_stacked_momentum(result, grid[0, column], problem=problem)
            plot_explicit_momentum(result, grid[1, column], problem=problem)
        fig.suptitle(
            "Asynchrony begets momentum: the best explicit momentum falls as the implicit grows"
        )
    return fig
