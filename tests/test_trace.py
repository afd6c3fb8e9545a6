"""Trace: construction, validation, summaries, files."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asyncsim import ClusterConfig, Deterministic, StalenessLaw, Trace, simulate
from asyncsim._rng import SeedRecord, record

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
