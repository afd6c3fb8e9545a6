"""Bad inputs at the public entry points: each raises a ValueError or TypeError whose message names the
parameter (or the file), the value given and what is allowed; and the boundaries still pass."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from asyncsim import (
    ClusterConfig,
    Deterministic,
    Exponential,
    LogNormal,
    NoisyQuadratic,
    Sweep,
    Trace,
    heavy_ball,
    make_problem,
    run,
    sgd,
    simulate,
)
from asyncsim._rng import SeedRecord
from asyncsim.comparisons import compare_closed_loop, compare_tuners
from asyncsim.problems import DigitsMLP, LeastSquares, LogisticRegression

HEADER = "update,staleness,writer,read_version,apply_time,n_aggregated\n"
NQ = make_problem("nq50")
TRACE = Trace.from_staleness([0, 1, 0, 2, 1])


def root_seed(rng: Any) -> int:
    from asyncsim.experiments import root_seed as experiment_root  # made only when the rows run

    return experiment_root(rng)


def run_nq(**kwargs: Any) -> Any:
    return run(NQ, sgd(0.1), None, 5, **kwargs)


def written(name: str, content: str | bytes) -> Callable[[Path], Path]:
    """A function of tmp_path writing ``content`` to ``tmp_path / name`` and returning the path."""

    def write(tmp: Path) -> Path:
        path = tmp / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        return path

    return write


def load(name: str, content: str | bytes) -> Callable[[Path], Trace]:
    return lambda tmp: Trace.load(written(name, content)(tmp))


def load_npy_as_npz(tmp: Path) -> Trace:
    np.save(tmp / "array.npy", np.arange(3))
    return Trace.load((tmp / "array.npy").rename(tmp / "array.npz"))


def load_truncated_npz(tmp: Path) -> Trace:
    TRACE.save(tmp / "whole.npz")
    return Trace.load(written("truncated.npz", (tmp / "whole.npz").read_bytes()[:100])(tmp))


def load_npz_bytes_as_csv(tmp: Path) -> Trace:
    TRACE.save(tmp / "real.npz")
    return Trace.load(written("binary.csv", (tmp / "real.npz").read_bytes())(tmp))


def columns(**change: Any) -> dict[str, Any]:
    base = {
        "staleness": [0, 1, 0],
        "writer": [0, 1, 0],
        "read_version": [0, 0, 2],
        "apply_time": [1.0, 1.5, 2.0],
        "n_aggregated": [1, 1, 1],
    }
    return base | change


# Every public entry that takes a seed, as (id, name in the message, call with the bad value, what
# the message says is allowed). Each meets a string, a negative, a fractional and a bool value.
RNG_ENTRIES: list[tuple[str, str, Callable[[Any], Any], str]] = [
    ("simulate", "rng", lambda v: simulate(ClusterConfig(2), 10, rng=v), "None, an int"),
    ("run", "rng", lambda v: run_nq(rng=v), "None, an int"),
    ("run-sequence-item", r"rng\[1\]", lambda v: run_nq(rng=[0, v], batch=2), "None, an int"),
    ("geometric", "rng", lambda v: Trace.geometric(2, 10, rng=v), "None, an int"),
    ("figures-root-seed", "rng", root_seed, "None, an int"),
    ("compare-closed-loop", "rng", lambda v: compare_closed_loop("nq50", rng=v), "None, an int"),
    ("compare-tuners", "rng", lambda v: compare_tuners("nq50", rng=v), "None, an int"),
    ("rotation", "rotation", lambda v: NoisyQuadratic([1.0, 0.5], rotation=v), "None or an int"),
    ("digits-seed", "seed", lambda v: DigitsMLP(seed=v), "an int"),
]
RNG_VALUES: list[tuple[str, Any, type[Exception], str]] = [
    ("string", "x", TypeError, r"got 'x' \(str\)"),
    ("negative", -1, ValueError, r"got -1$"),
    ("fractional", 1.5, TypeError, r"got 1\.5 \(float\)"),
    ("bool", True, TypeError, r"got True \(bool\)"),
]
RNG_ROWS = [
    (
        f"rng-{entry}-{kind}",
        lambda tmp, call=call, value=value: call(value),
        error,
        rf"^{name} must be {allowed}.*\[0, inf\).*{got}",
    )
    for entry, name, call, allowed in RNG_ENTRIES
    for kind, value, error, got in RNG_VALUES
]

ROWS: list[tuple[str, Callable[[Path], Any], type[Exception], str]] = [
    # 1. log-normal sigma beyond float64
    (
        "lognormal-sigma-50",
        lambda tmp: LogNormal(50.0),
        ValueError,
        r"LogNormal\.sigma must be a finite number in \[0, 30\], got 50\.0",
    ),
    (
        "lognormal-sigma-just-above",
        lambda tmp: LogNormal(30.5, mean_time=2.0),
        ValueError,
        r"LogNormal\.sigma must be a finite number in \[0, 30\], got 30\.5",
    ),
    # 2. the simulated clock overflows
    *(
        (
            f"clock-compute-{method}",
            lambda tmp, method=method: simulate(
                ClusterConfig(4, compute=Exponential(1e308)), 100, rng=0, method=method
            ),
            ValueError,
            r"clock overflowed.*got inf.*compute = Exponential\(mean_time=1e\+308\) \(mean 1e\+308\)",
        )
        for method in ("simpy", "fast")
    ),
    (
        "clock-multipliers-fast",
        lambda tmp: simulate(
            ClusterConfig(2, compute=Deterministic(1e308), time_multipliers=(1, 4)),
            5,
            method="fast",
        ),
        ValueError,
        r"clock overflowed.*compute = Deterministic\(value=1e\+308\).*time_multipliers up to 4",
    ),
    (
        "clock-server-time",
        lambda tmp: simulate(ClusterConfig(2, server_time=Deterministic(1e308)), 10, rng=0),
        ValueError,
        r"clock overflowed.*server_time = Deterministic\(value=1e\+308\) \(mean 1e\+308\)",
    ),
    (
        "clock-push-latency",
        lambda tmp: simulate(ClusterConfig(2, push_latency=Exponential(1e308)), 10, rng=0),
        ValueError,
        r"clock overflowed.*push_latency = Exponential\(mean_time=1e\+308\)",
    ),
    (
        "simulate-too-many-updates",
        lambda tmp: simulate(ClusterConfig(4), 10**13),
        ValueError,
        r"n_updates = 10000000000000 needs about 1\.6e\+03 TB of memory \(160 bytes per update\), "
        r"more than the .* available here",
    ),
    # 3. the MLP's target and seed
    (
        "digits-target-nan",
        lambda tmp: make_problem("digits-mlp", target=float("nan")),
        ValueError,
        r"target must be None or a finite number in \(0, inf\), got nan",
    ),
    (
        "digits-target-negative",
        lambda tmp: make_problem("digits-mlp", target=-1),
        ValueError,
        r"target must be None or a finite number in \(0, inf\), got -1\.0",
    ),
    (
        "digits-target-string",
        lambda tmp: DigitsMLP(target="0.05"),
        TypeError,
        r"target must be None or a real number, got '0\.05' \(str\)",
    ),
    (
        "logistic-target-zero",
        lambda tmp: LogisticRegression(np.ones((4, 2)), np.array([0, 1, 0, 1]), target=0.0),
        ValueError,
        r"target must be None or a finite number in \(0, inf\), got 0\.0",
    ),
    # 4. stop_at
    (
        "stop-at-nan",
        lambda tmp: run_nq(stop_at=float("nan")),
        ValueError,
        r"stop_at must be None or a finite number in \(-inf, inf\), got nan",
    ),
    (
        "stop-at-inf",
        lambda tmp: run_nq(stop_at=float("inf")),
        ValueError,
        r"stop_at must be None or a finite number in \(-inf, inf\), got inf",
    ),
    (
        "stop-at-string",
        lambda tmp: run_nq(stop_at="x"),
        TypeError,
        r"stop_at must be None or a real number, got 'x' \(str\)",
    ),
    # 5. the problem handed to run
    (
        "run-problem-none",
        lambda tmp: run(None, sgd(0.1), None, 5),
        TypeError,
        r"problem must be a Problem instance \(e\.g\. make_problem\('nq50'\)\), got None \(NoneType\)",
    ),
    (
        "run-problem-name",
        lambda tmp: run("nq50", sgd(0.1), None, 5),
        TypeError,
        r"problem must be a Problem instance, got the name 'nq50' \(str\); "
        r"build the problem with make_problem\('nq50'\)",
    ),
    # 6. every seed entry point, four bad values each
    *RNG_ROWS,
    (
        "rng-run-empty-sequence",
        lambda tmp: run_nq(rng=[]),
        TypeError,
        r"rng must be .*or a non-empty sequence of them.*got \[\] \(list\)",
    ),
    *(
        (
            f"sweep-seed-{kind}",
            lambda tmp, value=value: Sweep("nq50", (0.1,), steps=10, seed=value),
            error,
            rf"^seed must be {allowed}, got {got}",
        )
        for kind, value, error, allowed, got in [
            ("negative", -1, ValueError, r"in \[0, inf\)", "-1"),
            ("fractional", 1.5, TypeError, "an integer", r"1\.5 \(float\)"),
            ("string", "x", TypeError, "an integer", r"'x' \(str\)"),
        ]
    ),
    # 7. w0 and w_star of the wrong length
    (
        "nq50-w0-length",
        lambda tmp: make_problem("nq50", w0=np.ones(3)),
        ValueError,
        r"w0 must be a scalar or an array of length d = 50, got shape \(3,\)",
    ),
    (
        "nq50-w0-row",
        lambda tmp: make_problem("nq50", w0=np.ones((1, 50))),
        ValueError,
        r"w0 must be a scalar or an array of length d = 50, got shape \(1, 50\)",
    ),
    (
        "nq50-w-star-length",
        lambda tmp: make_problem("nq50", w_star=np.zeros(49)),
        ValueError,
        r"w_star must be a scalar or an array of length d = 50, got shape \(49,\)",
    ),
    (
        "least-squares-w0-length",
        lambda tmp: LeastSquares(np.ones((5, 2)), np.zeros(5), w0=np.ones(3)),
        ValueError,
        r"w0 must be a scalar or an array of length d = 2, got shape \(3,\)",
    ),
    (
        "logistic-w0-length",
        lambda tmp: LogisticRegression(np.ones((4, 2)), np.array([0, 1, 0, 1]), w0=[0.0]),
        ValueError,
        r"w0 must be a scalar or an array of length d = 2, got shape \(1,\)",
    ),
    # 8. rotation (with the seed rows above): a non-negative int or None
    (
        "nq50-rotation-negative",
        lambda tmp: make_problem("nq50", rotation=-1),
        ValueError,
        r"rotation must be None or an int in \[0, inf\), got -1",
    ),
    # 9. momentum_beta, checked up front with or without a trace
    (
        "momentum-beta-2-no-trace",
        lambda tmp: run_nq(momentum_beta=2),
        ValueError,
        r"momentum_beta must be a finite number in \[0, 1\), got 2\.0",
    ),
    (
        "momentum-beta-1-with-trace",
        lambda tmp: run(
            NQ, heavy_ball(0.1, 0.5), simulate(ClusterConfig(2), 5, rng=0), 5, momentum_beta=1.0
        ),
        ValueError,
        r"momentum_beta must be a finite number in \[0, 1\), got 1\.0",
    ),
    # 10. traces: constructor columns and files
    (
        "trace-fractional-staleness",
        lambda tmp: Trace(**columns(staleness=[0, 0.5, 0])),
        ValueError,
        r"Trace\.staleness must hold integers \(within int64\), got 0\.5 at 1 position\(s\), "
        r"first at index 1",
    ),
    (
        "trace-nan-n-aggregated",
        lambda tmp: Trace(**columns(n_aggregated=[1.0, np.nan, 1.0])),
        ValueError,
        r"Trace\.n_aggregated must hold integers .*got nan",
    ),
    (
        "trace-inconsistent-read-version",
        lambda tmp: Trace(**columns(read_version=[0, 1, 2])),
        ValueError,
        r"Trace\.staleness and Trace\.read_version disagree .* first at update 1: "
        r"read_version\[t\] must equal max\(t - staleness\[t\], 0\) = 0 \(staleness 1\), "
        r"got read_version 1",
    ),
    (
        "trace-infinite-apply-time",
        lambda tmp: Trace(**columns(apply_time=[1.0, np.inf, 2.0])),
        ValueError,
        r"Trace\.apply_time must be finite \(or NaN where unknown\), got inf at update 1",
    ),
    (
        "load-header-only",
        load("header-only.csv", HEADER),
        ValueError,
        r"header-only\.csv has no rows \(a header line only\)",
    ),
    (
        "load-empty-csv",
        load("empty.csv", ""),
        ValueError,
        r"empty\.csv is empty",
    ),
    (
        "load-nan-staleness",
        load("nan.csv", HEADER + "0,0,0,0,1.0,1\n1,nan,1,0,2.0,1\n"),
        ValueError,
        r"nan\.csv is not a valid trace: Trace\.staleness must hold integers .*got nan",
    ),
    (
        "load-fractional-staleness",
        load("fractional.csv", HEADER + "0,0,0,0,1.0,1\n1,1.5,1,0,2.0,1\n"),
        ValueError,
        r"fractional\.csv is not a valid trace: Trace\.staleness must hold integers .*got 1\.5",
    ),
    (
        "load-inconsistent-staleness",
        load("inconsistent.csv", HEADER + "0,0,0,0,1.0,1\n1,0,1,0,2.0,1\n2,0,0,1,3.0,1\n"),
        ValueError,
        r"inconsistent\.csv is not a valid trace: Trace\.staleness and Trace\.read_version "
        r"disagree .*update 1: .* = 1 \(staleness 0\), got read_version 0",
    ),
    (
        "load-text-as-npz",
        load("text.npz", "staleness\n0\n1\n"),
        ValueError,
        r"text\.npz is not an \.npz archive .*it is no zip archive \(it starts with b'stalen'\)",
    ),
    (
        "load-npy-as-npz",
        load_npy_as_npz,
        ValueError,
        r"array\.npz is not an \.npz archive .*it is a single \.npy array",
    ),
    (
        "load-truncated-npz",
        load_truncated_npz,
        ValueError,
        r"truncated\.npz is not a readable \.npz archive",
    ),
    (
        "load-binary-as-csv",
        load_npz_bytes_as_csv,
        ValueError,
        r"binary\.csv is not a (text CSV|comma-separated table of numbers)",
    ),
    (
        "load-ragged-csv",
        load("ragged.csv", HEADER + "0,0,0,0,1.0,1\n1,1,1,0\n"),
        ValueError,
        r"ragged\.csv is not a comma-separated table of numbers",
    ),
    (
        "load-words-csv",
        load("words.csv", HEADER + "0,zero,0,0,1.0,1\n"),
        ValueError,
        r"words\.csv is not a comma-separated table of numbers.*zero",
    ),
    (
        "load-narrow-csv",
        load("narrow.csv", HEADER + "0,0,0\n1,1,1\n"),
        ValueError,
        r"narrow\.csv is not a trace CSV: the header names 6 columns, the rows hold 3",
    ),
    (
        "load-missing-csv",
        lambda tmp: Trace.load(tmp / "missing.csv"),
        FileNotFoundError,
        r"missing\.csv",
    ),
    (
        "load-missing-npz",
        lambda tmp: Trace.load(tmp / "missing.npz"),
        FileNotFoundError,
        r"missing\.npz",
    ),
]


@pytest.mark.parametrize(
    ("provoke", "error", "message"), [row[1:] for row in ROWS], ids=[row[0] for row in ROWS]
)
def test_bad_input_is_rejected_with_a_clear_message(
    tmp_path: Path, provoke: Callable[[Path], Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as caught:
        provoke(tmp_path)
    assert caught.type is error  # not merely a subclass (FileNotFoundError is an OSError)
    assert re.search(message, str(caught.value)), f"{message!r} not in {str(caught.value)!r}"


# ------------------------------------------------------------------------------------ boundaries
def test_the_largest_sigma_samples_finite_positive_times() -> None:
    law = LogNormal(LogNormal.SIGMA_MAX)
    times = law.sample(100_000, rng=np.random.default_rng(0))
    assert np.isfinite(times).all() and (times > 0).all()
    trace = simulate(ClusterConfig(4, compute=law), 2000, rng=0)
    assert np.isfinite(trace.apply_time).all() and (trace.apply_time > 0).all()


def test_every_accepted_kind_of_seed_still_works() -> None:
    """An int (NumPy's too) and a SeedSequence are the root itself; a Generator (or a bare bit
    generator) is a source of roots, and the root it gave is recorded and makes the run again."""
    config = ClusterConfig(3)
    reference = simulate(config, 50, rng=5)
    for rng in (np.int64(5), np.random.SeedSequence(5)):
        np.testing.assert_array_equal(simulate(config, 50, rng=rng).staleness, reference.staleness)
        np.testing.assert_array_equal(
            Trace.geometric(3, 50, rng=rng).staleness, Trace.geometric(3, 50, rng=5).staleness
        )
    for rng in (np.random.default_rng(5), np.random.PCG64(5)):
        trace = simulate(config, 50, rng=rng)
        again = simulate(config, 50, rng=trace.seed.sequence())
        np.testing.assert_array_equal(trace.apply_time, again.apply_time)
    assert Trace.geometric(3, 10, rng=np.int64(5)).seed == SeedRecord(5)
    assert root_seed(np.int64(7)) == 7
    assert 0 <= root_seed(np.random.SeedSequence(7)) < 2**31
    assert 0 <= root_seed(None) < 2**31
    noisy = make_problem("nq50")
    alone = run(noisy, sgd(0.1), None, 20, rng=3, record_every=None).loss
    again = run(noisy, sgd(0.1), None, 20, rng=np.random.SeedSequence(3), record_every=None).loss
    np.testing.assert_array_equal(again, alone)
    items = [0, np.int64(1), np.random.SeedSequence(2), np.random.default_rng(3), None]
    assert run(noisy, sgd(0.1), None, 5, rng=items, record_every=None).loss.shape == (2, 5)
    assert make_problem("nq50", rotation=0).hessian is not None


def test_values_at_the_edges_are_accepted() -> None:
    run_nq(momentum_beta=0.0, stop_at=-1.0)
    run_nq(momentum_beta=np.nextafter(1.0, 0.0), stop_at=None)
    assert make_problem("nq50", w0=np.full(50, 2.0), w_star=0.5).w_star.shape == (50,)
    assert LeastSquares(np.ones((5, 2)), np.zeros(5), w0=[1.0, 2.0]).w0.tolist() == [1.0, 2.0]
    # integral floats in integer columns, as a CSV reads them back, are exact
    trace = Trace(**columns(staleness=[0.0, 1.0, 0.0], n_aggregated=np.ones(3)))
    assert trace.staleness.dtype == np.int64 and trace.staleness.tolist() == [0, 1, 0]
