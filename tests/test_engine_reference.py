"""The engine's histories held against values it stored before its hot path was rewritten.

``tests/data/engine_reference.npz`` holds, for every problem x optimizer x staleness mode of
:func:`cases`, the losses, distances, recorded values, divergence steps and final parameters (about 50
evenly spaced coordinates) of a 200-step run of B = 3 configurations, as the engine computed them at
commit 5029cb4, before issue 13's levers (shared noise, the version store, the fused kernels). A change
that moves a result beyond rounding fails here: rtol 1e-12 on the diagonal quadratics (elementwise
arithmetic, the same operations in the same order), 1e-9 on the problems whose sums may be taken in
another order (least squares, logistic regression and the MLP, whose products the engine may batch
differently).

Run ``python tests/test_engine_reference.py --write`` only to record a deliberate change of results
(and update the file's sha256 in ``tests/data/README.md``).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from threadpoolctl import threadpool_limits

from asyncsim import engine
from asyncsim.cluster import ClusterConfig, simulate
from asyncsim.engine import History, run
from asyncsim.optim import GradientTransformation, adam, heavy_ball, nesterov
from asyncsim.problems import (
    DigitsCNN,
    DigitsMLP,
    LeastSquares,
    LogisticRegression,
    NoisyQuadratic,
    Problem,
    make_problem,
)
from asyncsim.trace import StalenessLaw, Trace
from asyncsim.yellowfin import yellowfin_tuner

DATA = Path(__file__).resolve().parent / "data" / "engine_reference.npz"
STEPS, BATCH, EVERY = 200, 3, 20

#: rtol per problem: elementwise arithmetic, or sums whose order the engine may change.
RTOL = {"nq50": 1e-12, "q10": 1e-12, "least-squares": 1e-9, "logistic": 1e-9, "digits-mlp": 1e-9}
OPTIMIZERS = ("heavy_ball", "nesterov", "adam", "yellowfin_tuner")
MODES = ("shared-trace", "per-configuration-traces", "law", "none")


def problems() -> dict[str, Problem]:
    data = np.random.default_rng(20261130)
    x = data.standard_normal((120, 8)) / np.sqrt(8.0)
    y_real = x @ data.standard_normal(8) + 0.1 * data.standard_normal(120)
    y_label = (x @ data.standard_normal(8) + 0.3 * data.standard_normal(120) > 0).astype(float)
    return {
        "nq50": make_problem("nq50"),
        "q10": make_problem("q10"),
        "least-squares": LeastSquares(x, y_real, batch_size=8),
        "logistic": LogisticRegression(x, y_label, batch_size=8, l2=1e-3),
        "digits-mlp": DigitsMLP(hidden=8, eval_size=200),
    }


#: Base step size per problem; the three configurations take 0.5, 1 and 2 times it.
BASE_LR = {"nq50": 0.1, "q10": 0.2, "least-squares": 0.2, "logistic": 0.5, "digits-mlp": 0.2}


def optimizer(name: str, base_lr: float) -> GradientTransformation:
    lrs = base_lr * np.array([0.5, 1.0, 2.0])
    if name == "heavy_ball":
        return heavy_ball(lrs, [0.9, 0.5, -0.2])
    if name == "nesterov":
        return nesterov(lrs, 0.6)
    if name == "adam":
        return adam(0.1 * lrs)
    return yellowfin_tuner(beta=np.array([0.99, 0.999, 0.9]), lr_init=base_lr)


def staleness(mode: str) -> tuple[Any, Any]:
    """(trace argument, rng argument) of a staleness mode."""
    if mode == "shared-trace":  # a cluster trace with writers; common random numbers, as a sweep
        return simulate(ClusterConfig(4), STEPS, rng=1), [np.random.SeedSequence(5)] * BATCH
    if mode == "per-configuration-traces":
        traces = [
            simulate(ClusterConfig(2), STEPS, rng=2),
            simulate(ClusterConfig(4, mode="groups", n_groups=2), STEPS, rng=3),
            Trace.geometric(8, STEPS, rng=4),
        ]
        return traces, [5, 6, 7]
    if mode == "law":
        return StalenessLaw.geometric(4), 5
    return None, 5


def cases() -> Iterator[tuple[str, str, Problem, GradientTransformation, Any, Any]]:
    """(key, problem name, problem, transform, trace, rng) of every case."""
    for pname, problem in problems().items():
        for oname in OPTIMIZERS:
            for mode in MODES:
                if mode == "law" and not problem.affine_gradient:
                    continue
                trace, rng = staleness(mode)
                yield (
                    f"{pname}|{oname}|{mode}",
                    pname,
                    problem,
                    optimizer(oname, BASE_LR[pname]),
                    trace,
                    rng,
                )


def arrays_of(history: History) -> dict[str, np.ndarray]:
    out = {
        "steps": history.steps,
        "loss": history.loss,
        "diverged_at": history.diverged_at,
        # every k-th coordinate, at most about 50 of them: the file stays small
        "final_params": history.final_params[:, :: max(1, history.final_params.shape[1] // 50)],
        "time": history.time,
    }
    if history.distance is not None:
        out["distance"] = history.distance
    out |= {f"value.{name}": v for name, v in history.values.items()}
    return out


def run_case(problem, transform, trace, rng) -> History:
    return run(problem, transform, trace, STEPS, rng=rng, record_every=EVERY)


def load_reference() -> dict[str, dict[str, np.ndarray]]:
    """``case key -> {field: array}`` from the file: one flat float64 vector per case and a JSON
    index of each field's shape and dtype (a few entries keep the archive small)."""
    assert DATA.exists(), f"{DATA} is missing (see tests/data/README.md)"
    with np.load(DATA) as data:
        index = json.loads(str(data["index"]))
        out = {}
        for key, layout in index.items():
            flat, at, fields = data[key], 0, {}
            for name, shape, dtype in layout:
                size = int(np.prod(shape))
                fields[name] = flat[at : at + size].reshape(shape).astype(dtype)
                at += size
            out[key] = fields
    return out


