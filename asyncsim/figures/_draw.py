"""What every figure module shares: the style file, a panel's axes, a row of panels, axis formats."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from matplotlib import style
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import Formatter, LogLocator

from asyncsim.experiments import ExperimentResult

__all__ = ["STYLE", "TEXT", "axes", "log2_axis", "plain_log", "row"]

STYLE = Path(__file__).resolve().parents[1] / "style.mplstyle"
"""The one style file of the figures."""

TEXT = 10.0
"""The smallest text of a figure, in points at its saved size (annotations use it)."""

Panel = Callable[..., Axes]


def axes(ax: Axes | None) -> Axes:
    """``ax``, or the axes of a new one-panel figure in the style."""
    if ax is not None:
        return ax
    with style.context(STYLE):
        return Figure().subplots()


def row(
    size: tuple[float, float],
    *panels: Panel,
    title: str | None = None,
    width_ratios: Sequence[float] | None = None,
) -> Callable[[ExperimentResult], Figure]:
    """A figure's drawing: one row of panels, each ``plot_<panel>(result, ax)``, in the style."""

    def draw(result: ExperimentResult) -> Figure:
        with style.context(STYLE):
            fig = Figure(figsize=size)
            drawn = np.atleast_1d(fig.subplots(1, len(panels), width_ratios=width_ratios))
            for panel, ax in zip(panels, drawn, strict=True):
                panel(result, ax)
            if title:
                fig.suptitle(title)
        return fig

    return draw


def log2_axis(ax: Axes, workers: Sequence[int], label: str = "workers M") -> None:
    """A log-2 x axis with a plain tick label at each worker count."""
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(workers), [str(m) for m in workers])
    ax.minorticks_off()
    ax.set_xlabel(label)


_MINOR = (1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0)
"""Minor ticks of a log axis within a decade (labelled when it spans less than one)."""


class _PlainLog(Formatter):
    """Log-axis tick labels as plain numbers (0.01, 2, 300), never 2×10^0: every decade; 2 and 5
    times a decade where the view spans less than two decades; every tick where it spans less than
    one."""

    def __call__(self, x: float, pos: int | None = None) -> str:
        if not np.isfinite(x) or x <= 0:
            return ""
        exponent = np.log10(x)
        low, high = sorted(self.axis.get_view_interval())
        span = np.log10(high / low) if low > 0 else np.inf
        coefficient = x / 10.0 ** np.floor(exponent + 1e-9)
        shown = (
            abs(exponent - round(exponent)) < 1e-9
            or span < 1.0
            or (span < 2.0 and any(np.isclose(coefficient, (2.0, 5.0))))
        )
        return f"{x:g}" if shown else ""


def plain_log(ax: Axes, axis: str = "y") -> None:
    """A log scale on ``axis`` of ``ax`` labelled with plain numbers (:class:`_PlainLog`)."""
    target = ax.yaxis if axis == "y" else ax.xaxis
    (ax.set_yscale if axis == "y" else ax.set_xscale)("log")
    target.set_minor_locator(LogLocator(subs=_MINOR))
    target.set_major_formatter(_PlainLog())
    target.set_minor_formatter(_PlainLog())
