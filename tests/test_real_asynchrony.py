"""The model held against real asynchrony: the fit is exact where it can be, the committed
measurements are what they say, and the experiment and its figure replay them."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pytest

import theory
from asyncsim.cluster import ClusterConfig, simulate
from asyncsim.distributions import Deterministic
from asyncsim.experiments import real_asynchrony
from asyncsim.experiments.real_asynchrony import (
    RECORDING,
    cycle_times,
    fit_cluster,
    load_metadata,
    load_runs,
    measured_staleness,
    measured_trace,
    record_measurements,
    staleness_laws,
)
from asyncsim.figures import FIGURES
from asyncsim.figures.real_asynchrony import make_measured_staleness, make_real_asynchrony
from asyncsim.trace import Trace


# ------------------------------------------------------------------------------------------ the fit
def test_the_fit_of_a_deterministic_cluster_simulates_its_trace_again() -> None:
    """Two workers of cycles 0.5 and 1: every cycle is its worker's mean, so the fitted law is one
    value (the mean over workers, 0.75) with multipliers 2/3 and 4/3, and the fitted model makes the
    very same trace."""
    config = ClusterConfig(2, compute=Deterministic(1.0), time_multipliers=(0.5, 1.0))
    trace = simulate(config, 300, rng=0)
    cycles = cycle_times(trace)
    np.testing.assert_allclose(cycles, np.where(trace.writer == 0, 0.5, 1.0))
    fitted = fit_cluster(trace)
    assert set(fitted.compute.samples) == {0.75}
    np.testing.assert_allclose(fitted.time_multipliers, (2 / 3, 4 / 3))
    again = simulate(fitted, 300, rng=1)
    assert np.array_equal(again.staleness, trace.staleness)
    assert np.array_equal(again.writer, trace.writer)


def test_exponential_workers_fit_to_their_geometric_law() -> None:
    """A trace of M = 4 exponential workers, treated as a measurement: its law and its fitted
    model's are both within 0.03 of the geometric law in total variation (20,000 updates)."""
    trace = simulate(ClusterConfig(4), 20_000, rng=5)
    pmf, summary = staleness_laws(trace, simulated=20_000, rng=6)
    rows = summary.set_index("source")
    assert rows.loc["measured", "tv_geometric"] < 0.03
    assert rows.loc["fitted", "tv_geometric"] < 0.03
    assert rows.loc["geometric", "tv_geometric"] == 0 and rows.loc["measured", "tv_measured"] == 0
    assert rows.loc["geometric", "mean"] == pytest.approx(3.0)
    assert rows.loc["geometric", "variance"] == pytest.approx(12.0)
    np.testing.assert_allclose(pmf["geometric"], theory.staleness_pmf(pmf["lag"], 4))
    assert rows.loc["measured", "p_zero"] == pytest.approx(pmf["measured"].iloc[0])


def test_the_fit_needs_writers_and_a_clock() -> None:
    with pytest.raises(ValueError, match="needs a trace with writers and apply times"):
        cycle_times(Trace.from_staleness([0, 1, 0]))
    trace = simulate(ClusterConfig(2), 50, rng=0)
    with pytest.raises(ValueError, match=r"every worker 0\.\.2 must have written"):
        fit_cluster(trace, 3)


# ------------------------------------------------------------------------------------------ data
DATA = Path(__file__).resolve().parents[1] / "asyncsim" / "data"


def test_the_measurement_files_are_those_their_readme_lists() -> None:
    listed = dict(
        re.findall(r"^- `(measured[\w.]*)` ([0-9a-f]{64})$", (DATA / "README.md").read_text(), re.M)
    )
    present = {p.name for p in DATA.glob("measured*")}
    assert set(listed) == present and len(present) == 6
    for name, digest in listed.items():
        assert hashlib.sha256((DATA / name).read_bytes()).hexdigest() == digest, name


def test_the_committed_measurements_are_what_they_say() -> None:
    metadata = load_metadata()
    runs = load_runs()
    cores = metadata["cores"]
    assert metadata["workers"] == list(RECORDING["workers"])
    assert metadata["settings"]["updates"] == RECORDING["updates"] and cores >= 1
    for m in metadata["workers"]:
        trace = measured_trace(m)
        assert trace.origin == "measured" and len(trace) == RECORDING["updates"]
        assert set(np.unique(trace.writer)) <= set(range(m))
        assert np.all(np.diff(trace.apply_time) > 0)
    cases = len(RECORDING["workers"]) * len(RECORDING["momenta"]) * RECORDING["runs"]
    assert len(runs) == cases
    assert (runs["oversubscribed"] == (runs["workers"] > runs["cores"])).all()
    assert (runs["cores"] == cores).all()
    single = runs[runs["workers"] == 1]
    assert (single["mean"] == 0).all()
    # One worker: the estimator's terms are μ exactly.
    np.testing.assert_allclose(single["total_momentum"], single["momentum"], atol=1e-9)
    with pytest.raises(ValueError, match="workers must be one of the recorded worker counts"):
        measured_trace(3)


