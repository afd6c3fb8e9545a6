"""What an experiment returns, and the steps every experiment function shares."""

from __future__ import annotations

import contextlib
import os
import pickle
import warnings
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from asyncsim._rng import SeedRecord
from asyncsim.experiments._schedule import cache_folder, cache_key, root_seed, runner
from asyncsim.sweep import StoreWarning

__all__ = ["ExperimentResult", "combine"]


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
    common = {key: _resolved(arguments[key]) for key in shared}
    key = cache_key([name, compute, settings, root, given, common])
    cached = _load(name, key)
    if cached is not None:
        return cached
    with runner(arguments["jobs"], arguments["executor"], arguments["progress"]) as where:
        data, raw = compute(settings, root, where, **given, **common)
    config = settings | {key: label(value) for key, value in given.items()}
    result = ExperimentResult(name, data, config, SeedRecord(root), raw)
    _store(name, key, result)
    return result


def _resolved(value: Any) -> Any:
    """A shared input as computed (a future's result), so that it can be fingerprinted."""
    return value.result() if isinstance(value, Future) else value


def _cache_path(name: str, key: str | None) -> Path | None:
    folder = cache_folder()
    if key is None or folder is None:
        return None
    return folder / "experiments" / f"{name}-{key[:20]}.pickle"


def _load(name: str, key: str | None) -> ExperimentResult | None:
    """The cached result under ``key`` in the active cache, or None; a file that is unreadable
    or holds another key is named in a StoreWarning and computed again."""
    path = _cache_path(name, key)
    if path is None or not path.exists():
        return None
    try:
        with path.open("rb") as handle:
            stored = pickle.load(handle)
        if stored["key"] != key or not isinstance(stored["result"], ExperimentResult):
            raise ValueError("it holds another result")
    except Exception as err:  # any unreadable file is recomputed, never used
        warnings.warn(f"{path}: not a usable result ({err}); recomputing it", StoreWarning, 3)
        return None
    return stored["result"]


def _store(name: str, key: str | None, result: ExperimentResult) -> None:
    """Write ``result`` under ``key`` into the active cache (atomic rename); nothing without one."""
    path = _cache_path(name, key)
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as handle:
            pickle.dump({"key": key, "result": result}, handle)
        os.replace(tmp, path)
    except (pickle.PicklingError, TypeError, AttributeError):
        pass  # a result pickle cannot take (a local class in it) is simply not kept
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def combine(name: str, parts: dict[str, ExperimentResult]) -> ExperimentResult:
    """Several experiments of one root seed as one result: their tables stacked in the order of
    ``parts`` (columns a part lacks are NaN), ``config`` and ``raw`` keyed by part."""
    seeds = {str(part.seed) for part in parts.values()}
    if len(seeds) != 1:
        raise ValueError(f"parts must share one root seed, got seeds {sorted(seeds)}")
    data = pd.concat([part.data for part in parts.values()], ignore_index=True)
    first = next(iter(parts.values()))
    config = {key: part.config for key, part in parts.items()}
    raw = {key: part.raw for key, part in parts.items()}
    return ExperimentResult(name, data, config, first.seed, raw)
