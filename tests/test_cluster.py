"""The cluster model: exact traces, the staleness law, the fast path against SimPy, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from asyncsim import (
    ClusterConfig,
    Deterministic,
    Empirical,
    Exponential,
    Gamma,
    LogNormal,
    Uniform,
    cluster,
    simulate,
)
from asyncsim._rng import SeedRecord
from asyncsim.cluster import MODES

COLUMNS = ("staleness", "writer", "read_version", "apply_time", "n_aggregated")
METHODS = ("simpy", "fast")


def assert_same_trace(a, b):
    for name in COLUMNS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def geometric_pmf(writers, lags):
    """(1/M)(1 - 1/M)^l at l = 0..lags-1."""
    return (1.0 / writers) * (1.0 - 1.0 / writers) ** np.arange(lags)


def chi_square_geometric(staleness, writers):
    """p-value of the staleness counts against the geometric law, bins merged to expect >= 5."""
    n = staleness.size
    q = geometric_pmf(writers, int(staleness.max()) + 2)
    lags = int(np.sum(n * q >= 5))  # q decreases: the first `lags` bins each expect >= 5
    if n * (1.0 - 1.0 / writers) ** lags < 5:  # a thin tail joins the last bin
        lags -= 1
    observed = np.append(np.bincount(staleness, minlength=lags)[:lags], np.sum(staleness >= lags))
    expected = n * np.append(q[:lags], (1.0 - 1.0 / writers) ** lags)
    return stats.chisquare(observed, expected).pvalue


# ------------------------------------------------------------------ exact deterministic traces
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("m", [1, 2, 3, 5])
def test_equal_deterministic_workers_give_m_minus_1_after_warm_up(m, method):
    trace = simulate(ClusterConfig(m, compute=Deterministic(1.0)), 4 * m, rng=0, method=method)
    # Round 1: everyone read version 0; later each reads right after its own previous write.
    np.testing.assert_array_equal(trace.staleness, np.r_[np.arange(m), np.full(3 * m, m - 1)])
    np.testing.assert_array_equal(trace.writer, np.tile(np.arange(m), 4))
    np.testing.assert_array_equal(trace.apply_time, np.repeat([1.0, 2.0, 3.0, 4.0], m))
    np.testing.assert_array_equal(trace.n_aggregated, np.ones(4 * m))


@pytest.mark.parametrize("method", METHODS)
def test_two_speeds_give_the_written_out_trace(method):
    config = ClusterConfig(2, compute=Deterministic(1.0), time_multipliers=(0.5, 1.0))
    trace = simulate(config, 12, rng=0, method=method)
    # Worker 0 writes at 0.5, 1, 1.5, ...; worker 1 at 1, 2, ...; at t = 1, 2, ... 0 goes first.
    np.testing.assert_array_equal(trace.staleness, [0, 0, 2, 1, 0, 2, 1, 0, 2, 1, 0, 2])
    np.testing.assert_array_equal(trace.writer, [0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 1])
    np.testing.assert_array_equal(trace.read_version, [0, 1, 0, 2, 4, 3, 5, 7, 6, 8, 10, 9])
    np.testing.assert_array_equal(
        trace.apply_time, [0.5, 1.0, 1.0, 1.5, 2.0, 2.0, 2.5, 3.0, 3.0, 3.5, 4.0, 4.0]
    )


@pytest.mark.parametrize("method", METHODS)
def test_sync_mode_aggregates_all_workers_at_the_slowest_time(method):
    config = ClusterConfig(
        4, compute=Deterministic(1.0), time_multipliers=(1, 3, 1, 2), mode="sync"
    )
    trace = simulate(config, 5, rng=0, method=method)
    np.testing.assert_array_equal(trace.staleness, np.zeros(5))
    np.testing.assert_array_equal(trace.writer, np.zeros(5))
    np.testing.assert_array_equal(trace.read_version, np.arange(5))
    np.testing.assert_array_equal(trace.n_aggregated, np.full(5, 4))
    np.testing.assert_array_equal(trace.apply_time, [3.0, 6.0, 9.0, 12.0, 15.0])


@pytest.mark.parametrize("method", METHODS)
def test_equal_groups_give_g_minus_1_after_warm_up(method):
    config = ClusterConfig(6, compute=Deterministic(1.0), mode="groups", n_groups=3)
    trace = simulate(config, 9, rng=0, method=method)
    np.testing.assert_array_equal(trace.staleness, [0, 1, 2, 2, 2, 2, 2, 2, 2])
    np.testing.assert_array_equal(trace.writer, np.tile([0, 1, 2], 3))
    np.testing.assert_array_equal(trace.n_aggregated, np.full(9, 2))


@pytest.mark.parametrize("method", METHODS)
def test_a_group_runs_at_the_pace_of_its_slowest_member(method):
    # Group 0 = workers (0, 1) takes 1, group 1 = workers (2, 3) takes max(1, 2) = 2: the
    # two-speed trace again, with groups for workers.
    config = ClusterConfig(
        4, compute=Deterministic(1.0), time_multipliers=(1, 1, 1, 2), mode="groups", n_groups=2
    )
    trace = simulate(config, 9, rng=0, method=method)
    np.testing.assert_array_equal(trace.staleness, [0, 0, 2, 1, 0, 2, 1, 0, 2])
    np.testing.assert_array_equal(trace.writer, [0, 0, 1, 0, 0, 1, 0, 0, 1])
    np.testing.assert_array_equal(trace.apply_time, [1, 2, 2, 3, 4, 4, 5, 6, 6])


def test_a_busy_server_delays_pulls_behind_queued_applies():
    config = ClusterConfig(2, compute=Deterministic(1.0), server_time=Deterministic(0.5))
    trace = simulate(config, 6, rng=0)
    # t = 1: both finish; 0's apply is served 1 -> 1.5, 1's apply 1.5 -> 2. Worker 0's pull
    # queues behind 1's apply, so both read version 2 at t = 2, and so on every 2 time units.
    np.testing.assert_array_equal(trace.apply_time, [1.5, 2.0, 3.5, 4.0, 5.5, 6.0])
    np.testing.assert_array_equal(trace.read_version, [0, 0, 2, 2, 4, 4])
    np.testing.assert_array_equal(trace.staleness, [0, 1, 0, 1, 0, 1])


def test_pull_latency_comes_before_the_read():
    config = ClusterConfig(2, compute=Deterministic(1.0), pull_latency=Deterministic(0.5))
    trace = simulate(config, 6, rng=0)
    np.testing.assert_array_equal(trace.apply_time, [1.5, 1.5, 3.0, 3.0, 4.5, 4.5])
    np.testing.assert_array_equal(trace.read_version, [0, 0, 2, 2, 4, 4])


# --------------------------------------------------------------- the exponential staleness law
@pytest.mark.parametrize("m", [1, 2, 4, 8, 16])
def test_exponential_workers_give_geometric_staleness(m):
    n, warm_up = 400_000, 20 * m
    tau = simulate(ClusterConfig(m), n, rng=2024 + m).staleness[warm_up:]
    if m == 1:
        assert not tau.any()
        return
    assert chi_square_geometric(tau, m) > 1e-3
    # Tolerances are 5 standard errors of i.i.d. geometric samples of this size: sd(mean) =
    # sqrt(M(M-1)/n); sd(var)/var = sqrt((kurtosis - 1)/n) with kurtosis 9 + p^2/(1-p), p = 1/M.
    se_mean = np.sqrt(m * (m - 1) / tau.size)
    assert abs(tau.mean() - (m - 1)) < 5 * se_mean
    p = 1.0 / m
    rel_se_var = np.sqrt((8 + p**2 / (1 - p)) / tau.size)
    assert abs(tau.var() / (m * (m - 1)) - 1) < 5 * rel_se_var


def test_consecutive_staleness_values_are_anticorrelated_by_about_minus_1_over_2m():
    # theory/README.md §1: lag-1 correlation about -1/(2M) in the event-driven model (here -0.0625,
    # measured -0.062 at 10^6 updates); i.i.d. values would give 0 ± 0.002 (1/sqrt(n)).
    trace = simulate(ClusterConfig(8), 250_000, rng=5)
    assert trace.autocorrelation(1, skip=100) == pytest.approx(-1 / 16, abs=0.01)


def test_throughput_matches_the_hardware_model():
    # Asynchronous: M writers of rate 1 (time per update 1/M); synchronous: E[max of M Exp(1)]
    # = H_M (H_16 = 3.3807, theory/README.md §4). Standard errors at these sizes: below 0.3 %.
    async_ = simulate(ClusterConfig(16), 100_000, rng=1)
    assert async_.time_per_update == pytest.approx(1 / 16, rel=0.015)
    sync = simulate(ClusterConfig(16, mode="sync"), 20_000, rng=1)
    assert sync.time_per_update == pytest.approx(np.sum(1 / np.arange(1, 17)), rel=0.015)


# ------------------------------------------------------------------ non-exponential compute
def test_uniform_compute_keeps_the_mean_but_not_the_geometric_law():
    tau = simulate(ClusterConfig(4, compute=Uniform(0.5, 1.5)), 400_000, rng=11).staleness[100:]
    assert tau.mean() == pytest.approx(3.0, abs=0.01)
    # Measured P(τ = 0) = 0.0179 ± 0.0002 over three seeds at 10^6 updates, against 0.25 for the
    # geometric law: a worker rarely finishes twice in a row when times vary only ±50 %.
    # Binomial sd at this size: 0.0002; tolerance about 7 sd.
    assert np.mean(tau == 0) == pytest.approx(0.018, abs=0.0015)
    assert chi_square_geometric(tau, 4) < 1e-100


@pytest.mark.parametrize(
    ("config", "writers"),
    [
        (ClusterConfig(4, compute=LogNormal(0.5)), 4),
        (ClusterConfig(16, mode="groups", n_groups=4), 4),
        (ClusterConfig(8, compute=Gamma(4.0), mode="groups", n_groups=2), 2),
    ],
    ids=["lognormal", "16-in-4-groups", "gamma-8-in-2-groups"],
)
def test_mean_staleness_is_writers_minus_1_whatever_the_law(config, writers):
    tau = simulate(config, 200_000, rng=3).staleness[100:]
    # Σ τ = Σ_j (p_j + 1 - n_j) exactly (test below): the mean misses g - 1 by O(g^2/n) only.
    assert tau.mean() == pytest.approx(writers - 1, abs=0.01)
    assert chi_square_geometric(tau, writers) < 1e-20


def test_groups_time_per_update_is_the_expected_max_over_members_per_group():
    # 4 groups of 4 Exp(1) workers: each group writes every H_4 = 25/12 on average.
    trace = simulate(ClusterConfig(16, mode="groups", n_groups=4), 100_000, rng=4)
    assert trace.time_per_update == pytest.approx(25 / 12 / 4, rel=0.015)


# -------------------------------------------------------------- the fast path equals SimPy
laws = st.one_of(
    st.builds(Exponential, st.sampled_from([0.5, 1.0, 3.0])),
    st.builds(Deterministic, st.sampled_from([0.5, 1.0, 3.0])),
    st.builds(Uniform, st.sampled_from([0.0, 0.5]), st.sampled_from([1.0, 1.5])),
    st.builds(Gamma, st.sampled_from([0.3, 1.0, 4.0]), st.sampled_from([1.0, 2.0])),
    st.builds(LogNormal, st.sampled_from([0.0, 0.5, 2.0])),
    st.builds(
        Empirical,
        st.lists(st.sampled_from([0.0, 0.5, 1.0, 2.0]), min_size=1, max_size=4)
        .filter(any)
        .map(tuple),
    ),
)


@st.composite
def configs(draw, *, latency=False):
    m = draw(st.integers(1, 8))
    mode = draw(st.sampled_from(MODES))
    groups = [d for d in range(1, m + 1) if m % d == 0]
    multipliers = st.lists(st.sampled_from([0.5, 1.0, 2.0, 4.0]), min_size=m, max_size=m)
    return ClusterConfig(
        m,
        compute=draw(laws),
        time_multipliers=draw(st.none() | multipliers),
        push_latency=draw(st.none() | laws) if latency else None,
        mode=mode,
        n_groups=draw(st.sampled_from(groups)) if mode == "groups" else None,
    )


@pytest.mark.parametrize("block", [5, cluster.BLOCK])
@settings(max_examples=200, deadline=None)
@given(config=configs(), n=st.integers(1, 200), seed=st.integers(0, 2**32))
def test_fast_path_gives_the_simpy_trace_exactly(block, config, n, seed):
    # Small blocks make the fast path draw more, block after block, as at 10^6 updates.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cluster, "BLOCK", block)
        fast = simulate(config, n, rng=seed, method="fast")
        assert_same_trace(fast, simulate(config, n, rng=seed, method="simpy"))


def test_fast_path_draws_more_when_a_group_runs_out(monkeypatch):
    # Groups (1, 4) and (4, 4) are allotted equal shares (by their slowest member), but the first
    # writes every E max(X, 4Y) = 4.2 and the second every E max(4X, 4Y) = 6 (X, Y ~ Exp(1)):
    # group 0 makes 59 % of the writes, about 1765 of 3000, against 1733 allotted (the share
    # plus 6 sd), rounded up to 217 blocks of 8 = 1736, so it must draw more.
    monkeypatch.setattr(cluster, "BLOCK", 8)
    config = ClusterConfig(4, time_multipliers=(1, 4, 4, 4), mode="groups", n_groups=2)
    fast = simulate(config, 3000, rng=9, method="fast")
    assert np.sum(fast.writer == 0) > 1736
    assert_same_trace(fast, simulate(config, 3000, rng=9, method="simpy"))


@settings(max_examples=60, deadline=None)
@given(config=configs(latency=True), n=st.integers(1, 200), seed=st.integers(0, 2**32))
def test_a_group_reads_right_after_its_own_write_without_pull_latency(config, n, seed):
    trace = simulate(config, n, rng=seed)
    total = 0
    for j in np.unique(trace.writer):
        writes = np.flatnonzero(trace.writer == j)
        np.testing.assert_array_equal(trace.read_version[writes], np.r_[0, writes[:-1] + 1])
        total += writes[-1] + 1 - writes.size
    # Hence Σ τ = Σ_j (p_j + 1 - n_j), p_j the last write of group j: the mean is g - 1 up to
    # the writes after each group's last, whatever the time laws.
    assert trace.staleness.sum() == total


# ---------------------------------------------------------------------- latency and server
def test_pull_latency_lowers_mean_staleness_to_m_minus_1_over_1_plus_latency():
    # During a pull (latency L) the other M - 1 workers, each writing once per 1 + L on average
    # and independent of this one, write (M - 1) L/(1 + L) times that this read already sees.
    # Measured 3.50 ± 0.01 over four seeds: tolerance 2 %.
    trace = simulate(ClusterConfig(8, pull_latency=Deterministic(1.0)), 40_000, rng=0)
    assert trace.mean == pytest.approx(7 / 2, rel=0.02)


def test_push_latency_alone_keeps_mean_m_minus_1():
    trace = simulate(ClusterConfig(8, push_latency=Exponential(1.0)), 40_000, rng=0)
    assert trace.mean == pytest.approx(7.0, abs=0.01)


def test_server_time_serializes_applies_and_lowers_mean_staleness():
    trace = simulate(ClusterConfig(8, server_time=Deterministic(0.1)), 40_000, rng=0)
    # One apply at a time: consecutive applies at least 0.1 apart, throughput at most 10.
    assert np.diff(trace.apply_time).min() >= 0.1 - 1e-9
    assert trace.throughput <= 10.0
    # Pulls queue behind applies, so reads come later and see more: measured 6.21 against 7.
    assert trace.mean < 0.95 * 7


# --------------------------------------------------------------------------- reproducibility
def test_same_seed_same_trace_and_different_seeds_differ():
    config = ClusterConfig(4, compute=Gamma(2.0), pull_latency=Exponential(0.1))
    first, again = simulate(config, 500, rng=3), simulate(config, 500, rng=3)
    assert_same_trace(first, again)
    assert first.seed == SeedRecord(3)
    assert first.config is config
    other = simulate(config, 500, rng=4)
    assert not np.array_equal(first.apply_time, other.apply_time)


def test_a_generator_is_a_source_of_recorded_roots():
    """Each call draws a new root from the generator, and the recorded root makes the trace again."""
    config = ClusterConfig(3)
    rng = np.random.default_rng(7)
    first, second = simulate(config, 300, rng=rng), simulate(config, 300, rng=rng)
    assert not np.array_equal(first.apply_time, second.apply_time)
    assert first.seed != second.seed
    assert_same_trace(first, simulate(config, 300, rng=first.seed.sequence()))
    assert_same_trace(second, simulate(config, 300, rng=second.seed.sequence()))


def test_no_seed_records_the_fresh_entropy_which_reproduces_the_run():
    config = ClusterConfig(3, compute=Uniform())
    trace = simulate(config, 300, rng=None)
    assert isinstance(trace.seed.entropy, int) and trace.seed.spawn_key == ()
    assert_same_trace(trace, simulate(config, 300, rng=trace.seed.entropy))


def test_a_seed_sequence_is_the_root_itself():
    seq = np.random.SeedSequence(11, spawn_key=(2, 5))
    trace = simulate(ClusterConfig(3), 200, rng=seq)
    assert trace.seed == SeedRecord(11, (2, 5))
    assert_same_trace(
        trace, simulate(ClusterConfig(3), 200, rng=SeedRecord.parse("11/2/5").sequence())
    )


def test_streams_are_keyed_by_worker_not_by_the_number_of_workers():
    """Adding a worker changes no other worker's stream: with deterministic ties broken by id and the
    slowest worker far slower, workers 0 and 1 write the same times with or without a third one."""
    slow = (1.0, 1.0, 1e6)
    two = simulate(ClusterConfig(2, compute=Exponential()), 200, rng=5)
    three = simulate(ClusterConfig(3, compute=Exponential(), time_multipliers=slow), 200, rng=5)
    np.testing.assert_array_equal(two.apply_time, three.apply_time)
    np.testing.assert_array_equal(two.writer, three.writer)


def test_workers_have_independent_streams():
    # Worker 1's compute stream does not depend on how many workers there are.
    two = simulate(ClusterConfig(2, compute=Uniform()), 400, rng=1)
    three = simulate(ClusterConfig(3, compute=Uniform()), 600, rng=1)
    times_two = two.apply_time[two.writer == 1]
    times_three = three.apply_time[three.writer == 1]
    size = min(times_two.size, times_three.size)
    np.testing.assert_array_equal(times_two[:size], times_three[:size])


def test_the_library_prints_nothing(capsys):
    simulate(ClusterConfig(2), 10, rng=0)
    assert capsys.readouterr() == ("", "")


# --------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n_workers": 0}, ValueError, r"n_workers must be in \[1, inf\), got 0"),
        ({"n_workers": 2.5}, TypeError, r"n_workers must be an integer, got 2\.5"),
        (
            {"n_workers": 2, "compute": Deterministic(0.0)},
            ValueError,
            r"compute must have a mean time in \(0, inf\), got Deterministic\(value=0\.0\)",
        ),
        ({"n_workers": 2, "compute": 1.0}, TypeError, r"compute must be a Distribution.*got 1\.0"),
        (
            {"n_workers": 2, "server_time": "fast"},
            TypeError,
            r"server_time must be a Distribution",
        ),
        (
            {"n_workers": 2, "time_multipliers": (1.0, -1.0)},
            ValueError,
            r"time_multipliers must be finite and in \(0, inf\) elementwise, got -1\.0",
        ),
        (
            {"n_workers": 2, "time_multipliers": (1.0, float("nan"))},
            ValueError,
            r"time_multipliers must be finite and in \(0, inf\) elementwise, got nan",
        ),
        (
            {"n_workers": 3, "time_multipliers": (1.0, 2.0)},
            ValueError,
            r"time_multipliers must hold n_workers = 3 values .*got shape \(2,\)",
        ),
        (
            {"n_workers": 2, "mode": "hogwild"},
            ValueError,
            r"mode must be one of 'async', 'sync', 'groups'; got 'hogwild'",
        ),
        (
            {"n_workers": 6, "mode": "groups", "n_groups": 4},
            ValueError,
            r"n_groups must divide n_workers = 6, i\.e\. be one of \[1, 2, 3, 6\], got 4",
        ),
        (
            {"n_workers": 6, "mode": "groups", "n_groups": 0},
            ValueError,
            r"n_groups must be in \[1, 6\], got 0",
        ),
        ({"n_workers": 6, "mode": "groups"}, ValueError, r"n_groups is required in mode 'groups'"),
        (
            {"n_workers": 4, "n_groups": 2},
            ValueError,
            r"n_groups must be 4 \(or None\) in mode 'async' with n_workers = 4, got 2",
        ),
        (
            {"n_workers": 4, "mode": "sync", "n_groups": 4},
            ValueError,
            r"n_groups must be 1 \(or None\) in mode 'sync'",
        ),
    ],
)
def test_bad_config_is_rejected_naming_parameter_value_and_range(kwargs, error, match):
    with pytest.raises(error, match=match):
        ClusterConfig(**kwargs)


@pytest.mark.parametrize(
    ("law", "match"),
    [
        (
            lambda: Deterministic(-1.0),
            r"Deterministic\.value must be a finite number in \[0, inf\)",
        ),
        (lambda: Exponential(float("nan")), r"Exponential\.mean_time must be a finite number"),
        (lambda: Uniform(1.0, 0.5), r"Uniform\.high must be a finite number in \[1, inf\)"),
    ],
)
def test_negative_or_nan_times_are_rejected(law, match):
    with pytest.raises(ValueError, match=match):
        ClusterConfig(2, pull_latency=law())


def test_mode_values_are_resolved_and_configs_compare_equal():
    assert ClusterConfig(4).n_groups == 4
    assert ClusterConfig(4, mode="sync").group_size == 4
    assert ClusterConfig(4, n_groups=4) == ClusterConfig(4)
    assert ClusterConfig(2, time_multipliers=np.array([1, 2])).time_multipliers == (1.0, 2.0)


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        ((ClusterConfig(2), 0), {}, ValueError, r"n_updates must be in \[1, inf\), got 0"),
        ((ClusterConfig(2), 5), {"method": "gpu"}, ValueError, r"method must be one of 'auto'"),
        (("async", 5), {}, TypeError, r"config must be a ClusterConfig, got str"),
        (
            (ClusterConfig(2, pull_latency=Exponential(1.0)), 5),
            {"method": "fast"},
            ValueError,
            r"method='fast' cannot serve this config: it has pull_latency",
        ),
        (
            (ClusterConfig(2, push_latency=Exponential(1.0), server_time=Deterministic(1.0)), 5),
            {"method": "fast"},
            ValueError,
            r"it has push_latency and server_time, which only the SimPy model simulates",
        ),
    ],
)
def test_bad_simulate_arguments_are_rejected(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        simulate(*args, rng=0, **kwargs)


@pytest.mark.parametrize("method", ["simpy", "fast"])
def test_the_memory_estimate_bounds_what_a_run_takes(method):
    """The per-update estimate that refuses oversized runs is above the measured peak of each path."""
    import tracemalloc

    from asyncsim.cluster import BYTES_PER_UPDATE

    n = 100_000
    tracemalloc.start()
    try:
        simulate(ClusterConfig(16), n, rng=0, method=method)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak / n < BYTES_PER_UPDATE


# ------------------------------------------------------- compute variability (issue 17, must-show 2)
@pytest.mark.parametrize("m", [4, 8])
def test_gamma_compute_with_cv_1_gives_geometric_staleness(m):
    # Shape 1: NumPy's gamma sampler at shape 1 is its exponential sampler, so the trace is the
    # exponential one draw for draw, and its law the geometric one (the chi-square test above).
    config = ClusterConfig(m, compute=Gamma.from_cv(1.0))
    trace = simulate(config, 200_000, rng=70 + m)
    assert_same_trace(trace, simulate(ClusterConfig(m), 200_000, rng=70 + m))
    assert chi_square_geometric(trace.staleness[20 * m :], m) > 1e-3


@pytest.mark.parametrize("m", [8, 16])
def test_gamma_compute_with_cv_0_1_keeps_the_mean_and_narrows_the_law(m):
    # Measured at 2e5 updates: sd 1.10 (M = 8) and 1.95 (M = 16), against the geometric
    # sqrt(M(M - 1)) = 7.48 and 15.49, a quarter of which is 1.87 and 3.87; mean M - 1 within 1e-4
    # (Σ τ telescopes, test_a_group_reads_right_after_its_own_write_without_pull_latency).
    tau = simulate(ClusterConfig(m, compute=Gamma.from_cv(0.1)), 200_000, rng=m).staleness[100:]
    assert tau.mean() == pytest.approx(m - 1, abs=0.01)
    assert tau.std() < 0.25 * np.sqrt(m * (m - 1))
    assert np.mean(tau == 0) < 1e-3  # the geometric law puts 1/M there