CASES = list(cases())


@pytest.fixture(scope="module")
def reference() -> dict[str, dict[str, np.ndarray]]:
    return load_reference()


def test_reference_covers_every_problem_optimizer_and_mode(reference) -> None:
    assert set(reference) == {key for key, *_ in CASES}
    assert len(CASES) == 5 * 4 * 4 - 2 * 4  # no law on the two non-affine problems


@pytest.mark.parametrize(
    ("key", "pname", "problem", "transform", "trace", "rng"), CASES, ids=[c[0] for c in CASES]
)
def test_history_matches_the_stored_reference(
    reference, key, pname, problem, transform, trace, rng
) -> None:
    expected = reference[key]
    found = arrays_of(run_case(problem, transform, trace, rng))
    assert set(found) == set(expected), key
    rtol = RTOL[pname]
    for name, want in expected.items():
        got = found[name]
        assert got.shape == want.shape, (key, name)
        if want.dtype.kind in "iub":
            np.testing.assert_array_equal(got, want, err_msg=f"{key} {name}")
            continue
        # atol: entries that pass near zero are compared at rtol times the entry's scale
        scale = np.max(np.abs(want), initial=0.0, where=np.isfinite(want))
        np.testing.assert_allclose(
            got, want, rtol=rtol, atol=rtol * 1e-3 * scale, err_msg=f"{key} {name}"
        )


# ------------------------------------------------------------------------------- both paths
#: The cases the fused kernel takes (heavy ball and Nesterov on the diagonal quadratics, where no
#: momentum estimate is recorded); the NumPy path must give them too.
FUSED = [c for c in CASES if c[1] in ("nq50", "q10") and c[0].split("|")[1] != "adam"]


