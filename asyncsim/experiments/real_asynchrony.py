"""Real lock-free asynchrony on this machine held against the queueing model.

Everything else in the toolkit comes from its own model of a cluster. Here real lock-free SGD
(:func:`asyncsim.hogwild.hogwild`, M worker processes over shared memory) is measured, and the model is
held against the measurement in three ways:

- **staleness law**: the cluster model is fitted to the measured times (:func:`fit_cluster`: the
  model's compute time is a worker's whole cycle between two of its writes, since the model's reads
  and applies take no time; one :class:`~asyncsim.distributions.Empirical` law of the cycles, each
  divided by its worker's mean, times per-worker multipliers), simulated, and its staleness pmf
  compared with the measured one and with the geometric law ``(1/M)(1 - 1/M)^l``: mean, variance,
  ``P(τ = 0)`` and the total-variation distance;
- **iterations to target**: the measured trace replayed through the engine on the same problem and
  optimizer, over noise seeds, against the real runs (repeated), the fitted model's traces and the
  exponential cluster of M workers;
- **total momentum**: the worker-local estimator (theory/README.md §9) on the real runs, against
  ``1 - (1 - μ)/M`` and the estimate on the replayed, fitted and exponential traces.

Real runs are not reproducible from a seed: the scheduler interleaves the workers, and other work on
the machine shapes it. So the results read measurements committed with the package
(``asyncsim/data/``: one measured trace per M and a table of repeated runs, recorded by
:func:`record_measurements`; ``asyncsim/data/README.md`` says how and on what machine) and replay them;
only :func:`record_measurements` and ``asyncsim hogwild`` run live. Every table says how many cores
the runs had and marks the oversubscribed ones (more workers than cores: the scheduler time-slices
them, and that shapes the staleness).

Random streams
--------------
``rng`` becomes one root (an int, recorded as ``seed``). Replay k at M workers draws its gradient noise
from ``stream(root, "real_asynchrony", "noise", M, k)`` whatever the trace (common random numbers
across the replayed, fitted and exponential traces); its fitted-model trace from ``(...,
"fitted", M, k)``, its exponential-cluster trace from ``(..., "exponential", M, k)``, and the fitted
model's long trace for the staleness law from ``(..., "law", M)``. Bootstrap intervals over runs or
replays draw from ``(..., "bootstrap")``.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import platform
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import theory
from asyncsim._rng import record, root, stream
from asyncsim._validate import check_choice, check_int
from asyncsim.cluster import ClusterConfig, simulate
from asyncsim.distributions import Empirical
from asyncsim.engine import run
from asyncsim.experiments._schedule import Runner, stream_of
from asyncsim.experiments.result import ExperimentResult, conduct, documented
from asyncsim.experiments.settings import SCALES
from asyncsim.experiments.total_momentum import quantiles
from asyncsim.hogwild import HogwildRun, SharedHeavyBall, available_cores, hogwild
from asyncsim.measure import iterations_to_target
from asyncsim.optim import heavy_ball
from asyncsim.problems import make_problem
from asyncsim.trace import Trace

__all__ = [
    "RECORDING",
    "cycle_times",
    "fit_cluster",
    "load_metadata",
    "load_runs",
    "measured_staleness",
    "measured_trace",
    "real_asynchrony",
    "record_measurements",
    "run_summary",
    "staleness_laws",
]

RECORDING: dict[str, Any] = {
    "problem": "nq50",
    "lr": 0.1,
    "momenta": (0.0, 0.5),
    "traced_momentum": 0.5,
    "workers": (1, 2, 4, 8),
    "runs": 8,
    "updates": 5000,
    "record_every": 10,
    "timeout": 120.0,
}
"""How the committed measurements were made: the defaults of :func:`record_measurements`. Heavy
ball with step ``lr`` on ``problem``, each momentum and worker count ``runs`` times (the runs
interleaved), ``updates`` writes each; the first run at ``traced_momentum`` gives the committed trace
of its M."""

_SETTINGS = {  # per scale: the replays and the simulated law; the measurements are the same
    "quick": {"replays": 8, "simulated": 50_000, "warmup": 20, "max_lag": 64, "late": 1 / 3},
    "full": {"replays": 64, "simulated": 400_000, "warmup": 20, "max_lag": 64, "late": 1 / 3},
}
# warmup: updates left out of every staleness law, per worker (the first writes read version 0);
# max_lag: lags of the pmf kept in the table (the distances use every lag);
# late: the fraction of a run before the total momentum is read (past the transient).

DATA = "data"
"""The package folder of the committed measurements."""

SOURCES = ("measured", "fitted", "geometric")
"""The staleness laws compared: the measurement, the fitted cluster model, the geometric law."""

NOT_REPRODUCIBLE = (
    "real runs are not reproducible from a seed: the operating system's scheduler interleaves the "
    "workers, and other work on the machine shapes it; these results replay the measurements "
    "committed in asyncsim/data/"
)


# ------------------------------------------------------------------------------------------ data
def measurement_folder(folder: str | Path | None = None) -> Path:
    """``folder``, or the package's folder of committed measurements."""
    return Path(folder) if folder is not None else Path(str(resources.files("asyncsim") / DATA))


