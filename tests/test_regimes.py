"""Staleness regimes of the cluster model: compute variability by its coefficient of
variation, heavy-tailed worker speeds, dropouts, buffered aggregation; exact traces, the fast path
against SimPy, laws, bad input, and the SimPy path's progress bar."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asyncsim import ClusterConfig, Deterministic, Empirical, Exponential, Gamma, LogNormal, cluster
from asyncsim import simulate as simulate_
from asyncsim.cluster import MODES, multipliers
from asyncsim.distributions import Pareto

COLUMNS = ("staleness", "writer", "read_version", "apply_time", "n_aggregated")
METHODS = ("simpy", "fast")


def simulate(config, n, rng=0, method="auto", **kwargs):
    return simulate_(config, n, rng=rng, method=method, **kwargs)


def assert_trace(trace, **columns):
    for name, expected in columns.items():
        np.testing.assert_array_equal(getattr(trace, name), expected, err_msg=name)


def assert_same_trace(a, b):
    assert_trace(a, **{name: getattr(b, name) for name in COLUMNS})


# ------------------------------------------------------------------ exact deterministic traces
@pytest.mark.parametrize("method", METHODS)
def test_gamma_by_cv_is_exponential_at_1_and_deterministic_at_0(method):
    exponential = simulate(ClusterConfig(3), 300, rng=4, method=method)
    assert_same_trace(
        simulate(ClusterConfig(3, compute=Gamma.from_cv(1.0)), 300, 4, method), exponential
    )
    trace = simulate(ClusterConfig(3, compute=Gamma.from_cv(0.0, 2.0)), 9, method=method)
    assert_trace(
        trace,
        staleness=[0, 1, 2, 2, 2, 2, 2, 2, 2],
        writer=[0, 1, 2] * 3,
        apply_time=np.repeat([2.0, 4.0, 6.0], 3),
    )


@pytest.mark.parametrize("method", METHODS)
def test_a_slowdown_multiplies_the_time_multipliers(method):
    # Each worker draws 2 from the slowdown law: the two-speed trace (test_cluster) at half pace.
    config = ClusterConfig(
        2, compute=Deterministic(1.0), time_multipliers=(0.5, 1.0), slowdown=Deterministic(2.0)
    )
    assert_trace(
        simulate(config, 8, method=method),
        staleness=[0, 0, 2, 1, 0, 2, 1, 0],
        writer=[0, 0, 1, 0, 0, 1, 0, 0],
        apply_time=[1.0, 2.0, 2.0, 3.0, 4.0, 4.0, 5.0, 6.0],
    )
    np.testing.assert_array_equal(multipliers(config, rng=0), [1.0, 2.0])


@pytest.mark.parametrize("method", METHODS)
def test_dropouts_delay_the_next_pull_and_ties_go_to_the_lower_id(method):
    # Worker 0 computes in 1, worker 1 in 2; each drops out after every arrival for 0.5 and pulls
    # on return. Worker 0 writes at 1, 2.5, 4, 5.5, 7 (pulls at 0, 1.5, 3, 4.5, 6); worker 1 at
    # 2, 4.5, 7 (pulls at 0, 2.5, 5). At 2.5 worker 0's write comes before worker 1's pull, so
    # worker 1 reads 3; at 4.5 worker 0's pull comes before worker 1's write (reads 4); at 7 worker
    # 0 writes first (update 6, read at 6 with 6 writes in), then worker 1 (update 7, read 5).
    config = ClusterConfig(
        2,
        compute=Deterministic(1.0),
        time_multipliers=(1.0, 2.0),
        dropout=1.0,
        downtime=Deterministic(0.5),
    )
    assert_trace(
        simulate(config, 8, method=method),
        staleness=[0, 1, 1, 0, 1, 1, 0, 2],
        writer=[0, 1, 0, 0, 1, 0, 0, 1],
        read_version=[0, 0, 1, 3, 3, 4, 6, 5],
        apply_time=[1.0, 2.0, 2.5, 4.0, 4.5, 5.5, 7.0, 7.0],
    )


@pytest.mark.parametrize("method", METHODS)
def test_dropping_out_is_no_dropout_at_probability_0_or_downtime_0(method):
    plain = simulate(ClusterConfig(3, compute=Gamma(2.0)), 400, rng=8, method=method)
    for dropout, downtime in [(0.0, Exponential(5.0)), (0.7, Deterministic(0.0))]:
        config = ClusterConfig(3, compute=Gamma(2.0), dropout=dropout, downtime=downtime)
        assert_same_trace(simulate(config, 400, rng=8, method=method), plain)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    ("workers", "buffer", "staleness", "read_version", "writer"),
    [
        # Three arrive at 1 (ids 0, 1, 2); the third completes the buffer: 0 and 1 read version 0
        # again, 2 reads 1; mean read (0 + 0 + 1)/3 rounds to 0 at update 1: staleness 1, and on.
        (3, 3, [0, 1, 1, 1, 1], [0, 0, 1, 2, 3], [2, 2, 2, 2, 2]),
        # Pairs: reads (0, 0), (0, 0) at time 1, then (0, 1) -> 0.5 -> 1 and (1, 2) -> 1.5 -> 2, ...
        (4, 2, [0, 1, 1, 1, 1, 1], [0, 0, 1, 2, 3, 4], [1, 3, 1, 3, 1, 3]),
        (2, 1, [0, 1, 1, 1], [0, 0, 1, 2], [0, 1, 0, 1]),  # no buffering: M - 1
    ],
)
def test_buffered_aggregation_trace(method, workers, buffer, staleness, read_version, writer):
    config = ClusterConfig(workers, compute=Deterministic(1.0), buffer=buffer)
    n = len(staleness)
    assert_trace(
        simulate(config, n, method=method),
        staleness=staleness,
        read_version=read_version,
        writer=writer,
        n_aggregated=np.full(n, buffer),
        apply_time=np.repeat(np.arange(1.0, n + 1), workers // buffer)[:n],
    )


def test_buffered_groups_aggregate_buffer_times_group_size():
    config = ClusterConfig(8, compute=Deterministic(1.0), mode="groups", n_groups=4, buffer=2)
    trace = simulate(config, 6)
    assert_trace(trace, n_aggregated=np.full(6, 4), staleness=[0, 1, 1, 1, 1, 1])


def test_a_buffered_server_holds_its_service_for_the_completing_arrival_only():
    # Two workers, buffer 2, server time 0.5: both arrive at 1; worker 0 buffers at once, worker
    # 1 completes the buffer and holds the server to 1.5. Worker 0 pulled at 1 (version 0), worker 1
    # at 1.5 (version 1); they arrive at 2 and 2.5: mean read 0.5 rounds to 1, at 3.
    config = ClusterConfig(2, compute=Deterministic(1.0), buffer=2, server_time=Deterministic(0.5))
    assert_trace(
        simulate(config, 3),
        apply_time=[1.5, 3.0, 4.5],
        read_version=[0, 1, 2],
        staleness=[0, 0, 0],
    )


# -------------------------------------------------------------- the fast path equals SimPy
laws = st.one_of(
    st.builds(Exponential, st.sampled_from([0.5, 1.0])),
    st.builds(Deterministic, st.sampled_from([0.5, 1.0])),
    st.builds(Gamma.from_cv, st.sampled_from([0.0, 0.1, 1.0, 3.0])),
    st.builds(Pareto, st.sampled_from([1.2, 3.0])),
    st.builds(Empirical, st.sampled_from([(0.0, 1.0), (0.5, 2.0), (1.0,)])),
)


@st.composite
def regimes(draw):
    m = draw(st.integers(1, 6))
    mode = draw(st.sampled_from(MODES))
    groups = [d for d in range(1, m + 1) if m % d == 0]
    g = draw(st.sampled_from(groups)) if mode == "groups" else (m if mode == "async" else 1)
    return ClusterConfig(
        m,
        compute=draw(laws),
        time_multipliers=draw(
            st.none() | st.lists(st.sampled_from([0.5, 1.0, 4.0]), min_size=m, max_size=m)
        ),
        mode=mode,
        n_groups=g if mode == "groups" else None,
        slowdown=draw(
            st.none() | st.sampled_from([Pareto(1.5), LogNormal(1.0), Empirical((0.5, 2.0))])
        ),
        dropout=draw(st.sampled_from([0.0, 0.2, 1.0])),
        downtime=draw(laws),
        buffer=draw(st.integers(1, g)),
    )


@pytest.mark.parametrize("block", [5, cluster.BLOCK])
@settings(max_examples=150, deadline=None)
@given(config=regimes(), n=st.integers(1, 150), seed=st.integers(0, 2**32))
def test_fast_path_gives_the_simpy_trace_in_every_regime(block, config, n, seed):
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cluster, "BLOCK", block)
        patch.setattr(cluster, "FIRST_BLOCK", min(block, 3))
        fast = simulate(config, n, seed, "fast")
        assert_same_trace(fast, simulate(config, n, seed, "simpy"))


def test_fast_path_draws_more_for_a_group_slowed_by_dropouts(monkeypatch):
    # The first draws allot arrivals by mean cycle time (1 + 0.5 * 1 = 1.5 for both here), but a
    # heavy downtime tail makes the shares uneven; whatever the allotment, the trace is SimPy's.
    monkeypatch.setattr(cluster, "BLOCK", 8)
    config = ClusterConfig(4, dropout=0.5, downtime=Pareto(1.1), buffer=3)
    assert_same_trace(simulate(config, 2000, 9, "fast"), simulate(config, 2000, 9, "simpy"))


# ------------------------------------------------------------------------------------ laws
def test_slowdowns_are_drawn_per_worker_from_the_law_and_set_the_write_shares():
    config = ClusterConfig(32, slowdown=Pareto(1.5))
    scales = multipliers(config, rng=3)
    assert scales.min() >= Pareto(1.5).minimum
    np.testing.assert_array_equal(scales, multipliers(config, rng=3))
    assert not np.array_equal(scales, multipliers(config, rng=4))
    # Worker i writes at rate 1/s_i: its share of the writes is (1/s_i)/Σ 1/s_j, within 5 binomial
    # standard deviations (exponential times: each worker's writes are a Poisson process).
    trace = simulate(config, 100_000, rng=3)
    share = (1 / scales) / np.sum(1 / scales)
    counts = np.bincount(trace.writer, minlength=32)
    assert np.all(np.abs(counts - 1e5 * share) < 5 * np.sqrt(1e5 * share) + 2)


def test_slowdown_streams_are_keyed_by_worker():
    two = multipliers(ClusterConfig(2, slowdown=LogNormal(1.0)), rng=5)
    three = multipliers(ClusterConfig(3, slowdown=LogNormal(1.0)), rng=5)
    np.testing.assert_array_equal(two, three[:2])


def test_dropouts_lengthen_each_cycle_by_probability_times_mean_downtime():
    # Each worker's cycle: Exp(1) compute, then with probability 0.2 an Exp(2) downtime: mean 1.4,
    # so 8 workers write every 1.4/8 = 0.175 on average (standard error about 0.3 % here).
    config = ClusterConfig(8, dropout=0.2, downtime=Exponential(2.0))
    trace = simulate(config, 100_000, rng=6)
    assert trace.time_per_update == pytest.approx(1.4 / 8, rel=0.015)


def test_buffered_applies_come_k_times_rarer_and_are_fresher_in_versions():
    # 16 exponential workers: an apply per 4 arrivals, so 4/16 time units per update; a gradient's
    # staleness counted in applies is about (M - 1)/K (here 15/4 = 3.75; measured 3.9).
    trace = simulate(ClusterConfig(16, buffer=4), 50_000, rng=7)
    assert trace.time_per_update == pytest.approx(4 / 16, rel=0.015)
    assert 3.5 < trace.mean < 4.2
    assert (trace.n_aggregated == 4).all()


# ------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"dropout": 1.5}, ValueError, r"dropout must be a finite number in \[0, 1\], got 1\.5"),
        ({"dropout": -0.1}, ValueError, r"dropout must be a finite number in \[0, 1\], got -0\.1"),
        (
            {"dropout": 0.1},
            ValueError,
            r"downtime is required when dropout > 0 \(got dropout = 0\.1\)",
        ),
        (
            {"dropout": 0.1, "downtime": 2.0},
            TypeError,
            r"downtime must be a Distribution.*got 2\.0",
        ),
        ({"buffer": 0}, ValueError, r"buffer must be in \[1, 4\], got 0"),
        ({"buffer": 5}, ValueError, r"buffer must be in \[1, 4\], got 5"),
        ({"buffer": 2, "mode": "sync"}, ValueError, r"buffer must be in \[1, 1\], got 2"),
        ({"buffer": 1.5}, TypeError, r"buffer must be an integer, got 1\.5"),
        ({"slowdown": "pareto"}, TypeError, r"slowdown must be a Distribution.*got 'pareto'"),
        (
            {"slowdown": Deterministic(0.0)},
            ValueError,
            r"slowdown must have a mean multiplier in \(0, inf\), got Deterministic\(value=0\.0\)",
        ),
    ],
)
def test_bad_regime_is_rejected_naming_parameter_value_and_range(kwargs, error, match):
    with pytest.raises(error, match=match):
        ClusterConfig(4, **kwargs)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: Gamma.from_cv(-0.5), r"cv must be a finite number in \[0, 10\], got -0\.5"),
        (lambda: Gamma.from_cv(11.0), r"cv must be a finite number in \[0, 10\], got 11\.0"),
        (
            lambda: Gamma.from_cv(0.5, 0.0),
            r"mean_time must be a finite number in \(0, inf\), got 0",
        ),
        (lambda: Pareto(1.0), r"Pareto\.alpha must be a finite number in \(1, inf\), got 1\.0"),
        (lambda: Pareto(2.0, -1.0), r"Pareto\.mean_time must be a finite number in \(0, inf\)"),
    ],
)
def test_bad_laws_are_rejected(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_gamma_cv_and_pareto_mean():
    assert Gamma.from_cv(0.25).shape == 16.0
    assert Gamma.from_cv(0.25).cv == pytest.approx(0.25)
    draws = Pareto(3.0, 2.0).sample(400_000, rng=np.random.default_rng(0))
    # sd of the mean: sqrt(var/n), var = x_m² α/((α-1)²(α-2)) = 1 here.
    assert draws.mean() == pytest.approx(2.0, abs=5 * np.sqrt(1.0 / 400_000))
    assert draws.min() >= Pareto(3.0, 2.0).minimum


# ---------------------------------------------------------------------------- progress bar
def test_simpy_progress_is_off_by_default_and_shown_on_request(capsys):
    simulate(ClusterConfig(2), 1000, method="simpy")
    assert capsys.readouterr() == ("", "")
    trace = simulate(ClusterConfig(2), 1000, method="simpy", progress=True)
    err = capsys.readouterr().err
    assert "simulate" in err and "1.00k/1.00k" in err
    assert_same_trace(trace, simulate(ClusterConfig(2), 1000, method="simpy"))
    simulate(ClusterConfig(2), 1000, method="fast", progress=True)  # the fast path shows none
    assert capsys.readouterr() == ("", "")


def test_progress_must_be_a_bool_or_none():
    with pytest.raises(TypeError, match=r"progress must be True, False or None, got 'yes'"):
        simulate(ClusterConfig(2), 10, progress="yes")


# ------------------------------------------------------------------------ the experiment
def test_momentum_against_variability_at_a_small_scale():
    from asyncsim.experiments.variability import momentum_against_variability

    kwargs = {
        "probe_lrs": (0.02, 0.05),
        "probe_steps": 1000,
        "lrs": (0.125, 0.25),
        "momenta": (-0.45, 0.0, 0.45),
        "seeds": 2,
        "steps": 1500,
        "progress": False,
    }
    result = momentum_against_variability((4,), (1.0, 0.1), rng=3, **kwargs)
    frame = result.to_frame()
    assert list(frame.columns) == [
        "workers", "cv", "staleness_mean", "staleness_std", "zero_fraction", "implicit_geometric",
        "implicit@0.02", "departure@0.02", "implicit@0.05", "departure@0.05", "best_momentum",
        "momentum_low", "momentum_high", "best_lr", "best_iterations", "best_momentum_geometric",
    ]  # fmt: skip
    assert frame["implicit_geometric"].tolist() == [0.75, 0.75]
    # Mean staleness M - 1 at both CVs (up to the run's ends), far narrower at CV 0.1.
    np.testing.assert_allclose(result.staleness_mean, 3.0, atol=0.05)
    assert result.staleness_std[0, 1] < 0.3 * result.staleness_std[0, 0]
    assert result.zero_fraction[0, 1] < 0.01 < result.zero_fraction[0, 0]
    assert np.all((result.implicit > 0.5) & (result.implicit < 0.8))
    assert set(result.best_momentum.ravel()) <= {-0.45, 0.0, 0.45}
    assert np.all(result.momentum_low <= result.best_momentum)
    assert np.all(result.best_momentum <= result.momentum_high)
    assert result.iterations.shape == (1, 2, 3)
    assert result.seed.entropy == 3


def test_momentum_against_variability_is_reproducible():
    from asyncsim.experiments.variability import momentum_against_variability

    kwargs = {"probe_steps": 300, "lrs": (0.25,), "momenta": (0.0,), "seeds": 1, "steps": 300}
    first = momentum_against_variability((2,), (0.5,), rng=4, progress=False, **kwargs)
    again = momentum_against_variability((2,), (0.5,), rng=first.seed.sequence(), **kwargs)
    other = momentum_against_variability((2,), (0.5,), rng=5, progress=False, **kwargs)
    np.testing.assert_array_equal(first.implicit, again.implicit)
    np.testing.assert_array_equal(first.best_iterations, again.best_iterations)
    assert not np.array_equal(first.implicit, other.implicit)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"workers": (1,)}, r"workers must be finite and in \[2, inf\) elementwise, got 1\.0"),
        ({"workers": (2.5,)}, r"workers must be integers >= 2, got \(2\.5,\)"),
        ({"cvs": (0.0,)}, r"cvs must be finite and in \(0, 10\] elementwise, got 0\.0"),
        ({"probe_lrs": ()}, r"probe_lrs must be a non-empty 1-D sequence"),
    ],
)
def test_momentum_against_variability_rejects_bad_grids(kwargs, match):
    from asyncsim.experiments.variability import momentum_against_variability

    with pytest.raises(ValueError, match=match):
        momentum_against_variability(**kwargs)