@pytest.mark.parametrize(
    ("key", "pname", "problem", "transform", "trace", "rng"), FUSED, ids=[c[0] for c in FUSED]
)
def test_numpy_path_matches_the_reference(
    reference, monkeypatch, key, pname, problem, transform, trace, rng
) -> None:
    monkeypatch.setenv("ASYNCSIM_KERNELS", "numpy")
    test_history_matches_the_stored_reference(reference, key, pname, problem, transform, trace, rng)


@pytest.mark.parametrize("form", [heavy_ball, nesterov])
@pytest.mark.parametrize(
    "mode", ["common-random-numbers", "own-streams", "per-configuration", "noiseless"]
)
def test_fused_kernel_equals_the_numpy_path_to_the_last_bit(monkeypatch, form, mode) -> None:
    """Bit for bit, with a shifted optimum, aggregated gradients and a configuration that diverges
    (frozen from then on)."""
    kernels = pytest.importorskip("asyncsim._kernels")
    if kernels.quadratic_momentum() is None:
        pytest.skip("numba unavailable (not installed, or ASYNCSIM_KERNELS=numpy): NumPy path only")
    problem = NoisyQuadratic(np.logspace(0, -2, 9), noise=0.05, w_star=0.25)
    group = simulate(ClusterConfig(4, mode="groups", n_groups=2), 400, rng=3)
    trace: Any = group
    rng: Any = [np.random.SeedSequence(8)] * 3
    if mode == "noiseless":  # the flat kernel: small d, one trace, no noise
        problem = NoisyQuadratic(np.logspace(0, -2, 9), w_star=0.25)
    elif mode == "own-streams":
        rng = 8
    elif mode == "per-configuration":
        trace, rng = [group, Trace.geometric(3, 400, rng=1), Trace.geometric(6, 400, rng=2)], 8
    transform = form([0.1, 0.4, 3.0], [0.5, -0.3, 0.9])
    runs = {}
    for path in ("numpy", "numba"):
        monkeypatch.setenv("ASYNCSIM_KERNELS", path)
        runs[path] = run(
            problem, transform, trace, 400, rng=rng, record_every=7, estimate_momentum=False
        )
    a, b = runs["numpy"], runs["numba"]
    assert a.diverged.tolist() == [False, False, True]
    for name in ("loss", "distance", "final_params", "diverged_at", "time"):
        np.testing.assert_array_equal(getattr(b, name), getattr(a, name), err_msg=name)
    for name, values in a.values.items():
        np.testing.assert_array_equal(b[name], values, err_msg=name)


@pytest.mark.parametrize("stop_each", [False, True])
@pytest.mark.parametrize("mode", ["own-streams", "noiseless"])
def test_fused_kernel_with_stops_equals_the_numpy_path_to_the_last_bit(
    monkeypatch, mode, stop_each
) -> None:
    """The fused loop makes its visits together, after the steps they look at: a configuration that
    diverges, reaches the target or stops the run between two of them ends as in the NumPy loop,
    which visits each step as it comes. Records every step; visits held 64 at a time."""
    kernels = pytest.importorskip("asyncsim._kernels")
    if kernels.quadratic_momentum() is None:
        pytest.skip("numba unavailable (not installed, or ASYNCSIM_KERNELS=numpy): NumPy path only")
    monkeypatch.setattr(engine, "_DEFERRED_BUDGET", 64 * 4 * 9)
    problem = NoisyQuadratic(np.logspace(0, -1, 9), noise=0.0 if mode == "noiseless" else 0.02)
    trace = Trace.geometric(3, 500, rng=5)
    transform = heavy_ball([0.05, 0.5, 1.2, 4.0], [0.5, 0.0, -0.3, 0.9])
    target = 1e-3 * float(problem.loss(problem.init_params(1))[0])
    runs = {}
    for path in ("numpy", "numba"):
        monkeypatch.setenv("ASYNCSIM_KERNELS", path)
        runs[path] = run(
            problem, transform, trace, 500, rng=8, stop_at=target, stop_each=stop_each,
            record_params=True,
        )  # fmt: skip
    a, b = runs["numpy"], runs["numba"]
    assert a.diverged.any() and (a.loss <= target).any(axis=0).sum() >= 2
    assert 64 < len(a.steps) - 1 < 500  # the run stops, after more visits than one hold
    for name in ("steps", "loss", "distance", "params", "final_params", "diverged_at", "time"):
        np.testing.assert_array_equal(getattr(b, name), getattr(a, name), err_msg=name)
    for name, values in a.values.items():
        np.testing.assert_array_equal(b.values[name], values, err_msg=name)


