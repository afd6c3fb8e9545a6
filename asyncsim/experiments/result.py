"""What an experiment returns, and the steps every experiment function shares."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from asyncsim._rng import SeedRecord
from asyncsim.experiments._schedule import root_seed, runner

__all__ = ["ExperimentResult"]


@dataclass(frozen=True, eq=False)
class ExperimentResult:
    """The outcome of one experiment.

    Attributes
    ----------
    name : str
        The experiment (``"best_momentum"``, ...).
    data : pandas.DataFrame
        The tidy table: one row per measured (or predicted) point; columns as the function says.
    config : dict
        What made it: the settings at its scale with the caller's overrides, and the problem,
        optimizer and cluster by name (or repr).
    seed : SeedRecord
        The root every stream of the experiment derives from (``rng=seed.sequence()``, or the int,
        makes it again).
    raw : dict
        The results behind the table, for resampling over seeds (``SweepResult`` objects, per-run
        tables), by name.
    """

    name: str
    data: pd.DataFrame
    config: dict[str, Any]
    seed: SeedRecord
    raw: dict[str, Any] = field(default_factory=dict)

    def to_frame(self) -> pd.DataFrame:
        """A copy of the table; ``attrs`` holds the experiment's name and the text of its seed."""
        frame = self.data.copy()
        frame.attrs.update(experiment=self.name, seed=str(self.seed))
        return frame


COMMON_PARAMETERS = """
    scale : {"quick", "full"}
        Grids and budgets (:mod:`asyncsim.experiments.settings`); the keyword arguments above that
        are None take the scale's value.
    rng : int, numpy.random.Generator or None
        Root seed (an int is used as it is, else one is drawn); recorded as ``result.seed``.
    jobs : int
        Processes of a local pool when no ``executor`` is given (1: everything in this process).
    executor : concurrent.futures.Executor or None
        Where the runs and sweep chunks go (a Dask cluster through ``client.get_executor()``).
    progress : bool or None
        Progress bars of the sweeps (default: on a terminal, not in CI).

    Returns
    -------
    ExperimentResult
"""


def documented(fn: Callable[..., ExperimentResult]) -> Callable[..., ExperimentResult]:
    """Append the parameters every experiment function shares to ``fn``'s docstring."""
    fn.__doc__ = (fn.__doc__ or "").rstrip() + "\n" + COMMON_PARAMETERS
    return fn


def label(value: Any) -> Any:
    """A problem, optimizer or cluster as ``config`` records it: a name as it is, else its repr
    (a function by its qualified name)."""
    if value is None or isinstance(value, str | int | float):
        return value
    return getattr(value, "__qualname__", None) or getattr(value, "name", None) or repr(value)


def conduct(
    name: str,
    compute: Callable[..., tuple[pd.DataFrame, dict[str, Any]]],
    settings: dict[str, Any],
    arguments: dict[str, Any],
    *,
    inputs: tuple[str, ...] = (),
    shared: tuple[str, ...] = (),
) -> ExperimentResult:
    """Run ``compute(settings, root, runner, **inputs, **shared) -> (data, raw)`` on a runner and
    wrap it. ``arguments`` are the experiment function's (its ``locals()``, with any input it
    normalized): the run options (``rng``, ``jobs``, ``executor``, ``progress``) come from them, and
    so do the ``inputs`` (problem, optimizer, cluster: they enter ``config``) and the ``shared``
    results computed elsewhere (such as a sweep two experiments share: they do not)."""
    root = root_seed(arguments["rng"])
    given = {key: arguments[key] for key in inputs}
    with runner(arguments["jobs"], arguments["executor"], arguments["progress"]) as where:
        data, raw = compute(settings, root, where, **given, **{k: arguments[k] for k in shared})
    config = settings | {key: label(value) for key, value in given.items()}
    return ExperimentResult(name, data, config, SeedRecord(root), raw)