def recording_settings(
    metadata: dict[str, Any], names: Sequence[str], folder: str | Path | None
) -> dict[str, Any]:
    """What a replay of committed measurements depends on: the recording's cores and settings, a
    SHA-256 (first 16 hex digits) of the files ``names`` (so a result cache sees a new recording),
    the folder, and the note that real runs are not reproducible from a seed."""
    digest = hashlib.sha256()
    for name in names:
        digest.update(name.encode())
        digest.update((measurement_folder(folder) / name).read_bytes())
    return {
        "cores": metadata["cores"],
        "recording": metadata["settings"],
        "measurements": digest.hexdigest()[:16],
        "folder": None if folder is None else str(folder),
        "note": NOT_REPRODUCIBLE,
    }


def measured_trace(workers: int, folder: str | Path | None = None) -> Trace:
    """The committed measured trace of ``workers`` lock-free workers (``measured_m{M}.csv``), origin
    ``"measured"``; ``folder`` reads another recording (default: the package's)."""
    m = check_int("workers", workers, low=1)
    path = measurement_folder(folder) / f"measured_m{m}.csv"
    if not path.exists():
        recorded = ", ".join(str(w) for w in load_metadata(folder)["workers"])
        raise ValueError(f"workers must be one of the recorded worker counts {recorded}; got {m}")
    trace = Trace.load(path)
    object.__setattr__(trace, "origin", "measured")
    return trace


def load_runs(folder: str | Path | None = None) -> pd.DataFrame:
    """The committed table of repeated real runs (``measured_runs.csv``): one row per run
    (:func:`run_summary`'s columns)."""
    return pd.read_csv(measurement_folder(folder) / "measured_runs.csv")


def load_metadata(folder: str | Path | None = None) -> dict[str, Any]:
    """How and where the committed measurements were recorded (``measured.json``): machine, cores,
    settings, date, load."""
    return json.loads((measurement_folder(folder) / "measured.json").read_text())


# ------------------------------------------------------------------------------------------ fit
def cycle_times(trace: Trace) -> np.ndarray:
    """Each update's cycle, shape ``(n,)``, seconds: the time since its writer's previous write (its
    first: since the start). Needs writers and a clock."""
    if (trace.writer < 0).any() or np.isnan(trace.apply_time).any():
        raise ValueError("cycle_times needs a trace with writers and apply times (a measured one)")
    cycles = np.empty(len(trace))
    for worker in np.unique(trace.writer):
        rows = np.flatnonzero(trace.writer == worker)
        cycles[rows] = np.diff(trace.apply_time[rows], prepend=0.0)
    return cycles


def fit_cluster(trace: Trace, n_workers: int | None = None) -> ClusterConfig:
    """The cluster model fitted to a measured trace: M asynchronous workers whose compute time is an
    :class:`~asyncsim.distributions.Empirical` law of every worker's cycles divided by that worker's
    mean cycle (times the mean over workers), with ``time_multipliers`` the workers' mean cycles over
    that mean. Time unit: seconds. A worker that never wrote (``n_workers`` larger than the writers
    seen) gets no multiplier: ValueError."""
    cycles = cycle_times(trace)
    workers = np.unique(trace.writer)
    m = int(workers.max()) + 1 if n_workers is None else check_int("n_workers", n_workers, low=1)
    if not np.array_equal(workers, np.arange(m)):
        raise ValueError(
            f"every worker 0..{m - 1} must have written to fit the model; the trace has writers "
            f"{workers.tolist()}"
        )
    means = np.array([cycles[trace.writer == i].mean() for i in range(m)])
    scale = means.mean()
    shape = cycles / means[trace.writer] * scale
    return ClusterConfig(m, compute=Empirical(tuple(shape)), time_multipliers=means / scale)


