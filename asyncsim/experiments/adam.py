"""Hand-tuning Adam's β1 under asynchrony (the YellowFin blog post): Adam's first-moment EMA is a
momentum, and asynchrony adds its own, so the β1 that is best with one worker need not be best with
many."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Executor
from typing import Any

import numpy as np
import pandas as pd

from asyncsim.cluster import ClusterConfig
from asyncsim.experiments._schedule import Runner
from asyncsim.experiments.result import ExperimentResult, conduct, documented
from asyncsim.experiments.settings import settings_from
from asyncsim.sweep import Sweep, SweepResult

__all__ = ["adam_beta1"]


def _rows(result: SweepResult, beta1: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per M: the best α by median updates to target (the table's row), and the updates of every
    seed at that α (the raw values a bootstrap over seeds resamples)."""
    best = result.best()
    sweep = result.sweep
    shape = (len(sweep.points()), sweep.seeds, len(sweep.lrs))
    iterations = result["iterations"].reshape(shape)
    rows, per_seed = [], []
    for p, m in enumerate(sweep.workers):
        runs = iterations[p, :, sweep.lrs.index(float(best["lr"][p]))]
        rows.append(
            {
                "workers": m,
                "b1": beta1,
                "lr": float(best["lr"][p]),
                "iterations": float(best["iterations"][p]),
                "low": runs.min(),
                "high": runs.max(),
                "reached": np.isfinite(runs).mean(),
            }
        )
        per_seed.append(
            pd.DataFrame(
                {"workers": m, "b1": beta1, "seed": np.arange(runs.size), "iterations": runs}
            )
        )
    return pd.DataFrame(rows), pd.concat(per_seed, ignore_index=True)


def _compute(
    s: dict, root: int, runner: Runner, problem: Any, optimizer: Any, cluster: ClusterConfig | None
) -> tuple[pd.DataFrame, dict[str, Any]]:
    futures = [
        runner.background(
            runner.sweep,
            Sweep(
                problem,
                lrs=s["lrs"],
                workers=s["workers"],
                staleness="cluster",
                cluster=cluster,
                seeds=s["seeds"],
                steps=s["steps"],
                record_every=s["record_every"],
                target=s["target"],
                optimizer=optimizer,
                options={"b1": float(beta1)},
                seed=root,  # the same root for every β1: the same traces and noise (CRN)
            ),
        )
        for beta1 in s["betas"]
    ]
    sweeps = {float(beta1): f.result() for beta1, f in zip(s["betas"], futures, strict=True)}
    parts = [_rows(result, beta1) for beta1, result in sweeps.items()]
    data = pd.concat([p[0] for p in parts], ignore_index=True)
    fewest = data.groupby("workers")["iterations"].transform("min")
    data["relative"] = data["iterations"] / fewest
    data["best"] = data["iterations"] == fewest
    per_seed = pd.concat([p[1] for p in parts], ignore_index=True)
    return data, {"sweeps": sweeps, "per_seed": per_seed}


@documented
def adam_beta1(
    problem: Any = "nq50",
    *,
    optimizer: Any = "adam",
    cluster: ClusterConfig | None = None,
    betas: Sequence[float] | None = None,
    workers: Sequence[int] | None = None,
    lrs: Sequence[float] | None = None,
    seeds: int | None = None,
    steps: int | None = None,
    record_every: int | None = None,
    target: float | None = None,
    scale: str = "quick",
    rng: Any = None,
    jobs: int = 1,
    executor: Executor | None = None,
    progress: bool | None = None,
) -> ExperimentResult:
    """Adam grid-tuned over its step size α for each first-moment factor β1, at each number of
    asynchronous workers M (cluster traces; M = 1: no staleness): does hand-tuning β1 help under
    asynchrony?

    Adam's update ``m ← β1 m + (1 - β1) g``, ``w ← w - α m̂/(√v̂ + ε)`` carries a momentum β1; M
    asynchronous workers add an implicit momentum of about 1 - 1/M (theory/README.md §2), so the
    default β1 = 0.9 may be too much at high M, as the YellowFin post reports. One
    :class:`~asyncsim.sweep.Sweep` per β1 (option ``b1``, α the grid, μ unused), all with the same
    root seed, so that every β1 runs on the same traces and gradient noise seed by seed.

    ``data``: one row per (M, β1): the best α by median updates to the problem's target, its median
    (``iterations``), range (``low``, ``high``) and fraction of seeds reaching the target,
    ``relative`` (updates over the fewest at that M, over every β1) and ``best``. The claim's effect
    is ``relative`` at the largest M and β1 = 0.9. ``raw["per_seed"]``: the updates of every seed at
    each (M, β1)'s best α; ``raw["sweeps"]``: the :class:`~asyncsim.sweep.SweepResult` per β1.

    Parameters
    ----------
    problem : str or Problem
        A reference name or a problem instance.
    optimizer : str or callable
        ``"adam"`` or a factory ``(lr, momentum, *, b1) -> GradientTransformation`` (μ is 0).
    cluster : ClusterConfig or None
        Template of the clusters (default exponential compute); its worker count is set per M.
    betas : sequence of float or None
        The β1 values, each in [0, 1).
    workers, lrs, seeds, steps, record_every, target
        The worker counts, Adam's α grid, the runs and the loss target (default: the problem's).

    References
    ----------
    J. Zhang, I. Mitliagkas, "YellowFin: an automatic tuner for momentum SGD" (blog post, 2017);
    theory/README.md §2."""
    arguments = dict(locals())
    s = settings_from("adam_beta1", arguments, skip=("problem", "optimizer", "cluster"))
    s.setdefault("target", None)
    s["betas"] = tuple(float(b) for b in s["betas"])
    return conduct("adam_beta1", _compute, s, arguments, inputs=("problem", "optimizer", "cluster"))
