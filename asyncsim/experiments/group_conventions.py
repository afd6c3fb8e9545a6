"""Compute groups under the papers' convention (AbM §IV, Omnivore): a group of k = M/g members
splits ONE minibatch among them, so a group update takes the slowest member's time for 1/k of the
work plus a synchronization cost, and its gradient has the noise of one minibatch.

:func:`~asyncsim.experiments.compute_groups` (and ``ClusterConfig(mode="groups")``) take the other
convention: every member computes a full minibatch gradient and the group aggregates k of them
(noise variance divided by k, the slowest member's time for a whole minibatch). Here the traces are
the same cluster model's, with each member's compute times scaled by 1/k and a deterministic push
latency for the synchronization, and their ``n_aggregated`` is set to one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from concurrent.futures import Executor
from typing import Any

import numpy as np
import pandas as pd

from asyncsim._validate import check_choice, check_real
from asyncsim.cluster import ClusterConfig, simulate
from asyncsim.distributions import Deterministic
from asyncsim.engine import run
from asyncsim.experiments._schedule import Runner, stream_of
from asyncsim.experiments.result import ExperimentResult, conduct, documented
from asyncsim.experiments.settings import GROUP_SETTINGS, MU_GRID, settings_from
from asyncsim.measure import iterations_to_target, time_to_target
from asyncsim.problems import make_problem
from asyncsim.sweep import OPTIMIZERS
from asyncsim.trace import Trace

__all__ = ["CONVENTIONS", "group_cluster", "group_trace", "groups_papers_convention"]

CONVENTIONS = ("papers", "aggregate")
"""``papers``: a group splits one minibatch among its k members (compute times scaled by 1/k, plus
the synchronization cost; one minibatch of noise). ``aggregate``: each member computes a whole
minibatch and the group aggregates k (the convention of ``ClusterConfig(mode="groups")``)."""


def group_cluster(
    template: ClusterConfig, groups: int, *, sync: float = 0.0, convention: str = "papers"
) -> ClusterConfig:
    """The cluster of ``template``'s M workers in ``groups`` groups under ``convention``: for
    ``papers``, each member's compute time scaled by 1/k (``time_multipliers``) and, for k > 1, a
    deterministic push latency ``sync`` (the group's synchronization, in mean compute times of a
    whole minibatch). One group is synchronous, M groups asynchronous."""
    m = template.n_workers
    check_real("sync", sync, low=0.0)
    check_choice("convention", convention, CONVENTIONS)
    if groups < 1 or m % groups:
        raise ValueError(f"groups must divide n_workers = {m}, got {groups}")
    k = m // groups
    mode = "async" if groups == m else ("sync" if groups == 1 else "groups")
    config = dataclasses.replace(template, mode=mode, n_groups=groups)
    if convention == "aggregate" or k == 1:
        return config
    base = template.time_multipliers or (1.0,) * m
    return dataclasses.replace(
        config,
        time_multipliers=tuple(v / k for v in base),
        push_latency=Deterministic(sync) if sync > 0 else template.push_latency,
    )


def group_trace(
    template: ClusterConfig,
    groups: int,
    n_updates: int,
    *,
    sync: float = 0.0,
    convention: str = "papers",
    rng: Any = None,
) -> Trace:
    """A trace of :func:`group_cluster`; under the ``papers`` convention every update carries the
    noise of one minibatch (``n_aggregated`` = 1)."""
    trace = simulate(
        group_cluster(template, groups, sync=sync, convention=convention), n_updates, rng=rng
    )
    if convention == "aggregate":
        return trace
    return dataclasses.replace(trace, n_aggregated=np.ones(len(trace), dtype=np.int64))


def _chunk(
    s: dict,
    root: int,
    problem: Any,
    optimizer: Any,
    cluster: ClusterConfig,
    convention: str,
    groups: int,
    seed: int,
) -> dict[str, np.ndarray]:
    """Every (α, μ) on one trace of ``groups`` groups and seed index ``seed``: the trace's streams
    are common to the conventions and hardware settings of (g, seed), the noise to every
    configuration, g, convention and setting of the seed."""
    instance = make_problem(problem) if isinstance(problem, str) else problem
    trace = group_trace(
        cluster,
        groups,
        s["steps"],
        sync=s["sync"],
        convention=convention,
        rng=stream_of(root, "groups_papers_convention", "trace", groups, seed),
    )
    lr, mu = (a.ravel() for a in np.meshgrid(s["lrs"], s["momenta"], indexing="ij"))
    factory = OPTIMIZERS[optimizer] if isinstance(optimizer, str) else optimizer
    target = instance.target if s["target"] is None else s["target"]
    noise = stream_of(root, "groups_papers_convention", "noise", seed)
    history = run(
        instance,
        factory(lr, mu),
        trace,
        s["steps"],
        rng=[noise] * lr.size,
        record_every=s["record_every"],
        estimate_momentum=False,
        stop_at=target,
    )
    iterations = iterations_to_target(history, target)
    return {
        "lr": lr,
        "momentum": mu,
        "iterations": iterations,
        "time_to_target": time_to_target(iterations, trace.apply_time),
        "time_per_update": np.full(lr.size, trace.time_per_update),
    }


def _table(runs: pd.DataFrame, workers: int) -> pd.DataFrame:
    """Per (setting, convention, g): the best (α, μ) by median updates over seeds, and its times."""
    rows = []
    keys = ["setting", "convention", "groups"]
    for (setting, convention, g), part in runs.groupby(keys, sort=False):
        med = part.groupby(["lr", "momentum"], sort=False)["iterations"].median()
        lr, mu = med.idxmin()
        chosen = part[(part["lr"] == lr) & (part["momentum"] == mu)]
        per_update = part.groupby("seed")["time_per_update"].first().mean()
        rows.append(
            {
                "setting": setting,
                "convention": convention,
                "groups": g,
                "members": workers // g,
                "lr": lr,
                "momentum": mu,
                "iterations": med.min(),
                "time_per_update": per_update,
                "time_to_target": per_update * med.min(),
                "measured_time_to_target": chosen["time_to_target"].median(),
            }
        )
    data = pd.DataFrame(rows)
    by = data.groupby(["setting", "convention"], sort=False)["time_to_target"]
    data["relative_time"] = data["time_to_target"] / by.transform("first")
    data["best"] = data["time_to_target"] == by.transform("min")
    fastest = data["groups"].where(data["best"]).groupby([data["setting"], data["convention"]])
    first = fastest.transform("min")
    data["intermediate_best"] = (first > 1) & (first < workers)
    return data


def _compute(
    s: dict,
    root: int,
    runner: Runner,
    problem: Any,
    optimizer: Any,
    clusters: tuple[tuple[str, ClusterConfig], ...],
) -> tuple[pd.DataFrame, dict[str, Any]]:
    cases = [
        (label, cluster, convention, g, seed)
        for label, cluster in clusters
        for convention in s["conventions"]
        for g in s["groups"]
        for seed in range(s["seeds"])
    ]
    chunks = runner.map(_chunk, [(s, root, problem, optimizer, *case[1:]) for case in cases])
    runs = pd.concat(
        [
            pd.DataFrame(chunk).assign(setting=label, convention=c, groups=g, seed=seed)
            for (label, _, c, g, seed), chunk in zip(cases, chunks, strict=True)
        ],
        ignore_index=True,
    )
    keys = ["setting", "convention", "groups", "seed"]
    runs = runs[[*keys, *[c for c in runs if c not in keys]]]
    return _table(runs, clusters[0][1].n_workers), {"per_run": runs}


@documented
def groups_papers_convention(
    problem: Any = "nq50",
    *,
    optimizer: Any = "heavy_ball",
    clusters: Sequence[tuple[str, ClusterConfig]] = GROUP_SETTINGS,
    groups: Sequence[int] | None = None,
    sync: float | None = None,
    conventions: Sequence[str] | None = None,
    lrs: Sequence[float] | None = None,
    momenta: Sequence[float] | None = None,
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
    """Compute groups under the papers' convention (AbM §IV, Omnivore): are intermediate groups
    fastest to the target when a group of k = M/g members splits one minibatch among them?

    A group update then takes the slowest of its k members' times for 1/k of a minibatch's work,
    plus a synchronization cost ``sync`` (a deterministic push latency, for k > 1), and carries the
    noise of one minibatch; groups are asynchronous to each other (implicit momentum about 1 - 1/g).
    With Exp(1) compute the time per update is about (H_k/k + sync)/g: synchrony costs far less
    time than under the aggregate convention of :func:`~asyncsim.experiments.compute_groups`
    (H_k/g), and buys only the absence of staleness. Per group count g, per seed, one engine run of
    every (α, μ) on one trace (:func:`group_trace`), with gradient noise common to every
    configuration and every g.

    ``data``: one row per (setting, convention, g): the best (α, μ) by median updates to the problem's
    target, its median updates, the mean time per update, their product ``time_to_target``, the
    median measured time to target of the best (α, μ), ``relative_time`` (time to target over
    g = 1's), ``best`` (the fastest g) and ``intermediate_best`` (the fastest g is neither 1 nor M).
    ``raw["per_run"]``: updates and time to target per (setting, convention, g, seed, α, μ).

    Parameters
    ----------
    problem : str or Problem
    optimizer : str or callable
        A name in :data:`asyncsim.sweep.OPTIMIZERS` or a factory ``(lr, momentum)`` taking (B,)
        arrays.
    clusters : sequence of (label, ClusterConfig)
        The hardware settings, each of the same M workers (default
        :data:`~asyncsim.experiments.settings.GROUP_SETTINGS`: Exp(1) compute, with and without a
        server busy 0.2 per apply); mode and groups are set per g.
    groups : sequence of int or None
        The numbers of groups g (each dividing M).
    sync : float or None
        The synchronization cost of a group update (k > 1), in mean compute times of a minibatch.
    conventions : sequence of str or None
        Of :data:`CONVENTIONS`; ``"aggregate"`` beside ``"papers"`` runs today's convention on the
        same seeds.
    lrs, momenta, seeds, steps, record_every, target
        The grid (default μ: the nine of theory/README.md §5), the runs, and the loss target
        (default: the problem's).

    References
    ----------
    I. Mitliagkas, C. Zhang, S. Hadjis, C. Ré, "Asynchrony begets Momentum", arXiv:1605.09774, §IV;
    S. Hadjis, C. Zhang, I. Mitliagkas, D. Iter, C. Ré, "Omnivore", arXiv:1606.04487."""
    arguments = dict(locals(), clusters=tuple(clusters))
    inputs = ("problem", "optimizer", "clusters")
    s = settings_from("group_conventions", arguments, skip=inputs)
    s.setdefault("target", None)
    s.setdefault("momenta", MU_GRID)
    s["groups"] = tuple(int(g) for g in s["groups"])
    s["conventions"] = tuple(check_choice("conventions", c, CONVENTIONS) for c in s["conventions"])
    check_real("sync", s["sync"], low=0.0)
    clusters = arguments["clusters"]
    workers = {cluster.n_workers for _, cluster in clusters}
    if len(workers) != 1:
        raise ValueError(f"clusters must all have the same n_workers, got {sorted(workers)}")
    for g in s["groups"]:
        if g < 1 or clusters[0][1].n_workers % g:
            raise ValueError(f"groups must divide n_workers = {clusters[0][1].n_workers}, got {g}")
    return conduct("groups_papers_convention", _compute, s, arguments, inputs=inputs)
