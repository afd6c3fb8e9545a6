"""Real lock-free SGD on the digits CNN in PyTorch: the measured total momentum against
``1 - (1 - μ)/M`` (AbM Thm 6; theory/README.md §9), replayed from committed measurements.

The papers measured implicit momentum on convolutional networks; here M worker processes run the
heavy ball on :class:`asyncsim.problems.DigitsCNN` as a torch module
(:class:`asyncsim.torch_cnn.TorchCNNModel`) through :func:`asyncsim.hogwild.hogwild`, lock-free over
shared memory. Each run's total momentum is read two ways: by :class:`asyncsim.torch.MomentumMeter`,
one meter per worker fed after the run with that worker's recorded reads and gradients in its order
of write (what the meter would see inside the worker; the mean over workers), and by the pooled
estimator of :meth:`asyncsim.hogwild.HogwildRun.total_momentum` (one average over every write). A
synchronous run (M = 1) must read μ; an asynchronous one about ``1 - (1 - μ)/M``.

Real runs are not reproducible from a seed: the seed fixes each worker's minibatches, but the
operating system's scheduler interleaves the workers, and other work on the machine shapes it. So
this experiment replays the table committed with the package (``asyncsim/data/cnn_runs.csv`` and
``cnn_measured.json``, recorded by :func:`asyncsim.torch_cnn.record_cnn_measurements`; the data
README says how and on what machine) and needs no torch. Runs with more workers than cores are
marked ``oversubscribed``.

Random streams
--------------
``rng`` becomes one root (an int, recorded as ``seed``); the bootstrap intervals over runs draw from
``stream(root, "cnn_real_asynchrony", "bootstrap")``.
"""

from __future__ import annotations

import json
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import theory
from asyncsim._validate import check_choice
from asyncsim.experiments._schedule import Runner, stream_of
from asyncsim.experiments.real_asynchrony import measurement_folder, recording_settings
from asyncsim.experiments.result import ExperimentResult, conduct, documented
from asyncsim.experiments.settings import SCALES

__all__ = ["ESTIMATORS", "FILES", "cnn_real_asynchrony", "load_cnn_metadata", "load_cnn_runs"]

FILES = ("cnn_runs.csv", "cnn_measured.json")
"""The committed measurements in ``asyncsim/data/``: one row per run, and how they were made."""

ESTIMATORS = {"meter": "meter_total_momentum", "pooled": "total_momentum"}
"""The two readings of a run's total momentum and their columns in the runs table."""


def load_cnn_runs(folder: str | Path | None = None) -> pd.DataFrame:
    """The committed table of real CNN runs (``cnn_runs.csv``, one row per run:
    :func:`asyncsim.torch_cnn.cnn_run_summary`'s columns and ``run``); ``folder`` reads another
    recording (default: the package's)."""
    return pd.read_csv(measurement_folder(folder) / FILES[0])


def load_cnn_metadata(folder: str | Path | None = None) -> dict[str, Any]:
    """How and where the committed CNN runs were recorded (``cnn_measured.json``)."""
    return json.loads((measurement_folder(folder) / FILES[1]).read_text())


@documented
def cnn_real_asynchrony(
    *,
    folder: str | Path | None = None,
    scale: str = "quick",
    rng: Any = None,
    jobs: int = 1,
    executor: Executor | None = None,
    progress: bool | None = None,
) -> ExperimentResult:
    """The committed real lock-free runs on the digits CNN: total momentum per M and μ against
    ``1 - (1 - μ)/M`` (module docstring). No live run; the scale changes nothing (the
    measurements are fixed).

    ``data``: one row per ``workers``, ``momentum`` and ``estimator`` (:data:`ESTIMATORS`): the
    ``median`` total momentum over the runs with its 95% bootstrap interval ``low``, ``high``
    (``count`` runs), ``predicted`` = 1 - (1 - μ)/M, ``gap`` = median - μ, and ``cores``,
    ``oversubscribed``, ``load`` (median 1-minute load average over the runs).

    ``raw``: ``runs`` (the committed table, with ``gap`` = meter reading - μ and ``predicted``)
    and ``metadata``. ``config["note"]`` says that real runs are not reproducible from a seed.

    Parameters
    ----------
    folder : str or Path or None
        Another recording (default: the package's)."""
    arguments = dict(locals())
    check_choice("scale", scale, SCALES)
    metadata = load_cnn_metadata(folder)
    s = recording_settings(metadata, FILES, folder)
    return conduct("cnn_real_asynchrony", _compute, s, arguments)


def _compute(s: dict, root: int, runner: Runner) -> tuple[pd.DataFrame, dict[str, Any]]:
    # imported here: the claims module imports the experiments, and may come to import this one
    from asyncsim.experiments.claims import bootstrap

    runs = load_cnn_runs(s["folder"])
    mu, m = runs["momentum"].to_numpy(), runs["workers"].to_numpy()
    runs = runs.assign(gap=runs[ESTIMATORS["meter"]] - mu, predicted=theory.total_momentum(mu, m))
    boot = np.random.default_rng(stream_of(root, "cnn_real_asynchrony", "bootstrap"))
    rows = []
    for (workers, momentum), group in runs.groupby(["workers", "momentum"]):
        for estimator, column in ESTIMATORS.items():
            values = group[column].to_numpy(dtype=np.float64)
            measured = bootstrap(values.size, lambda i, v=values: float(np.median(v[i])), boot)
            rows.append(
                {
                    "workers": workers,
                    "momentum": momentum,
                    "estimator": estimator,
                    "median": measured.estimate,
                    "low": measured.low,
                    "high": measured.high,
                    "count": values.size,
                    "predicted": float(theory.total_momentum(momentum, workers)),
                    "gap": measured.estimate - momentum,
                    "cores": s["cores"],
                    "oversubscribed": bool(workers > s["cores"]),
                    "load": float(group["load"].median()),
                }
            )
    return pd.DataFrame(rows), {"runs": runs, "metadata": load_cnn_metadata(s["folder"])}