@pytest.mark.parametrize("form", [heavy_ball, nesterov])
@pytest.mark.parametrize("name", ["dense", "least-squares", "digits-mlp"])
def test_fused_momentum_update_equals_the_numpy_path_to_the_last_bit(monkeypatch, form, name):
    """The compiled momentum update after any problem's gradient, with one configuration diverging:
    bit for bit, but for the MLP, whose gradient kernel differs from NumPy's by rounding."""
    kernels = pytest.importorskip("asyncsim._kernels")
    if kernels.momentum_apply() is None:
        pytest.skip("numba unavailable (not installed, or ASYNCSIM_KERNELS=numpy): NumPy path only")
    problem = {
        "dense": NoisyQuadratic(np.logspace(0, -2, 12), noise=0.05, rotation=1),
        "least-squares": problems()["least-squares"],
        "digits-mlp": DigitsMLP(hidden=4, eval_size=100),
    }[name]
    lrs = {
        "dense": [0.1, 0.5, 5.0],
        "least-squares": [0.1, 0.5, 50.0],
        "digits-mlp": [0.1, 0.5, 1e4],
    }
    trace = Trace.geometric(3, 150, rng=1)
    transform = form(lrs[name], [0.5, -0.3, 0.9])
    runs = {}
    for path in ("numpy", "numba"):
        monkeypatch.setenv("ASYNCSIM_KERNELS", path)
        runs[path] = run(problem, transform, trace, 150, rng=[4, 5, 6], record_every=5)
    a, b = runs["numpy"], runs["numba"]
    assert a.diverged[2] or name == "digits-mlp"  # the MLP's softmax saturates rather than diverges
    np.testing.assert_array_equal(b.diverged_at, a.diverged_at)
    for field_name in ("loss", "final_params"):
        if name == "digits-mlp":  # its kernels take e^x within 2 ulp of np.exp, and α = 1e4
            # amplifies that over 150 steps (6e-11 measured): the 1e-9 of the reference histories
            np.testing.assert_allclose(
                getattr(b, field_name), getattr(a, field_name), rtol=1e-9, atol=1e-300
            )
        else:
            np.testing.assert_array_equal(getattr(b, field_name), getattr(a, field_name))


