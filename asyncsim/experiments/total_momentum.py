"""The measured total momentum: μ when synchronous, 1 - (1 - μ)/M with M asynchronous writers
(AbM Thm 6; YellowFin's estimator)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from concurrent.futures import Executor
from typing import Any

import numpy as np
import pandas as pd

import theory
from asyncsim.cluster import ClusterConfig, simulate
from asyncsim.engine import run
from asyncsim.experiments._schedule import Runner, stream_of
from asyncsim.experiments.result import ExperimentResult, conduct, documented
from asyncsim.experiments.settings import settings_from
from asyncsim.optim import heavy_ball
from asyncsim.problems import make_problem

__all__ = ["quantiles", "total_momentum"]


def quantiles(values: np.ndarray, q: Sequence[float]) -> np.ndarray:
    """Quantiles ``q`` over the last axis ignoring NaN, shape ``(len(q), ...)``; NaN where a row has no
    finite value (the estimator's first records)."""
    values = np.where(np.isfinite(values), values, np.nan)
    out = np.full((len(q), *values.shape[:-1]), np.nan)
    rows = ~np.isnan(values).all(axis=-1)
    out[:, rows] = np.nanquantile(values[rows], q, axis=-1)
    return out


def _cluster(template: ClusterConfig | None, m: int, mode: str) -> ClusterConfig:
    if template is None:
        return ClusterConfig(m, mode=mode)
    return dataclasses.replace(template, n_workers=m, mode=mode, n_groups=None)


def _data(
    s: dict, root: int, problem: Any, optimizer: Any, cluster: ClusterConfig | None
) -> tuple[pd.DataFrame, dict[str, Any]]:
    instance = make_problem(problem) if isinstance(problem, str) else problem
    cases = [("async", m) for m in s["workers"]] + [("sync", max(s["workers"]))]
    mus = np.asarray(s["momenta"])
    traces, explicit, keys = [], [], []
    for mode, m in cases:
        for k in range(s["seeds"]):
            seq = stream_of(root, "total_momentum", mode, m, k)
            trace = simulate(_cluster(cluster, m, mode), s["steps"], rng=seq)
            traces += [trace] * mus.size
            explicit += list(mus)
            keys += [(mode, m, k)] * mus.size
    hist = run(
        instance,
        optimizer(s["lr"], np.array(explicit)),
        traces,
        s["steps"],
        rng=stream_of(root, "total_momentum", "noise"),
        record_every=s["record_every"],
        estimate_momentum=True,
    )
    late = hist.steps >= s["steps"] // 3  # past the transient: at the noise floor
    total = quantiles(hist["total_momentum"][late].T, (0.5, 0.1, 0.9))
    per_run = pd.DataFrame(
        {
            "mode": [k[0] for k in keys],
            "workers": [k[1] for k in keys],
            "seed": [k[2] for k in keys],
            "explicit": explicit,
            "measured": total[0],
            "low": total[1],
            "high": total[2],
            "diverged": hist.diverged,
        }
    )
    data = per_run.groupby(["mode", "workers", "explicit"], as_index=False, sort=False).median()
    data = data.drop(columns="seed")
    data["writers"] = np.where(data["mode"] == "async", data["workers"], 1)
    data["predicted"] = theory.total_momentum(
        data["explicit"].to_numpy(), data["writers"].to_numpy()
    )
    return data, {"per_run": per_run}


def _compute(
    s: dict, root: int, runner: Runner, problem: Any, optimizer: Any, cluster: ClusterConfig | None
) -> tuple[pd.DataFrame, dict[str, Any]]:
    return runner.call(_data, s, root, problem, optimizer, cluster)


@documented
def total_momentum(
    problem: Any = "nq50",
    *,
    optimizer: Any = heavy_ball,
    cluster: ClusterConfig | None = None,
    workers: Sequence[int] | None = None,
    momenta: Sequence[float] | None = None,
    lr: float | None = None,
    seeds: int | None = None,
    steps: int | None = None,
    record_every: int | None = None,
    scale: str = "quick",
    rng: Any = None,
    jobs: int = 1,
    executor: Executor | None = None,
    progress: bool | None = None,
) -> ExperimentResult:
    """The total momentum measured by the worker-local estimator (theory/README.md §9), against the
    explicit μ, for M asynchronous workers and for a synchronous cluster of the largest M, beside
    theory's 1 - (1 - μ)/M (M writers; 1 when synchronous).

    ``data``: one row per (mode, M, μ): the median over seeds of each run's median estimate past
    the first third of the run (``measured``; ``low``, ``high`` its 10% and 90% quantiles),
    ``predicted``, and the divergence flag. ``raw["per_run"]``: the same per seed.

    Parameters
    ----------
    problem : str or Problem
    optimizer : callable
        A factory ``(lr, momentum) -> GradientTransformation`` recording ``lr`` and ``momentum``
        (default the heavy ball).
    cluster : ClusterConfig or None
        Template of the clusters (default exponential compute); its worker count and mode are set.
    workers, momenta, lr, seeds, steps, record_every
        The cases and the run."""
    arguments = dict(locals())
    s = settings_from("total_momentum", arguments, skip=("problem", "optimizer", "cluster"))
    return conduct(
        "total_momentum", _compute, s, arguments, inputs=("problem", "optimizer", "cluster")
    )
