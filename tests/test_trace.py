"""Trace: construction, validation, summaries, files."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asyncsim import ClusterConfig, Deterministic, Gamma, StalenessLaw, Trace, simulate
from asyncsim._rng import SeedRecord, record
from asyncsim.engine import run
from asyncsim.optim import heavy_ball
from asyncsim.problems import make_problem

COLUMNS = ("staleness", "writer", "read_version", "apply_time", "n_aggregated")


def two_speed_trace():
    """Workers 0.5 and 1 time unit per update: staleness 0, 0, 2, 1, 0, 2, ..."""
    config = ClusterConfig(2, compute=Deterministic(1.0), time_multipliers=(0.5, 1.0))
    return simulate(config, 9, rng=0)


def test_from_staleness_fills_the_unknowns():
    trace = Trace.from_staleness(np.array([0, 1, 3, 0, 2]), n_aggregated=4)
    np.testing.assert_array_equal(trace.read_version, [0, 0, 0, 3, 2])
    np.testing.assert_array_equal(trace.writer, np.full(5, -1))
    np.testing.assert_array_equal(trace.n_aggregated, np.full(5, 4))
    assert np.isnan(trace.apply_time).all()
    assert np.isnan(trace.throughput)
    assert trace.seed is None and trace.config is None


@pytest.mark.parametrize(
    ("tau", "match"),
    [
        (np.array([0.0, 1.0]), r"staleness must be a 1-D integer sequence, got dtype float64"),
        (np.zeros((2, 2), dtype=int), r"staleness must be a 1-D integer sequence.*shape \(2, 2\)"),
    ],
)
def test_from_staleness_rejects_non_integer_sequences(tau, match):
    with pytest.raises(ValueError, match=match):
        Trace.from_staleness(tau)


def test_from_staleness_rejects_bad_aggregation():
    with pytest.raises(ValueError, match=r"n_aggregated must be in \[1, inf\), got 0"):
        Trace.from_staleness(np.array([0, 1]), n_aggregated=0)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"staleness": [0, -1, 0]}, r"Trace\.staleness must be >= 0, got min -1"),
        ({"writer": [0, 1]}, r"Trace\.writer must be 1-D with the length of staleness \(3\)"),
        ({"read_version": [0, 2, 0]}, r"read_version must lie in \[0, t\] for update t"),
        ({"n_aggregated": [1, 0, 1]}, r"Trace\.n_aggregated must be >= 1, got min 0"),
    ],
)
def test_inconsistent_columns_are_rejected(change, match):
    columns = {
        "staleness": [0, 1, 0],
        "writer": [0, 1, 0],
        "read_version": [0, 0, 2],
        "apply_time": [1.0, 1.5, 2.0],
        "n_aggregated": [1, 1, 1],
    }
    with pytest.raises(ValueError, match=match):
        Trace(**(columns | change))


def test_empty_trace_is_rejected():
    with pytest.raises(ValueError, match=r"non-empty 1-D array, got length 0"):
        Trace.from_staleness(np.array([], dtype=int))


def test_columns_are_read_only():
    trace = Trace.from_staleness(np.array([0, 1]))
    with pytest.raises(ValueError, match="read-only"):
        trace.staleness[0] = 5


def test_pmf_mean_and_variance_of_a_small_sequence():
    trace = Trace.from_staleness(np.array([0, 1, 1, 3]))
    np.testing.assert_allclose(trace.pmf(), [0.25, 0.5, 0.0, 0.25])
    np.testing.assert_allclose(trace.pmf(1), [0.25, 0.5])  # mass above max_lag is not folded
    np.testing.assert_allclose(trace.pmf(skip=2), [0.0, 0.5, 0.0, 0.5])
    assert trace.mean == 1.25
    assert trace.variance == pytest.approx(np.var([0, 1, 1, 3]))
    with pytest.raises(ValueError, match=r"skip must be in \[0, 3\], got 4"):
        trace.pmf(skip=4)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 30), min_size=1, max_size=50))
def test_pmf_sums_to_one_and_reproduces_the_mean(tau):
    pmf = Trace.from_staleness(np.array(tau)).pmf()
    assert pmf.sum() == pytest.approx(1.0)
    assert pmf @ np.arange(pmf.size) == pytest.approx(np.mean(tau))


def test_clock_summaries():
    trace = two_speed_trace()  # 9 applies, the last at time 3
    assert trace.throughput == pytest.approx(3.0)
    assert trace.time_per_update == pytest.approx(1 / 3)


def test_previous_read_is_the_same_writers_last_read():
    trace = two_speed_trace()
    # writer       0  0  1  0  0  1  0  0  1
    # read_version 0  1  0  2  4  3  5  7  6
    np.testing.assert_array_equal(trace.previous_read, [-1, 0, -1, 1, 2, 0, 4, 5, 3])
    unknown = Trace.from_staleness(np.array([0, 1, 0]))
    np.testing.assert_array_equal(unknown.previous_read, [-1, -1, -1])


def test_autocorrelation():
    alternating = Trace.from_staleness(np.array([0, 2] * 50))
    assert alternating.autocorrelation(1) == pytest.approx(-1.0 + 1 / 100)
    assert alternating.autocorrelation(2) == pytest.approx(1.0 - 2 / 100)
    assert np.isnan(Trace.from_staleness(np.array([3, 3, 3])).autocorrelation())
    with pytest.raises(ValueError, match=r"lag must be in \[1, 2\], got 3"):
        alternating.autocorrelation(3, skip=97)


def test_geometric_has_the_queueing_law_and_records_its_seed():
    m, n = 8, 200_000
    trace = Trace.geometric(m, n, rng=1)
    assert trace.seed == SeedRecord(1)
    np.testing.assert_array_equal(trace.staleness, Trace.geometric(m, n, rng=1).staleness)
    # 5 standard errors: sd(mean) = sqrt(M(M - 1)/n) = 0.017, sd of P(τ = 0) = sqrt(pq/n).
    assert trace.mean == pytest.approx(m - 1, abs=5 * np.sqrt(m * (m - 1) / n))
    assert trace.pmf(0)[0] == pytest.approx(1 / m, abs=5 * np.sqrt((1 / m) * (1 - 1 / m) / n))
    # i.i.d.: no lag-1 correlation beyond sampling noise (sd 1/sqrt(n)).
    assert abs(trace.autocorrelation()) < 5 / np.sqrt(n)


def test_geometric_validates():
    with pytest.raises(ValueError, match=r"n_workers must be in \[1, inf\), got 0"):
        Trace.geometric(0, 10)
    with pytest.raises(ValueError, match=r"n_updates must be in \[1, inf\), got 0"):
        Trace.geometric(2, 0)


def test_to_frame():
    frame = two_speed_trace().to_frame()
    assert list(frame.columns) == list(COLUMNS)
    assert frame.index.name == "update"
    assert frame["staleness"].tolist() == [0, 0, 2, 1, 0, 2, 1, 0, 2]
    assert frame["apply_time"].dtype == np.float64


@pytest.mark.parametrize("suffix", [".csv", ".npz"])
def test_save_and_load_round_trip(tmp_path, suffix):
    trace = simulate(ClusterConfig(3), 500, rng=4)  # random times: all 17 digits matter
    again = Trace.load(trace.save(tmp_path / f"trace{suffix}"))
    for name in COLUMNS:
        np.testing.assert_array_equal(getattr(again, name), getattr(trace, name))
        assert getattr(again, name).dtype == getattr(trace, name).dtype
    assert again.seed == (SeedRecord(4) if suffix == ".npz" else None)
    assert again.config is None


def test_saved_csv_has_a_header_and_one_row_per_update(tmp_path):
    path = Trace.from_staleness(np.array([0, 1, 3])).save(tmp_path / "t.csv")
    lines = path.read_text().splitlines()
    assert lines[0] == "update,staleness,writer,read_version,apply_time,n_aggregated"
    assert lines[1:] == ["0,0,-1,0,nan,1", "1,1,-1,0,nan,1", "2,3,-1,0,nan,1"]


def test_save_rejects_unknown_formats_and_load_missing_columns(tmp_path):
    trace = Trace.from_staleness(np.array([0, 1]))
    with pytest.raises(
        ValueError, match=r"path must end in .csv or .npz \(the format\), got '.*t.txt'"
    ):
        trace.save(tmp_path / "t.txt")
    (tmp_path / "bare.csv").write_text("update,staleness\n0,0\n1,1\n")
    with pytest.raises(ValueError, match=r"lacks the trace column\(s\) writer, read_version"):
        Trace.load(tmp_path / "bare.csv")


def test_seed_must_be_a_seed_record():
    columns = {name: getattr(Trace.from_staleness([0, 1]), name) for name in COLUMNS}
    assert Trace(**columns, seed=SeedRecord(3, (1,))).seed == SeedRecord(3, (1,))
    with pytest.raises(TypeError, match=r"Trace.seed must be a SeedRecord .* got 3 \(int\)"):
        Trace(**columns, seed=3)


@pytest.mark.parametrize(
    "rng",
    [np.random.SeedSequence([1, 2], spawn_key=(3,)), np.random.default_rng(5), None],
    ids=["seed-sequence", "generator", "none"],
)
def test_geometric_records_the_root_that_makes_it_again(tmp_path, rng):
    trace = Trace.geometric(4, 50, rng=rng)
    again = Trace.geometric(4, 50, rng=trace.seed.sequence())
    np.testing.assert_array_equal(again.staleness, trace.staleness)
    if isinstance(rng, np.random.SeedSequence):
        assert trace.seed == record(rng) == SeedRecord((1, 2), (3,))
    loaded = Trace.load(trace.save(tmp_path / "trace.npz"))
    assert loaded.seed == trace.seed


def test_load_rejects_a_seed_that_is_not_a_record(tmp_path):
    trace = Trace.from_staleness([0, 1])
    np.savez(tmp_path / "t.npz", seed=np.array("x1"), **{c: getattr(trace, c) for c in COLUMNS})
    with pytest.raises(ValueError, match=r"t.npz records a seed that is not a seed record"):
        Trace.load(tmp_path / "t.npz")
    np.savez(tmp_path / "none.npz", seed=np.array(""), **{c: getattr(trace, c) for c in COLUMNS})
    assert Trace.load(tmp_path / "none.npz").seed is None


def test_staleness_law_mean():
    assert StalenessLaw(np.array([0.5, 0.25, 0.25])).mean == 0.75
    assert StalenessLaw.geometric(8).mean == pytest.approx(7.0, rel=1e-9)


# --------------------------------------------------------------------- replayed delays (issue 17)
DELAYS = "synthetic_delays_m8_cv02.csv"


def test_a_delay_file_replays_with_writers_times_and_its_origin(data_file):
    trace = Trace.from_delays(data_file(DELAYS))
    assert len(trace) == 2000 and trace.origin == "replayed"
    assert trace.config is None and trace.seed is None
    np.testing.assert_array_equal(trace.staleness[:4], [0, 1, 2, 3])
    np.testing.assert_array_equal(trace.writer[:4], [1, 7, 2, 4])
    np.testing.assert_array_equal(trace.apply_time[:2], [0.671110, 0.838311])
    np.testing.assert_array_equal(np.unique(trace.writer), np.arange(8))
    np.testing.assert_array_equal(
        trace.read_version, np.maximum(np.arange(2000) - trace.staleness, 0)
    )


def test_the_delay_file_matches_the_cluster_model_with_the_same_compute_law(data_file):
    # The file comes from an independent event loop (tests/data/README.md): 8 workers, gamma compute
    # times of CV 0.2. asyncsim's model of the same cluster: mean 7 (7.001 in the file), sd 1.80 at
    # 2e5 updates (1.85 in the file, whose sd has a standard error of about 0.05 at 1900 updates).
    replayed = Trace.from_delays(data_file(DELAYS)).staleness[100:]
    simulated = simulate(ClusterConfig(8, compute=Gamma.from_cv(0.2)), 200_000, rng=0).staleness[
        100:
    ]
    assert replayed.mean() == pytest.approx(simulated.mean(), abs=0.05)
    assert replayed.std() == pytest.approx(simulated.std(), rel=0.1)
    assert np.mean(replayed == 0) < 0.002 and np.mean(simulated == 0) < 0.002


@pytest.mark.parametrize("with_writers", [True, False])
def test_the_engine_runs_on_replayed_delays(data_file, with_writers):
    trace = Trace.from_delays(data_file(DELAYS))
    if not with_writers:
        trace = Trace.from_delays(trace.staleness)
    history = run(make_problem("q10"), heavy_ball([0.02, 0.05], 0.3), trace, 2000, rng=0)
    assert np.isfinite(history.loss).all() and not history.diverged.any()
    assert (history.loss[-1] < 0.1 * history.loss[0]).all()
    assert ("total_momentum" in history.values) == with_writers
    assert history.config["staleness"]["traces"][0]["length"] == 2000


def test_a_delay_file_header_is_optional_and_names_columns_in_any_order(tmp_path):
    plain = tmp_path / "plain.csv"
    plain.write_text("0\n1\n\n# a comment\n3\n")
    np.testing.assert_array_equal(Trace.from_delays(plain).read_version, [0, 0, 0])
    two = tmp_path / "two.csv"
    two.write_text("0, 1\n2, 0\n")
    np.testing.assert_array_equal(Trace.from_delays(two).writer, [1, 0])
    headed = tmp_path / "headed.csv"
    headed.write_text("Time,loss,Staleness,Writer\n0.5,3.1,0,1\n0.75,2.9,1,0\n")
    trace = Trace.from_delays(headed)
    np.testing.assert_array_equal(trace.staleness, [0, 1])
    np.testing.assert_array_equal(trace.writer, [1, 0])
    np.testing.assert_array_equal(trace.apply_time, [0.5, 0.75])
    np.testing.assert_array_equal(Trace.from_delays(plain, workers=[2, 2, 0]).writer, [2, 2, 0])


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", r"d\.csv holds no delays \(it is empty\)"),
        ("\n# nothing\n", r"d\.csv holds no delays"),
        ("delay,worker\n", r"d\.csv has a header line and no delays"),
        ("0\n1\nseven\n", r"d\.csv, line 3: delay must be an integer >= 0, got 'seven'"),
        ("0\n7.5\n", r"d\.csv, line 2: delay must be an integer >= 0, got '7\.5'"),
        ("0\n-1\n", r"d\.csv, line 2: delay must be an integer >= 0, got '-1'"),
        ("0\nnan\n", r"d\.csv, line 2: delay must be an integer >= 0, got 'nan'"),
        ("0,1\n1\n", r"d\.csv, line 2: expected 2 comma-separated values \(as on line 1\), got 1"),
        ("0,1,2.0,4\n", r"d\.csv, line 1: a file without a header holds 1 to 3 columns .* got 4"),
        ("step,loss\n0,1.0\n", r"d\.csv, line 1: the header 'step,loss' names no delay column"),
        ("tau,delay\n0,0\n", r"d\.csv, line 1: the header names the delay column twice"),
        (
            "delay,worker\n0,1\n1,-2\n",
            r"d\.csv, line 3: worker id must be an integer >= 0, got '-2'",
        ),
        ("delay,worker\n0,1\n1,0.5\n", r"d\.csv, line 3: worker id must be an integer >= 0"),
        ("0,0,1.0\n1,1,inf\n", r"d\.csv, line 2: time must be a finite number, got 'inf'"),
        (
            "0,0,2.0\n\n1,1,1.0\n",
            r"d\.csv, line 3: times must not decrease, got '1\.0' after '2\.0'",
        ),
    ],
)
def test_each_bad_delay_file_gets_an_error_naming_file_line_and_value(tmp_path, text, match):
    path = tmp_path / "d.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=match):
        Trace.from_delays(path)


def test_delay_files_that_are_missing_binary_or_doubly_attributed_are_rejected(tmp_path):
    with pytest.raises(FileNotFoundError):
        Trace.from_delays(tmp_path / "missing.csv")
    binary = tmp_path / "b.csv"
    binary.write_bytes(b"\x93NUMPY\xff\xfe\x00")
    with pytest.raises(ValueError, match=r"b\.csv is not a text file of delays"):
        Trace.from_delays(binary)
    both = tmp_path / "w.csv"
    both.write_text("0,1\n1,0\n")
    with pytest.raises(ValueError, match=r"worker ids given twice: .*w\.csv has a worker column"):
        Trace.from_delays(both, workers=[0, 1])


@pytest.mark.parametrize(
    ("delays", "workers", "match"),
    [
        ([0, 1, -1], None, r"delays\[2\] must be an integer >= 0, got -1"),
        ([0.0, 1.5], None, r"delays\[1\] must be an integer >= 0, got 1\.5"),
        (
            [[0, 1]],
            None,
            r"delays must be a non-empty 1-D sequence of integers >= 0.*shape \(1, 2\)",
        ),
        ([], None, r"delays must be a non-empty 1-D sequence"),
        ([0, 1], [0, -3], r"workers\[1\] must be an integer >= 0, got -3"),
        ([0, 1], [0], r"workers must hold one id per delay \(2\), got 1"),
    ],
)
def test_bad_delay_arrays_are_rejected(delays, workers, match):
    with pytest.raises(ValueError, match=match):
        Trace.from_delays(delays, workers=workers)


def test_origin_is_kept_by_npz_and_checked(tmp_path):
    trace = Trace.from_delays([0, 1, 1])
    assert Trace.load(trace.save(tmp_path / "t.npz")).origin == "replayed"
    assert Trace.load(trace.save(tmp_path / "t.csv")).origin is None
    assert simulate(ClusterConfig(2), 5, rng=0).origin == "simulated"
    assert Trace.geometric(2, 5, rng=0).origin == "iid"
    assert Trace.from_staleness([0, 1]).origin is None
    columns = {name: getattr(trace, name) for name in COLUMNS}
    with pytest.raises(
        ValueError, match=r"Trace\.origin must be None or one of 'simulated'.*'guessed'"
    ):
        Trace(**columns, origin="guessed")