def _pmf(staleness: np.ndarray, warmup: int) -> np.ndarray:
    tau = staleness[warmup:]
    return np.bincount(tau) / tau.size


def _tv(p: np.ndarray, q: np.ndarray) -> float:
    """Total-variation distance of two pmfs on 0, 1, ... (padded with zeros); a ``q`` that sums to
    less than one (a truncated law) counts its missing mass as distance."""
    size = max(p.size, q.size)
    p, q = np.pad(p, (0, size - p.size)), np.pad(q, (0, size - q.size))
    return float(0.5 * (np.abs(p - q).sum() + abs(p.sum() - q.sum())))


def staleness_laws(
    trace: Trace,
    *,
    simulated: int = 50_000,
    warmup: int = 20,
    max_lag: int = 64,
    rng: Any = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The measured staleness law beside the fitted model's (``simulated`` updates of
    :func:`fit_cluster`) and the geometric law of M workers, each leaving out ``warmup`` × M first
    updates.

    Returns
    -------
    pmf : DataFrame
        ``lag`` 0..``max_lag`` (at most the largest lag seen) and one column per law of
        :data:`SOURCES`.
    summary : DataFrame
        One row per law: ``source``, ``mean``, ``variance``, ``p_zero``, and its total-variation
        distances to the measured law (``tv_measured``) and to the geometric law
        (``tv_geometric``), over every lag.
    """
    m = int(trace.writer.max()) + 1
    skip = warmup * m
    fitted = simulate(fit_cluster(trace, m), simulated, rng=rng)
    laws = {"measured": _pmf(trace.staleness, skip), "fitted": _pmf(fitted.staleness, skip)}
    top = max(law.size for law in laws.values()) - 1
    geometric_tail = max(top, int(np.ceil(np.log(1e-12) / np.log(1 - 1 / m))) if m > 1 else 0)
    laws["geometric"] = theory.staleness_pmf(np.arange(geometric_tail + 1), m)
    summary = pd.DataFrame(
        {
            "source": list(SOURCES),
            "mean": [
                _moment(laws["measured"], 1),
                _moment(laws["fitted"], 1),
                float(theory.staleness_mean(m)),
            ],
            "variance": [
                _moment(laws["measured"], 2),
                _moment(laws["fitted"], 2),
                float(theory.staleness_variance(m)),
            ],
            "p_zero": [float(laws[s][0]) for s in SOURCES],
            "tv_measured": [_tv(laws[s], laws["measured"]) for s in SOURCES],
            "tv_geometric": [_tv(laws[s], laws["geometric"]) for s in SOURCES],
        }
    )
    shown = np.arange(min(top, max_lag) + 1)
    pmf = pd.DataFrame(
        {
            "lag": shown,
            **{s: np.pad(laws[s], (0, max(0, shown.size - laws[s].size)))[shown] for s in SOURCES},
        }
    )
    return pmf, summary


def _moment(pmf: np.ndarray, order: int) -> float:
    """Mean (order 1) or variance (order 2) of a pmf on 0, 1, ..."""
    lags = np.arange(pmf.size)
    mean = float(pmf @ lags)
    return mean if order == 1 else float(pmf @ (lags - mean) ** 2)


# ------------------------------------------------------------------------------------------ one trace
@documented
def measured_staleness(
    trace: Trace,
    *,
    simulated: int | None = None,
    cores: int | None = None,
    scale: str = "quick",
    rng: Any = None,
    jobs: int = 1,
    executor: Executor | None = None,
    progress: bool | None = None,
) -> ExperimentResult:
    """One measured trace's staleness law beside the fitted cluster model's and the geometric law
    (:func:`staleness_laws`): what ``asyncsim hogwild`` prints and plots.

    ``data``: ``part`` "pmf" rows (``lag`` and a column per law of :data:`SOURCES`) and ``part``
    "staleness" rows (one per law: ``mean``, ``variance``, ``p_zero``, ``tv_measured``,
    ``tv_geometric``), each with ``workers``, ``cores`` and ``oversubscribed``.

    Parameters
    ----------
    trace : Trace
        A measured trace (writers and apply times).
    simulated : int or None
        Updates simulated from the fitted model.
    cores : int or None
        Cores the run had (default: this machine's)."""
    arguments = dict(locals())
    s = _settings(arguments["scale"], simulated=simulated) | {
        "cores": available_cores() if cores is None else check_int("cores", cores, low=1)
    }
    return conduct("measured_staleness", _compute_one, s, arguments, inputs=("trace",))


def _compute_one(
    s: dict, root: int, runner: Runner, trace: Trace
) -> tuple[pd.DataFrame, dict[str, Any]]:
    m = int(trace.writer.max()) + 1
    pmf, summary = runner.call(_laws, trace, s, stream_of(root, "real_asynchrony", "law", m))
    return _stack(m, s["cores"], pmf=pmf, staleness=summary), {}


def _laws(trace: Trace, s: dict, seq: np.random.SeedSequence) -> tuple[pd.DataFrame, pd.DataFrame]:
    return staleness_laws(
        trace, simulated=s["simulated"], warmup=s["warmup"], max_lag=s["max_lag"], rng=seq
    )


def _stack(m: int, cores: int, **parts: pd.DataFrame) -> pd.DataFrame:
    """The parts as one table, each row labelled with its ``part``, M, the cores and whether the run
    was oversubscribed."""
    frames = [
        frame.assign(part=name, workers=m, cores=cores, oversubscribed=m > cores)
        for name, frame in parts.items()
    ]
    table = pd.concat(frames, ignore_index=True)
    first = ["part", "workers", "cores", "oversubscribed"]
    return table[first + [c for c in table.columns if c not in first]]


def _settings(scale: str, **overrides: Any) -> dict[str, Any]:
    check_choice("scale", scale, SCALES)
    return _SETTINGS[scale] | {k: v for k, v in overrides.items() if v is not None}


# ------------------------------------------------------------------------------------------ all of it
@documented
def real_asynchrony(
    *,
    workers: Sequence[int] | None = None,
    replays: int | None = None,
    simulated: int | None = None,
    folder: str | Path | None = None,
    scale: str = "quick",
    rng: Any = None,
    jobs: int = 1,
    executor: Executor | None = None,
    progress: bool | None = None,
) -> ExperimentResult:
    """The committed measurements of real lock-free SGD against the queueing model (module
    docstring). No live run: it replays ``asyncsim/data/``.

    ``data`` (every row with ``workers``, ``cores`` and ``oversubscribed``), by ``part``:

    - "pmf": ``lag`` and the probability under each law of :data:`SOURCES`;
    - "staleness": per law (``source``) the ``mean``, ``variance``, ``p_zero`` and the
      total-variation distances ``tv_measured`` and ``tv_geometric``;
    - "iterations": updates to the problem's target per ``momentum`` and ``source`` ("real": the
      repeated real runs; "replayed": the measured trace through the engine; "fitted": traces of the
      fitted model; "exponential": the cluster of M exponential workers, whose law is geometric),
      ``median`` with its 95% bootstrap interval ``low``, ``high`` over runs or replays (``count``);
    - "total_momentum": the worker-local estimate, late in each run, per ``momentum`` and
      ``source``, with its interval, beside ``predicted`` = 1 - (1 - μ)/M.

    ``raw``: ``runs`` (the committed table of real runs), ``replays`` (one row per engine run) and
    ``metadata`` (machine, cores, settings of the recording). ``config["note"]`` says that real runs
    are not reproducible from a seed.

    Parameters
    ----------
    workers : sequence of int or None
        Worker counts (default: all recorded).
    replays : int or None
        Noise seeds of the engine runs per (M, μ, source).
    simulated : int or None
        Updates simulated from the fitted model for its staleness law.
    folder : str or Path or None
        Another recording (default: the package's)."""
    arguments = dict(locals())
    metadata = load_metadata(folder)
    chosen = tuple(metadata["workers"]) if workers is None else tuple(workers)
    for m in chosen:
        check_choice("workers", m, tuple(metadata["workers"]))
    names = sorted(path.name for path in measurement_folder(folder).glob("measured*"))
    s = _settings(scale, replays=replays, simulated=simulated) | {"workers": chosen}
    s |= recording_settings(metadata, names, folder)
    return conduct("real_asynchrony", _compute, s, arguments)


def _compute(s: dict, root: int, runner: Runner) -> tuple[pd.DataFrame, dict[str, Any]]:
    folder = s["folder"]
    calls = [(m, s, root) for m in s["workers"]]
    per_m = runner.map(_against_model, calls)
    runs = load_runs(folder)
    boot = np.random.default_rng(stream_of(root, "real_asynchrony", "bootstrap"))
    replays = pd.concat([engine for _, engine in per_m], ignore_index=True)
    frames = [laws for laws, _ in per_m]
    for m in s["workers"]:
        real = runs[runs["workers"] == m].assign(source="real")
        both = pd.concat([real, replays[replays["workers"] == m]], ignore_index=True)
        total = _intervals(both, "total_momentum", boot)
        total["predicted"] = theory.total_momentum(total["momentum"].to_numpy(), m)
        iterations = _intervals(both, "iterations", boot)
        frames.append(_stack(m, s["cores"], iterations=iterations, total_momentum=total))
    raw = {"runs": runs, "replays": replays, "metadata": load_metadata(folder)}
    return pd.concat(frames, ignore_index=True), raw


def _intervals(rows: pd.DataFrame, column: str, rng: np.random.Generator) -> pd.DataFrame:
    """Median of ``column`` per (momentum, source) with its 95% bootstrap interval over the rows."""
    # imported here: the claims module imports the experiments, and may come to import this one
    from asyncsim.experiments.claims import bootstrap

    out = []
    for (mu, source), group in rows.groupby(["momentum", "source"], sort=False):
        values = group[column].to_numpy(dtype=np.float64)
        measured = bootstrap(values.size, lambda i, v=values: float(np.median(v[i])), rng)
        out.append(
            {
                "momentum": mu,
                "source": source,
                "median": measured.estimate,
                "low": measured.low,
                "high": measured.high,
                "count": values.size,
            }
        )
    return pd.DataFrame(out)


def _against_model(m: int, s: dict, root: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """For M workers: the staleness laws (pmf and summary rows), and the engine runs on the measured
    trace, the fitted model's traces and the exponential cluster's (one row per run)."""
    trace = measured_trace(m, s["folder"])
    pmf, summary = _laws(trace, s, stream_of(root, "real_asynchrony", "law", m))
    recording = s["recording"]
    n = len(trace)
    fitted = fit_cluster(trace, m)
    sources: dict[str, Callable[[int], Trace]] = {
        "replayed": lambda k: trace,
        "fitted": lambda k: simulate(
            fitted, n, rng=stream_of(root, "real_asynchrony", "fitted", m, k)
        ),
        "exponential": lambda k: simulate(
            ClusterConfig(m), n, rng=stream_of(root, "real_asynchrony", "exponential", m, k)
        ),
    }
    keys = [
        (source, mu, k)
        for source in sources
        for mu in recording["momenta"]
        for k in range(s["replays"])
    ]
    traces = {(source, k): sources[source](k) for source in sources for k in range(s["replays"])}
    problem = make_problem(recording["problem"])
    every = recording["record_every"]
    hist = run(
        problem,
        heavy_ball(recording["lr"], np.array([mu for _, mu, _ in keys])),
        [traces[(source, k)] for source, _, k in keys],
        n,
        rng=[stream_of(root, "real_asynchrony", "noise", m, k) for _, _, k in keys],
        record_every=every,
        estimate_momentum=True,
    )
    late = hist.steps >= n * s["late"]
    engine = pd.DataFrame(
        {
            "workers": m,
            "source": [source for source, _, _ in keys],
            "momentum": [mu for _, mu, _ in keys],
            "replay": [k for _, _, k in keys],
            "iterations": iterations_to_target(hist, problem.target),
            "total_momentum": quantiles(hist["total_momentum"][late].T, (0.5,))[0],
            "diverged": hist.diverged,
        }
    )
    return _stack(m, s["cores"], pmf=pmf, staleness=summary), engine


# ------------------------------------------------------------------------------------------ live
def run_summary(run: HogwildRun, target: float, *, warmup: int = 20, late: float = 1 / 3) -> dict:
    """One real run as a row of the runs table: its M, momentum, cores and load; its staleness
    (``mean``, ``variance``, ``p_zero``, ``max_staleness``, leaving out ``warmup`` × M first
    updates); ``torn`` (mean of read end - read start); medians of the ``compute_us`` and
    ``cycle_us`` times; ``iterations`` to ``target`` (the first recorded update at or below it, inf
    if none or diverged); ``total_momentum`` (median of the estimates past ``late`` of the run; needs
    ``record_reads``); the flags."""
    trace = run.trace
    tau = trace.staleness[warmup * run.n_workers :]
    below = np.flatnonzero(run.loss <= target)
    steps, estimates = run.total_momentum(every=run.config["record_every"] or len(trace))
    shown = estimates[steps >= late * len(trace)]
    return {
        "workers": run.n_workers,
        "momentum": run.config["optimizer"]["momentum"],
        "lr": run.config["optimizer"]["lr"],
        "cores": run.cores,
        "oversubscribed": run.oversubscribed,
        "load": run.config["load"],
        "updates": len(trace),
        "elapsed": run.elapsed,
        "mean": float(tau.mean()),
        "variance": float(tau.var()),
        "p_zero": float(np.mean(tau == 0)),
        "max_staleness": int(tau.max()),
        "torn": float(np.mean(run.read_end - trace.read_version)),
        "compute_us": float(np.median(run.compute_time) * 1e6),
        "cycle_us": float(np.median(cycle_times(trace)) * 1e6),
        "iterations": float(run.steps[below[0]]) if below.size and not run.diverged else np.inf,
        "total_momentum": float(np.nanmedian(shown)) if np.isfinite(shown).any() else np.nan,
        "diverged": run.diverged,
        "timed_out": run.timed_out,
    }


def record_measurements(
    folder: str | Path,
    *,
    workers: Sequence[int] = RECORDING["workers"],
    runs: int = RECORDING["runs"],
    updates: int = RECORDING["updates"],
    problem: str = RECORDING["problem"],
    lr: float = RECORDING["lr"],
    momenta: Sequence[float] = RECORDING["momenta"],
    traced_momentum: float = RECORDING["traced_momentum"],
    record_every: int = RECORDING["record_every"],
    timeout: float = RECORDING["timeout"],
    rng: Any = None,
    note: str = "",
    report: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """Run real lock-free SGD and write the measurements :func:`real_asynchrony` replays into
    ``folder``: ``measured_m{M}.csv`` (the first run at ``traced_momentum`` for each M),
    ``measured_runs.csv`` (one row per run, :func:`run_summary`) and ``measured.json`` (machine,
    cores, settings, date, ``note``). Runs go round robin (run k of every μ and M, then run k + 1),
    so that the machine's load falls on every case alike. Not reproducible: ``rng`` fixes the
    gradient noise (run k at M workers and momentum index j draws from ``stream(root, M, j, k)``),
    not the interleaving. ``report`` receives a line per run. Returns the runs table."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if traced_momentum not in momenta:
        raise ValueError(
            f"traced_momentum must be one of momenta {tuple(momenta)}; got {traced_momentum}"
        )
    instance = make_problem(problem)
    seq = root(rng)
    rows = []
    for k in range(check_int("runs", runs, low=1)):
        for j, mu in enumerate(momenta):
            for m in workers:
                result = hogwild(
                    instance,
                    SharedHeavyBall(lr, mu),
                    m,
                    updates,
                    rng=stream(seq, m, j, k),
                    record_every=record_every,
                    record_reads=True,
                    timeout=timeout,
                )
                rows.append(run_summary(result, instance.target) | {"run": k})
                if k == 0 and mu == traced_momentum:
                    result.save(folder / f"measured_m{m}.csv")
                if report is not None:
                    report(_line(rows[-1]))
    table = pd.DataFrame(rows)
    table.to_csv(folder / "measured_runs.csv", index=False, float_format="%.6g")
    metadata = {
        "machine": platform.platform(),
        "processor": _processor(),
        "cores": available_cores(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "recorded": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "workers": list(workers),
        "settings": {
            "problem": problem,
            "lr": lr,
            "momenta": list(momenta),
            "traced_momentum": traced_momentum,
            "runs": runs,
            "updates": updates,
            "record_every": record_every,
            "start_method": "spawn",
            "seed": str(record(seq)),
        },
        "load_average": [float(x) for x in os.getloadavg()],
        "note": note,
    }
    (folder / "measured.json").write_text(json.dumps(metadata, indent=2) + "\n")
    return table


def _processor() -> str:
    """The CPU model name (Linux), else what :mod:`platform` says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _line(row: dict) -> str:
    return (
        f"M = {row['workers']} μ = {row['momentum']:g} run {row['run']}: mean τ {row['mean']:.2f}, "
        f"P(τ = 0) {row['p_zero']:.3f}, iterations {row['iterations']:g}, total momentum "
        f"{row['total_momentum']:.3f}, load {row['load']:.2f}"
    )
