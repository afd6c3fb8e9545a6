"""YellowFin against grid-tuned momentum SGD and Adam (the YellowFin paper's comparison)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from typing import Any

import numpy as np
import pandas as pd

from asyncsim.comparisons import compare_tuners
from asyncsim.experiments._schedule import Runner
from asyncsim.experiments.result import ExperimentResult, conduct, documented
from asyncsim.experiments.settings import MU_GRID, TUNER_VARIANTS, settings_from
from asyncsim.optim import GradientTransformation
from asyncsim.yellowfin import yellowfin_tuner

__all__ = ["tuners"]


def _rows(
    s: dict, m: int, label: str, options: dict, root: int, grids: bool, problem: Any, tuner: Any
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One :func:`compare_tuners` call; only the first call per M needs the grids."""
    lrs, adam_lrs = (s["lrs"], s["adam_lrs"]) if grids else ((0.1,), (0.01,))
    result = compare_tuners(
        problem,
        n_workers=m,
        seeds=s["seeds"],
        steps=s["steps"],
        record_every=s["record_every"],
        lrs=lrs,
        momenta=MU_GRID if grids else (0.0,),
        adam_lrs=adam_lrs,
        rng=root,
        tuner=tuner,
        **options,
    )
    rows, per_seed = [], []
    for i, method in enumerate(result.methods):
        if method != "yellowfin" and not grids:
            continue
        name = label if method == "yellowfin" else f"{method} (grid-tuned)"
        runs = result.per_seed[i]
        rows.append(
            {
                "workers": m,
                "method": name,
                "iterations": result.iterations[i],
                "low": runs.min(),
                "high": runs.max(),
                "reached": np.isfinite(runs).mean(),
                "lr": result.best[i].get("lr", np.nan),
                "momentum": result.best[i].get("momentum", np.nan),
            }
        )
        per_seed.append(
            pd.DataFrame(
                {"workers": m, "method": name, "seed": np.arange(runs.size), "iterations": runs}
            )
        )
    return pd.DataFrame(rows), pd.concat(per_seed, ignore_index=True)


def _compute(
    s: dict,
    root: int,
    runner: Runner,
    problem: Any,
    tuner: Any,
    variants: Sequence[tuple[str, dict]],
) -> tuple[pd.DataFrame, dict[str, Any]]:
    calls = [
        (s, m, label, options, root, k == 0, problem, tuner)
        for m in s["workers"]
        for k, (label, options) in enumerate(variants)
    ]
    results = runner.map(_rows, calls)
    data = pd.concat([r[0] for r in results], ignore_index=True)
    return data, {"per_seed": pd.concat([r[1] for r in results], ignore_index=True)}


@documented
def tuners(
    problem: Any = "nq50",
    *,
    tuner: Callable[..., GradientTransformation] = yellowfin_tuner,
    variants: Sequence[tuple[str, dict[str, Any]]] = TUNER_VARIANTS,
    workers: Sequence[int] | None = None,
    lrs: Sequence[float] | None = None,
    adam_lrs: Sequence[float] | None = None,
    seeds: int | None = None,
    steps: int | None = None,
    record_every: int | None = None,
    scale: str = "quick",
    rng: Any = None,
    jobs: int = 1,
    executor: Executor | None = None,
    progress: bool | None = None,
) -> ExperimentResult:
    """Median updates to the problem's target of YellowFin (each variant) against momentum SGD
    grid-tuned over (α, μ) and Adam grid-tuned over α, at each M (asynchronous cluster traces; M = 1:
    no staleness), every method on the same traces and noise seed by seed
    (:func:`asyncsim.comparisons.compare_tuners`).

    ``data``: one row per (M, method): median, range and fraction of seeds reaching the target, and
    the grid's choice. ``raw["per_seed"]``: updates to target per (M, method, seed).

    Parameters
    ----------
    problem : str or Problem
    tuner : callable
        The tuner measured, a factory ``(**options) -> GradientTransformation`` (default YellowFin).
    variants : sequence of (label, dict)
        The tuner's settings compared: a label and arguments of ``tuner``.
    workers, lrs, adam_lrs, seeds, steps, record_every
        The worker counts, the grids of momentum SGD (with the nine μ of theory/README.md §5) and of
        Adam, and the runs."""
    arguments = dict(locals(), variants=tuple(variants))
    inputs = ("problem", "tuner", "variants")
    s = settings_from("tuners", arguments, skip=inputs)
    return conduct("tuners", _compute, s, arguments, inputs=inputs)
