r"""The teaching figures: each claim of [AbM]_ and [YF]_ measured in the simulator, theory beside it.

Drawing only. Each figure is a module with a ``make_<name>(result) -> Figure`` that draws an
:class:`~asyncsim.experiments.ExperimentResult` and panel functions ``plot_<panel>(result, ax=None)
-> ax`` that read nothing but the result's table, so what a figure shows can be checked from its
data. :data:`FIGURES` registers each figure with the experiment it draws; :func:`figure` and
:func:`make_figures` compute the experiments and draw them.

==================  ============================================================================
name                claim
==================  ============================================================================
``staleness``       M exponential workers give geometric staleness; uniform compute times do not
``momentum``        asynchrony begets momentum: the best explicit μ falls as the implicit 1 - 1/M grows
``penalty``         tuning μ per M shrinks the statistical penalty of asynchrony
``robust_region``   inside the robust region the heavy ball contracts at √μ whatever α
``total_momentum``  the measured total momentum is μ when synchronous, 1 - (1 - μ)/M when not
``closed_loop``     YellowFin's closed loop holds the measured total momentum at its target
``tuners``          YellowFin against grid-tuned momentum SGD and Adam
``groups``          compute groups: hardware against statistical efficiency
==================  ============================================================================

and ``real_asynchrony``: real lock-free SGD on this machine (committed measurements, replayed)
against the queueing model. The staleness-mitigation bench draws its figure
(:func:`asyncsim.figures.mitigations.make_mitigations`) with its own command, ``asyncsim
mitigations`` (about ten minutes on two cores at the quick scale): ``asyncsim figures`` stays quick.

To add a figure: write ``asyncsim/figures/<name>.py`` with its ``make_<name>`` and panels, and add one
entry ``"<name>": FigureSpec(<experiment function>, <name>.make_<name>)`` to :data:`FIGURES`.

Figures are built without pyplot (Agg canvas), in the style of ``asyncsim/style.mplstyle``.

References
----------
.. [AbM] I. Mitliagkas, C. Zhang, S. Hadjis, C. Ré, "Asynchrony begets Momentum, with an Application to
   Deep Learning", Allerton 2016, arXiv:1605.09774.
.. [YF] J. Zhang, I. Mitliagkas, C. Ré, "YellowFin and the Art of Momentum Tuning", MLSys 2019,
   arXiv:1706.03471.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib import style
from matplotlib.figure import Figure

from asyncsim import experiments
from asyncsim._validate import check_choice
from asyncsim.experiments import SCALES, ExperimentResult, Once, concurrently, root_seed
from asyncsim.figures import (
    closed_loop,
    groups,
    momentum,
    penalty,
    real_asynchrony,
    robust_region,
    staleness,
    total_momentum,
    tuners,
)
from asyncsim.figures._draw import STYLE
from asyncsim.figures.closed_loop import (
    make_closed_loop,
    plot_closed_loop_loss,
    plot_closed_loop_momentum,
)
from asyncsim.figures.groups import make_groups, plot_groups
from asyncsim.figures.momentum import (
    make_momentum,
    momentum_results,
    plot_explicit_momentum,
    plot_stacked_momentum,
)
from asyncsim.figures.penalty import make_penalty, plot_penalty
from asyncsim.figures.robust_region import make_robust_region, plot_rates, plot_spectral_radius
from asyncsim.figures.staleness import (
    make_staleness,
    plot_staleness_distance,
    plot_staleness_pmf,
    plot_uniform_staleness,
)
from asyncsim.figures.total_momentum import make_total_momentum, plot_total_momentum
from asyncsim.figures.tuners import make_tuners, plot_tuners

__all__ = [
    "FIGURES",
    "FORMATS",
    "STYLE",
    "FigureResult",
    "FigureSpec",
    "figure",
    "make_closed_loop",
    "make_figures",
    "make_groups",
    "make_momentum",
    "make_penalty",
    "make_robust_region",
    "make_staleness",
    "make_total_momentum",
    "make_tuners",
    "momentum_results",
    "plot_closed_loop_loss",
    "plot_closed_loop_momentum",
    "plot_explicit_momentum",
    "plot_groups",
    "plot_penalty",
    "plot_rates",
    "plot_spectral_radius",
    "plot_stacked_momentum",
    "plot_staleness_distance",
    "plot_staleness_pmf",
    "plot_total_momentum",
    "plot_tuners",
    "plot_uniform_staleness",
]

FORMATS = ("png", "pdf", "svg")
"""Image formats :meth:`FigureResult.save` writes."""


@dataclass(frozen=True)
class FigureSpec:
    """One figure of the registry.

    Attributes
    ----------
    experiment : callable
        ``experiment(scale=, rng=, executor=, progress=) -> ExperimentResult``: an experiment
        function of :mod:`asyncsim.experiments` (or several stacked, as :func:`momentum_results`).
    make : callable
        ``make(result) -> matplotlib.figure.Figure``.
    shares_sweep : bool
        The experiment also takes ``sweep=``: the nq50 :func:`~asyncsim.experiments.momentum_sweep`
        that :func:`make_figures` computes once for every figure that sets this.
    """

    experiment: Callable[..., ExperimentResult]
    make: Callable[[ExperimentResult], Figure]
    shares_sweep: bool = False


FIGURES: dict[str, FigureSpec] = {
    "staleness": FigureSpec(experiments.staleness_law, staleness.make_staleness),
    "momentum": FigureSpec(momentum_results, momentum.make_momentum, shares_sweep=True),
    "penalty": FigureSpec(experiments.penalty, penalty.make_penalty, shares_sweep=True),
    "robust_region": FigureSpec(experiments.robust_region, robust_region.make_robust_region),
    "total_momentum": FigureSpec(experiments.total_momentum, total_momentum.make_total_momentum),
    "closed_loop": FigureSpec(experiments.closed_loop, closed_loop.make_closed_loop),
    "tuners": FigureSpec(experiments.tuners, tuners.make_tuners),
    "groups": FigureSpec(experiments.compute_groups, groups.make_groups),
    "real_asynchrony": FigureSpec(
        experiments.real_asynchrony, real_asynchrony.make_real_asynchrony
    ),
}
"""The figures by name, in the order of the README."""


@dataclass(frozen=True, eq=False)
class FigureResult:
    """A figure and the experiment result it draws.

    Attributes
    ----------
    fig : matplotlib.figure.Figure
        Built without pyplot; save with :meth:`save`.
    result : ExperimentResult
        What the figure draws.
    name, scale : str
        The figure's name in :data:`FIGURES` and the scale of its experiments.
    """

    fig: Figure
    result: ExperimentResult
    name: str
    scale: str

    @property
    def data(self) -> pd.DataFrame:
        """The table behind the figure; ``attrs`` holds the figure name, the scale and the seed."""
        frame = self.result.to_frame()
        frame.attrs.update(figure=self.name, scale=self.scale, seed=str(self.result.seed))
        return frame

    def save(
        self, folder: str | Path, *, format: str = "png", dpi: float | None = None
    ) -> tuple[Path, Path]:
        """Write ``<folder>/<name>.<format>`` (``dpi``: the style's 150 by default) and the table
        ``<folder>/<name>.csv``; return the two paths."""
        check_choice("format", format, FORMATS)
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        image, csv = folder / f"{self.name}.{format}", folder / f"{self.name}.csv"
        with style.context(STYLE):
            self.fig.savefig(image, format=format, **({} if dpi is None else {"dpi": dpi}))
        self.data.to_csv(csv, index=False, float_format="%.8g")
        return image, csv


def _task(
    name: str, scale: str, root: int, progress: bool | None, nq50: Once
) -> Callable[[Executor | None], ExperimentResult]:
    """The experiment of figure ``name`` as a task of :func:`asyncsim.experiments.concurrently`."""
    spec = FIGURES[name]

    def compute(executor: Executor | None) -> ExperimentResult:
        shared = {"sweep": nq50.get(executor)} if spec.shares_sweep else {}
        common = {"scale": scale, "rng": root, "executor": executor, "progress": progress}
        return spec.experiment(**common, **shared)

    return compute


def _nq50(scale: str, root: int, progress: bool | None) -> Once:
    """The nq50 sweep the figures with ``shares_sweep`` draw from, computed by the first that asks."""
    return Once(functools.partial(_momentum_sweep, scale=scale, rng=root, progress=progress))


def _momentum_sweep(executor: Executor | None, **options: Any) -> Any:
    return experiments.momentum_sweep(executor=executor, **options)


def make_figures(
    names: Sequence[str] | None = None,
    *,
    scale: str = "quick",
    rng: Any = 0,
    jobs: int = 1,
    executor: Executor | None = None,
    progress: bool | None = None,
) -> Iterator[tuple[str, FigureResult, float]]:
    """Compute the named figures (default: all of :data:`FIGURES`) concurrently and yield each as it is
    ready: ``(name, figure result, seconds since the start)``.

    With ``jobs > 1`` one process pool serves every figure (:func:`asyncsim.experiments.concurrently`):
    the chunks of the sweeps and the other experiments' runs queue on it together, so the cores stay
    busy. The nq50 sweep is computed once for the figures that share it. Figures are drawn in this
    thread, in the style file.

    Parameters
    ----------
    names : sequence of str or None
        Names in :data:`FIGURES`.
    scale : {"quick", "full"}
        Grids and budgets of the experiments.
    rng : int, numpy.random.Generator or None
        Root seed of every experiment (default 0: the committed figures).
    jobs, executor, progress
        As :func:`asyncsim.experiments.concurrently`.
    """
    names = list(FIGURES) if names is None else list(dict.fromkeys(names))
    for name in names:
        check_choice("figure", name, tuple(FIGURES))
    check_choice("scale", scale, SCALES)
    root = root_seed(rng)
    nq50 = _nq50(scale, root, progress)
    tasks = {name: _task(name, scale, root, progress, nq50) for name in names}
    for name, result, seconds in concurrently(
        tasks, jobs=jobs, executor=executor, progress=progress
    ):
        yield name, FigureResult(FIGURES[name].make(result), result, name, scale), seconds


def figure(
    name: str,
    *,
    scale: str = "quick",
    rng: Any = 0,
    jobs: int = 1,
    executor: Executor | None = None,
    progress: bool | None = None,
) -> FigureResult:
    """One figure of :data:`FIGURES`: its experiment computed and drawn (arguments as
    :func:`make_figures`)."""
    ((_, result, _),) = make_figures(
        [name], scale=scale, rng=rng, jobs=jobs, executor=executor, progress=progress
    )
    return result