@pytest.mark.parametrize(
    "minibatch", ["own", "shared", "aggregated", "full data", "saturated", "evaluation"]
)
@pytest.mark.parametrize("network", ["digits-mlp", "digits-cnn"])
def test_network_kernels_equal_the_numpy_path(monkeypatch, network, minibatch) -> None:
    """The compiled gradient and loss of the digits networks against their NumPy paths: own
    minibatches per configuration, one shared by all, unequal aggregation (zero-weighted samples),
    the full-data gradient, weights large enough that tanh and the softmax saturate, and the
    evaluation loss. The kernels do the NumPy path's operations in its order (with BLAS on one thread
    in both, as the kernels always run it: a threaded product sums in another order), except that
    they take e^x from a vectorised polynomial within 2 ulp of ``np.exp``, and the CNN's sum its
    convolution in another order: equal to rtol 1e-12."""
    kernels = pytest.importorskip("asyncsim._kernels")
    if kernels.mlp_gradient() is None:
        pytest.skip("numba unavailable (not installed, or ASYNCSIM_KERNELS=numpy): NumPy path only")
    if network == "digits-mlp":
        problem: Any = DigitsMLP(hidden=12, batch_size=8, eval_size=50)
    else:
        problem = DigitsCNN(channels=3, batch_size=8, eval_size=50)
    rng = np.random.default_rng(11)
    scale = 30.0 if minibatch == "saturated" else 0.3
    w = problem.init_params(5) + scale * rng.standard_normal((5, problem.dim))
    draws = problem.draw([np.random.default_rng(s) for s in range(5)], 1, 2)[:, 0]

    def evaluate() -> np.ndarray:
        if minibatch == "full data":
            return problem.mean_gradient(w)
        if minibatch == "evaluation":
            return problem.loss(w)
        if minibatch == "shared":
            return problem.gradient(w, draws[:1], 2)
        k = np.array([1, 2, 2, 1, 2]) if minibatch == "aggregated" else 1
        return problem.gradient(w, draws, k)

    results = {}
    for path in ("numpy", "numba"):
        monkeypatch.setenv("ASYNCSIM_KERNELS", path)
        with threadpool_limits(1):
            results[path] = evaluate()
    assert np.isfinite(results["numpy"]).all()
    np.testing.assert_allclose(results["numba"], results["numpy"], rtol=1e-12, atol=1e-300)


def _compiled_exp() -> Any:
    kernels = pytest.importorskip("asyncsim._kernels")
    if kernels.mlp_losses() is None:
        pytest.skip("numba unavailable (not installed, or ASYNCSIM_KERNELS=numpy): NumPy path only")
    return kernels._exp


def _ulps(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance in units in the last place between positive finite floats."""
    return np.abs(a.view(np.int64) - b.view(np.int64))


@given(st.lists(st.floats(-708.0, 709.782712893384, allow_nan=False), min_size=1, max_size=600))
@settings(max_examples=200, deadline=None)
def test_the_kernels_exp_is_within_two_ulp_of_numpy(values: list[float]) -> None:
    """The networks' kernels take e^x from a vectorised polynomial: within 2 ulp of ``np.exp``
    wherever e^x is a normal float, blocks of any length (the loop runs 256 values a pass)."""
    exp = _compiled_exp()
    x = np.array(values)
    got = x.copy()
    exp(got)
    assert _ulps(got, np.exp(x)).max() <= 2


def test_the_kernels_exp_at_the_ends_of_its_range() -> None:
    """Overflow gives inf and NaN stays NaN, as ``np.exp``; below -708 (subnormal results) it gives
    0, within 4e-308; the bulk of a fine grid equals ``np.exp`` to the last bit."""
    exp = _compiled_exp()
    edges = np.array([np.nan, np.inf, -np.inf, 709.79, 1e308, -708.1, -745.2, -1e308])
    got = edges.copy()
    exp(got)
    with np.errstate(under="ignore", over="ignore"):
        want = np.exp(edges)
    np.testing.assert_array_equal(got[:5], want[:5])
    assert (got[5:] == 0.0).all() and (want[5:] < 4e-308).all()
    grid = np.linspace(-708.0, 709.78, 1_000_001)
    got = grid.copy()
    exp(got)
    ulps = _ulps(got, np.exp(grid))
    assert ulps.max() <= 2 and (ulps == 0).mean() > 0.5


def write() -> None:
    arrays, index = {}, {}
    for key, _, problem, transform, trace, rng in CASES:
        fields = arrays_of(run_case(problem, transform, trace, rng))
        index[key] = [(name, list(v.shape), v.dtype.str) for name, v in fields.items()]
        arrays[key] = np.concatenate([np.ravel(v).astype(np.float64) for v in fields.values()])
    np.savez_compressed(DATA, index=np.array(json.dumps(index)), **arrays)
    print(f"wrote {DATA} ({DATA.stat().st_size:,} bytes, {len(CASES)} cases)")


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    write()