# ------------------------------------------------------------------------------------------ experiment
@pytest.fixture(scope="module")
def replayed():
    return real_asynchrony(workers=(1, 8), replays=3, simulated=5000, rng=0)


def test_the_experiment_replays_the_measurements(replayed) -> None:
    data = replayed.data
    assert set(data["part"]) == {"pmf", "staleness", "iterations", "total_momentum"}
    assert "not reproducible" in replayed.config["note"]
    assert (data["oversubscribed"] == (data["workers"] > data["cores"])).all()
    one = data[data["workers"] == 1]
    laws = one[one["part"] == "staleness"]
    assert (laws["p_zero"] == 1).all() and (laws["tv_measured"] == 0).all()
    # No staleness at M = 1: the engine sees the same run on all three traces.
    its = one[one["part"] == "iterations"].set_index(["momentum", "source"])["median"]
    for mu in RECORDING["momenta"]:
        assert its[(mu, "replayed")] == its[(mu, "fitted")] == its[(mu, "exponential")]
    total = data[data["part"] == "total_momentum"]
    np.testing.assert_allclose(total["predicted"], 1 - (1 - total["momentum"]) / total["workers"])
    assert (total["low"] <= total["median"]).all() and (total["median"] <= total["high"]).all()
    real = total[(total["workers"] == 1) & (total["source"] == "real")]
    np.testing.assert_allclose(real["median"], real["momentum"], atol=1e-9)
    assert set(replayed.raw) == {"runs", "replays", "metadata"}


def test_the_figure_draws_the_replayed_measurements(replayed, tmp_path: Path) -> None:
    fig = make_real_asynchrony(replayed)
    assert len(fig.axes) == 5  # the laws at M = 1 and 8, then three panels against M
    titles = [ax.get_title(loc="left") for ax in fig.axes]
    assert titles[0].startswith("M = 1 on ") and "oversubscribed" not in titles[0]
    assert titles[1].startswith("M = 8 on ") and ("oversubscribed" in titles[1]) == (
        replayed.config["cores"] < 8
    )
    shown = fig.axes[1].containers[0]  # the measured bars at M = 8
    pmf = replayed.data.query("part == 'pmf' and workers == 8 and lag <= 30")
    np.testing.assert_allclose([bar.get_height() for bar in shown], pmf["measured"])
    fig.savefig(tmp_path / "real_asynchrony.png", dpi=40)
    assert (tmp_path / "real_asynchrony.png").stat().st_size > 5_000
    assert FIGURES["real_asynchrony"].experiment is real_asynchrony


def test_one_trace_against_the_model_and_its_plot(tmp_path: Path) -> None:
    result = measured_staleness(measured_trace(4), simulated=5000, cores=2, rng=0)
    laws = result.data[result.data["part"] == "staleness"]
    assert laws["source"].tolist() == ["measured", "fitted", "geometric"]
    assert laws["oversubscribed"].all() and (laws["cores"] == 2).all()
    make_measured_staleness(result).savefig(tmp_path / "pmf.png", dpi=40)


def test_bad_choices_are_refused() -> None:
    with pytest.raises(ValueError, match="workers must be one of"):
        real_asynchrony(workers=(3,))
    with pytest.raises(ValueError, match="traced_momentum must be one of momenta"):
        record_measurements("unused", momenta=(0.0,), traced_momentum=0.5)


# ------------------------------------------------------------------------------------------ live
def test_a_small_live_recording_replays_like_the_committed_one(tmp_path: Path) -> None:
    lines: list[str] = []
    table = record_measurements(
        tmp_path,
        workers=(1, 2),
        runs=1,
        updates=400,
        momenta=(0.5,),
        traced_momentum=0.5,
        rng=0,
        report=lines.append,
    )
    assert len(table) == 2 and len(lines) == 2
    assert load_metadata(tmp_path)["cores"] == table["cores"].iloc[0]
    result = real_asynchrony(folder=tmp_path, replays=2, simulated=2000, rng=0)
    assert sorted(result.data["workers"].unique()) == [1, 2]
    assert len(measured_trace(2, tmp_path)) == 400
