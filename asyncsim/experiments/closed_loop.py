"""YellowFin's closed loop: the measured total momentum held at a target by steering the algorithmic
momentum (YellowFin §5), against the open loop."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Executor
from typing import Any

import numpy as np
import pandas as pd

from asyncsim.cluster import ClusterConfig, simulate
from asyncsim.engine import run
from asyncsim.experiments._schedule import Runner, stream_of
from asyncsim.experiments.result import ExperimentResult, conduct, documented
from asyncsim.experiments.settings import settings_from
from asyncsim.experiments.total_momentum import quantiles
from asyncsim.measure import iterations_to_target
from asyncsim.problems import make_problem
from asyncsim.sweep import OPTIMIZERS

__all__ = ["closed_loop"]


def _data(
    s: dict, root: int, problem: Any, optimizer: Any, cluster: ClusterConfig | None
) -> tuple[pd.DataFrame, dict[str, Any]]:
    instance = make_problem(problem) if isinstance(problem, str) else problem
    m, n_seeds = s["workers"], s["seeds"]
    config = ClusterConfig(m) if cluster is None else cluster
    gains = np.array([0.0, *s["gains"]])
    traces = [
        simulate(config, s["steps"], rng=stream_of(root, "closed_loop", "trace", k))
        for k in range(n_seeds)
    ]
    g_index, seed_index = (a.ravel() for a in np.indices((gains.size, n_seeds)))
    target = np.nan if s["target"] is None else s["target"]
    hist = run(
        instance,
        optimizer(
            s["lr_init"],
            0.0,
            closed_loop=gains[g_index] > 0,
            target_momentum=target,
            gain=gains[g_index],
        ),
        [traces[i] for i in seed_index],
        s["steps"],
        rng=[stream_of(root, "closed_loop", "noise", k) for k in seed_index],
        record_every=s["record_every"],
        estimate_momentum=True,
    )
    shape = (hist.steps.size, gains.size, n_seeds)
    its = iterations_to_target(hist, instance.target).reshape(gains.size, n_seeds)
    frames = []
    for j, gain in enumerate(gains):
        total = quantiles(hist["total_momentum"].reshape(shape)[:, j], (0.5, 0.0, 1.0))
        frames.append(
            pd.DataFrame(
                {
                    "loop": "open" if gain == 0 else f"closed, γ = {gain:g}",
                    "gain": gain,
                    "step": hist.steps,
                    "target": hist["mu_star"].reshape(shape)[:, j].mean(axis=1),
                    "total": total[0],
                    "total_low": total[1],
                    "total_high": total[2],
                    "momentum": np.median(hist["momentum"].reshape(shape)[:, j], axis=1),
                    "lr": np.median(hist["lr"].reshape(shape)[:, j], axis=1),
                    "loss": np.median(hist.loss.reshape(shape)[:, j], axis=1),
                    "iterations": np.median(its[j]),
                    "reached": np.isfinite(its[j]).mean(),
                    "diverged": hist.diverged.reshape(gains.size, n_seeds)[j].mean(),
                }
            )
        )
    data = pd.concat(frames, ignore_index=True)
    data["loss_target"] = instance.target
    data["fixed_point"] = 1.0 - m * (1.0 - target)
    data["workers"] = m
    data["shown_gain"] = s["shown_gain"]
    data["burn_in"] = 3 * m / s["shown_gain"]  # three time constants M/γ of the shown loop
    data["band"] = s["band"]
    per_seed = pd.DataFrame({"gain": gains[g_index], "seed": seed_index, "iterations": its.ravel()})
    return data, {"per_seed": per_seed}


def _compute(
    s: dict, root: int, runner: Runner, problem: Any, optimizer: Any, cluster: ClusterConfig | None
) -> tuple[pd.DataFrame, dict[str, Any]]:
    return runner.call(_data, s, root, problem, optimizer, cluster)


@documented
def closed_loop(
    problem: Any = "nq50",
    *,
    optimizer: Any = OPTIMIZERS["yellowfin"],
    cluster: ClusterConfig | None = None,
    workers: int | None = None,
    target: float | None = None,
    gains: Sequence[float] | None = None,
    lr_init: float | None = None,
    seeds: int | None = None,
    steps: int | None = None,
    record_every: int | None = None,
    scale: str = "quick",
    rng: Any = None,
    jobs: int = 1,
    executor: Executor | None = None,
    progress: bool | None = None,
) -> ExperimentResult:
    """The closed loop (gains γ > 0) against the open loop (γ = 0) on M asynchronous workers: the
    measured total momentum, the applied μ and the loss over the run, and the updates to the
    problem's target.

    ``data``: per (loop, recorded step) the medians over seeds of the total momentum (with its
    range), the applied μ and α, the loss; per loop the median updates to target, the fraction of
    seeds that reached it and that diverged; ``fixed_point`` = 1 - M(1 - μ*), the applied μ that
    gives a total of μ* by the queueing model. ``raw["per_seed"]``: updates to target per (gain, seed).

    Parameters
    ----------
    problem : str or Problem
    optimizer : callable
        A factory ``(lr, momentum, *, closed_loop, target_momentum, gain)`` with (B,) arrays for the
        last three (default YellowFin: :func:`~asyncsim.yellowfin.yellowfin_tuner` started at α₀ =
        ``lr``); it must give writer ids to its loop (the cluster traces do).
    cluster : ClusterConfig or None
        The cluster (default M exponential workers; a given config's worker count is used as it is).
    workers : int or None
        M of the default cluster.
    target : float or None
        The target μ*; None (from the settings or by ``target=float("nan")``) lets the tuner choose.
    gains, lr_init, seeds, steps, record_every
        The closed-loop gains, the starting step size and the run."""
    arguments = dict(locals())
    s = settings_from("closed_loop", arguments, skip=("problem", "optimizer", "cluster"))
    if target is not None and np.isnan(target):
        s["target"] = None
    if cluster is not None:
        s["workers"] = cluster.n_workers
    return conduct(
        "closed_loop", _compute, s, arguments, inputs=("problem", "optimizer", "cluster")
    )
