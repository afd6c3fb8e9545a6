"""Staleness of M workers against the geometric law of the queueing model (AbM Thm 5)."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Executor
from typing import Any

import numpy as np
import pandas as pd

import theory
from asyncsim.cluster import ClusterConfig, simulate
from asyncsim.distributions import Uniform
from asyncsim.experiments._schedule import Runner, stream_of
from asyncsim.experiments.result import ExperimentResult, conduct, documented
from asyncsim.experiments.settings import settings_from

__all__ = ["staleness_law"]


def _case(
    compute: str, config: ClusterConfig, updates: int, seq: np.random.SeedSequence
) -> pd.DataFrame:
    """Empirical staleness law of one cluster beside the geometric law of its worker count."""
    m = config.n_workers
    trace = simulate(config, updates, rng=seq)
    skip = 20 * m  # warm-up: the first writes read version 0
    tau = trace.staleness[skip:]
    lags = np.arange(int(tau.max()) + 1)
    empirical = np.bincount(tau, minlength=lags.size) / tau.size
    geometric = theory.staleness_pmf(lags, m)
    distance = 0.5 * (np.abs(empirical - geometric).sum() + (1.0 - geometric.sum()))
    shown = (
        lags <= max(1, int(np.ceil(np.log(1e-3) / np.log(1.0 - 1.0 / m)))) if m > 1 else lags < 2
    )
    return pd.DataFrame(
        {
            "compute": compute,
            "workers": m,
            "lag": lags[shown],
            "empirical": empirical[shown],
            "geometric": geometric[shown],
            "mean": tau.mean(),
            "geometric_mean": float(theory.staleness_mean(m)),
            "std": tau.std(),
            "geometric_std": float(np.sqrt(m * (m - 1))),
            "p_zero": np.mean(tau == 0),
            "tv_distance": distance,
        }
    )


def _compute(
    s: dict, root: int, runner: Runner, clusters: Sequence[tuple[str, ClusterConfig]] | None
) -> tuple[pd.DataFrame, dict[str, Any]]:
    if clusters is None:
        clusters = [("exponential", ClusterConfig(m)) for m in range(1, s["max_workers"] + 1)]
        clusters.append(("uniform [0.5, 1.5]", ClusterConfig(4, compute=Uniform(0.5, 1.5))))
    calls = [
        (label, config, s["updates"], stream_of(root, "staleness", label, config.n_workers))
        for label, config in clusters
    ]
    return pd.concat(runner.map(_case, calls), ignore_index=True), {}


@documented
def staleness_law(
    clusters: Sequence[tuple[str, ClusterConfig]] | None = None,
    *,
    updates: int | None = None,
    max_workers: int | None = None,
    scale: str = "quick",
    rng: Any = None,
    jobs: int = 1,
    executor: Executor | None = None,
    progress: bool | None = None,
) -> ExperimentResult:
    """The measured staleness law of each cluster beside the geometric law (1/M)(1 - 1/M)^l of its
    worker count M (theory/README.md §1).

    ``data``: one row per (cluster, lag l) with the empirical and geometric probabilities, and per
    cluster the mean, standard deviation and P(τ = 0) of staleness (measured and geometric: mean
    M - 1, std √(M(M-1))) and the total-variation distance between the two laws (warm-up of 20 M
    updates left out).

    Parameters
    ----------
    clusters : sequence of (label, ClusterConfig) or None
        The clusters (default: exponential compute at M = 1 ... ``max_workers``, and uniform [0.5, 1.5]
        compute at M = 4). The label is part of the stream key.
    updates : int or None
        Updates simulated per cluster.
    max_workers : int or None
        Largest M of the default clusters."""
    arguments = dict(locals())
    s = settings_from("staleness", arguments, skip=("clusters",))
    return conduct("staleness_law", _compute, s, arguments, inputs=("clusters",))
