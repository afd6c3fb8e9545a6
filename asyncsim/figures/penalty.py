"""Figure 3, the statistical penalty: median iterations to target on nq50 relative to M = 1, with
μ = 0.9 fixed, tuned over μ ≥ 0 and tuned over all μ (panel a), and, in its own panel, theory's
penalty of the expected iterate (panel b), which answers another question
(:func:`asyncsim.experiments.penalty`)."""

from __future__ import annotations

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from asyncsim.experiments import TUNINGS, ExperimentResult
from asyncsim.figures._draw import TEXT, axes, log2_axis, plain_log, row

__all__ = ["make_penalty", "plot_penalty", "plot_penalty_theory"]

_THEORY_NOTE = (
    "The expected iterate of many noiseless runs,\n"
    "at theory's best (α, μ) for each M: rate ratio\n"
    "log γ(1) / log γ(M) of theory/README.md §3.\n"
    "It is lowest at M = 1 and where the implicit\n"
    "1 - 1/M alone is the spectrum's best heavy-ball\n"
    "momentum; in between and beyond, the lagged\n"
    "second momentum costs rate. Noise, which sets\n"
    "the measured penalty of (a), is not in it."
)


def plot_penalty(result: ExperimentResult, ax: Axes | None = None) -> Axes:
    """Measured iterations to target relative to M = 1 against M, per tuning; the μ chosen by the
    tuned rules written beside their points."""
    ax = axes(ax)
    data = result.data
    for i, (label, _) in enumerate(TUNINGS):
        rows = data[data["tuning"] == label]
        ax.plot(rows["workers"], rows["penalty"], "o-", color=f"C{i}", label=label)
        if label == TUNINGS[0][0]:
            continue
        for _, r in rows.iterrows():
            ax.annotate(
                f"{r['momentum']:g}",
                (r["workers"], r["penalty"]),
                xytext=(4, 7 if i == 1 else -16),
                textcoords="offset points",
                fontsize=TEXT,
                color=f"C{i}",
            )
    measured = data[~data["tuning"].str.startswith("theory")]
    log2_axis(ax, sorted(measured["workers"].astype(int).unique()))
    plain_log(ax)
    ax.set_ylabel("iterations to target / at M = 1")
    ax.set_title("(a) measured: noisy runs to the loss target\n(numbers: the μ chosen at each M)")
    ax.legend(loc="upper left")
    return ax


def plot_penalty_theory(result: ExperimentResult, ax: Axes | None = None) -> Axes:
    """Theory's penalty of the expected iterate against M, with what it measures written beside."""
    ax = axes(ax)
    rows = result.data[result.data["tuning"].str.startswith("theory")]
    ax.plot(rows["workers"], rows["penalty"], "s--", color="0.35", label="theory: expected iterate")
    log2_axis(ax, rows["workers"].astype(int).tolist())
    plain_log(ax)
    ax.set_ylabel("updates of the mean iterate / at M = 1")
    ax.set_title("(b) theory: the mean iterate, noiseless,\ntuned (α, μ) per M")
    ax.annotate(
        _THEORY_NOTE,
        (0.02, 0.98),
        xycoords="axes fraction",
        va="top",
        fontsize=TEXT,
        color="0.25",
    )
    ax.legend(loc="lower right")
    return ax


_draw = row(
    (13, 5.6),
    plot_penalty,
    plot_penalty_theory,
    title="Statistical penalty of asynchrony on nq50",
)


def make_penalty(result: ExperimentResult) -> Figure:
    """The measured penalty per tuning rule (a) and theory's mean-iterate penalty (b)."""
    return _draw(result)
