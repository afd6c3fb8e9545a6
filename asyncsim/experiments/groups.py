"""Compute groups: hardware efficiency (time per update) against statistical efficiency (updates to
target) as M workers are split into g synchronous groups (AbM §6; Omnivore)."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Executor
from typing import Any

import numpy as np
import pandas as pd

import theory
from asyncsim.cluster import ClusterConfig
from asyncsim.experiments._schedule import Runner
from asyncsim.experiments.momentum import grid_optimum
from asyncsim.experiments.result import ExperimentResult, conduct, documented
from asyncsim.experiments.settings import GROUP_SETTINGS, MU_GRID, settings_from
from asyncsim.sweep import Sweep, SweepResult

__all__ = ["compute_groups"]


def _frame(result: SweepResult, label: str, cluster: ClusterConfig, s: dict) -> pd.DataFrame:
    groups = s["groups"]
    best = grid_optimum(result)
    shape = (len(groups), s["seeds"], -1)
    per_update = result["time_per_update"].reshape(shape)[:, :, 0].mean(axis=1)
    pick = [
        (result["lr"].reshape(shape)[p, 0] == best["lr"][p])
        & (result["momentum"].reshape(shape)[p, 0] == best["momentum"][p])
        for p in range(len(groups))
    ]
    measured_time = [
        np.median(result["time_to_target"].reshape(shape)[p][:, pick[p]])
        for p in range(len(groups))
    ]
    frame = best.assign(setting=label, time_per_update=per_update)
    frame["theory_time_per_update"] = (
        theory.time_per_update(cluster.n_workers, np.array(groups))
        if cluster.server_time is None
        and cluster.pull_latency is None
        and cluster.push_latency is None
        else np.nan
    )
    frame["time_to_target"] = frame["time_per_update"] * frame["iterations"]
    frame["measured_time_to_target"] = measured_time
    for name, column in (
        ("hardware", "time_per_update"),
        ("statistical", "iterations"),
        ("relative_time", "time_to_target"),
    ):
        frame[name] = frame[column] / frame[column].iloc[0]
    frame["best"] = frame["time_to_target"] == frame["time_to_target"].min()
    return frame.rename(columns={"workers": "groups"})


def _compute(
    s: dict,
    root: int,
    runner: Runner,
    problem: Any,
    optimizer: Any,
    clusters: Sequence[tuple[str, ClusterConfig]],
) -> tuple[pd.DataFrame, dict[str, Any]]:
    sweeps = [
        runner.background(
            runner.sweep,
            Sweep(
                problem,
                lrs=s["lrs"],
                momenta=s["momenta"],
                workers=(cluster.n_workers,),
                groups=s["groups"],
                staleness="cluster",
                cluster=cluster,
                seeds=s["seeds"],
                steps=s["steps"],
                record_every=s["record_every"],
                optimizer=optimizer,
                seed=root,
            ),
        )
        for _, cluster in clusters
    ]
    results = [future.result() for future in sweeps]
    frames = [
        _frame(result, label, cluster, s)
        for (label, cluster), result in zip(clusters, results, strict=True)
    ]
    data = pd.concat(frames, ignore_index=True)
    data = data[["setting", *[c for c in data.columns if c != "setting"]]]
    return data, {"sweeps": dict(zip((label for label, _ in clusters), results, strict=True))}


@documented
def compute_groups(
    problem: Any = "nq50",
    *,
    optimizer: Any = "heavy_ball",
    clusters: Sequence[tuple[str, ClusterConfig]] = GROUP_SETTINGS,
    groups: Sequence[int] | None = None,
    lrs: Sequence[float] | None = None,
    momenta: Sequence[float] | None = None,
    seeds: int | None = None,
    steps: int | None = None,
    record_every: int | None = None,
    scale: str = "quick",
    rng: Any = None,
    jobs: int = 1,
    executor: Executor | None = None,
    progress: bool | None = None,
) -> ExperimentResult:
    """Per cluster and number of groups g (each of k = M/g workers, whose gradients the group
    aggregates into one update): the best (α, μ) and its median updates to target, the measured time
    per update, their product, each relative to g = 1 (``hardware``, ``statistical``,
    ``relative_time``), the measured time to target, and which g is fastest; theory's time per
    update for exponential compute without server time or latency.

    Parameters
    ----------
    problem : str or Problem
    optimizer : str or callable
        As :class:`asyncsim.sweep.Sweep`.
    clusters : sequence of (label, ClusterConfig)
        The hardware settings (default :data:`~asyncsim.experiments.settings.GROUP_SETTINGS`).
    groups : sequence of int or None
        The numbers of groups (each dividing M).
    lrs, momenta, seeds, steps, record_every
        The grid and the runs."""
    arguments = dict(locals(), clusters=tuple(clusters))
    inputs = ("problem", "optimizer", "clusters")
    s = settings_from("groups", arguments, skip=inputs)
    s["momenta"] = tuple(s.get("momenta", MU_GRID))
    s["groups"] = tuple(s["groups"])
    return conduct("compute_groups", _compute, s, arguments, inputs=inputs)
