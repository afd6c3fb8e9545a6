"""asyncsim.torch_cnn: the digits CNN in torch agrees with the NumPy problem on a forward and backward
pass; a real lock-free run on it measures the total momentum the papers predict; and the committed
measurements are what their README lists, replayed by the experiment.

Skipped where the torch extra is missing, outside CI only (the replay needs no torch, but this file
tests the module that records it).
"""

from __future__ import annotations

import hashlib
import importlib
import multiprocessing
import os
import re
from pathlib import Path

import numpy as np
import pytest


def _extra(module: str, extra: str):
    """The module, or a skip where its extra is not installed, outside CI only."""
    if os.environ.get("CI"):
        return importlib.import_module(module)
    return pytest.importorskip(
        module, reason=f"needs the {extra} extra: pip install -e '.[{extra}]'"
    )


torch = _extra("torch", "torch")

from asyncsim.experiments.cnn_real_asynchrony import (  # noqa: E402 (after the extra's check)
    ESTIMATORS,
    FILES,
    cnn_real_asynchrony,
    load_cnn_metadata,
    load_cnn_runs,
)
from asyncsim.hogwild import SharedHeavyBall, hogwild  # noqa: E402
from asyncsim.problems import DigitsCNN, make_problem  # noqa: E402
from asyncsim.torch_cnn import (  # noqa: E402
    RECORDING,
    TorchCNNModel,
    TorchDigitsCNN,
    meter_total_momentum,
)

DATA = Path(__file__).resolve().parents[1] / "asyncsim" / "data"


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ------------------------------------------------------------------------------------------ agreement
def _configurations(problem: DigitsCNN, b: int, seed: int) -> np.ndarray:
    """``b`` parameter vectors (b, d) around the initial weights, far enough to saturate tanh."""
    rng = np.random.default_rng(seed)
    return problem.w0 + 0.5 * rng.standard_normal((b, problem.dim))


@pytest.mark.parametrize("options", [{}, {"channels": 3, "batch_size": 8, "eval_size": 50}])
def test_torch_and_numpy_agree_on_forward_and_backward_in_float64(options) -> None:
    """Same initial weights (parameters_to_vector order = the problem's flat layout); on four
    configurations' parameters the evaluation loss (forward on the evaluation subset) and a
    minibatch's gradient (backward) agree to 1e-10."""
    problem = make_problem("digits-cnn", **options)
    module = TorchDigitsCNN(problem)
    assert [tuple(p.shape) for p in module.parameters()] == [
        tuple(shape) for shape in problem.shapes
    ]
    np.testing.assert_array_equal(module.flat(), problem.w0)
    w = _configurations(problem, 4, seed=1)
    minibatches = problem.draw([np.random.default_rng(2)], 4, 1)[0]  # (4, batch_size)
    numpy_loss = problem.loss(w)
    numpy_gradient = problem.gradient(w.copy(), minibatches.copy(), 1)
    for b in range(4):
        module.set_flat(w[b])
        assert module.evaluation_loss() == pytest.approx(numpy_loss[b], rel=0, abs=1e-10)
        gradient = module.flat_gradient(w[b], minibatches[b])
        np.testing.assert_allclose(gradient, numpy_gradient[b], rtol=0, atol=1e-10)
    assert np.abs(numpy_gradient).max() > 0.1  # the comparison is not of zeros


def test_the_float32_module_agrees_to_its_precision() -> None:
    problem = make_problem("digits-cnn")
    module = TorchDigitsCNN(problem, torch.float32)
    w = _configurations(problem, 1, seed=3)[0]
    idx = np.arange(problem.batch_size)
    expected = problem.gradient(w[None, :].copy(), idx[None, :].copy(), 1)[0]
    np.testing.assert_allclose(module.flat_gradient(w, idx), expected, rtol=0, atol=1e-5)


def test_bad_inputs_name_the_parameter() -> None:
    with pytest.raises(TypeError, match="problem must be a DigitsCNN, got DigitsMLP"):
        TorchDigitsCNN(make_problem("digits-mlp"))
    with pytest.raises(ValueError, match="dtype_name must be one of 'float64', 'float32'"):
        TorchCNNModel(make_problem("digits-cnn"), "float16")


# ------------------------------------------------------------------------------------------ real runs
@pytest.fixture(scope="module")
def real_runs() -> dict[int, object]:
    """Real lock-free runs on the CNN, heavy ball α = 0.05, μ = 0.5, 800 writes: M = 1 and M = 2
    (the fork server imports torch once, so the workers start fast)."""
    multiprocessing.get_context("forkserver").set_forkserver_preload(["asyncsim.torch_cnn"])
    model = TorchCNNModel(DigitsCNN())
    return {
        m: hogwild(
            model,
            SharedHeavyBall(0.05, 0.5),
            m,
            800,
            rng=m,
            record_every=100,
            record_reads=True,
            timeout=300,
            start_method="forkserver",
        )
        for m in (1, 2)
    }


def _late_median(estimates: np.ndarray) -> float:
    """Median of a meter's estimates over the last two thirds of its readings."""
    return float(np.nanmedian(estimates[estimates.size // 3 :]))


def test_synchronous_run_measures_the_algorithmic_momentum(real_runs) -> None:
    """M = 1: the reads follow the heavy ball exactly, so the meter reads μ = 0.5 to rounding
    (tolerance 1e-9), and one worker's meter is the pooled estimator (to 1e-12)."""
    run = real_runs[1]
    assert not run.diverged and not run.timed_out and len(run.trace) == 800
    assert run.loss[-1] < run.loss[0]
    counts, estimates = meter_total_momentum(run, every=10)
    steps, pooled = run.total_momentum(every=10)
    np.testing.assert_array_equal(counts, steps)
    np.testing.assert_allclose(estimates[0], pooled, rtol=0, atol=1e-12)
    assert abs(_late_median(estimates[0]) - 0.5) < 1e-9


def test_lock_free_run_measures_more_than_the_algorithmic_momentum(real_runs) -> None:
    """M = 2 on this machine's cores: each worker's meter reads above μ = 0.5 by at least 0.1
    (1 - (1 - μ)/M = 0.75 predicted; the committed runs read 0.73 to 0.76)."""
    run = real_runs[2]
    assert not run.diverged and not run.timed_out
    assert set(np.unique(run.trace.writer)) == {0, 1}
    _, estimates = meter_total_momentum(run, every=10)
    for worker in range(2):
        assert _late_median(estimates[worker]) > 0.6, worker


def test_the_meter_needs_recorded_reads(real_runs) -> None:
    model = TorchCNNModel(DigitsCNN(eval_size=50))
    run = hogwild(model, SharedHeavyBall(0.05), 1, 5, rng=0, start_method="forkserver")
    with pytest.raises(ValueError, match="needs a run made with record_reads=True"):
        meter_total_momentum(run)


# ------------------------------------------------------------------------------------------ data
def test_the_measurement_files_are_those_their_readme_lists() -> None:
    listed = dict(
        re.findall(r"^- `(cnn_[\w.]*)` ([0-9a-f]{64})$", (DATA / "README.md").read_text(), re.M)
    )
    assert set(listed) == {p.name for p in DATA.glob("cnn_*")} == set(FILES)
    for name, digest in listed.items():
        assert hashlib.sha256((DATA / name).read_bytes()).hexdigest() == digest, name


def test_the_committed_runs_are_what_they_say() -> None:
    metadata, runs = load_cnn_metadata(), load_cnn_runs()
    settings = metadata["settings"]
    assert metadata["workers"] == list(RECORDING["workers"])
    assert settings["updates"] == RECORDING["updates"] and settings["lr"] == RECORDING["lr"]
    assert len(runs) == len(metadata["workers"]) * len(settings["momenta"]) * settings["runs"]
    assert (runs["updates"] == settings["updates"]).all()
    assert (runs["oversubscribed"] == (runs["workers"] > runs["cores"])).all()
    assert not runs["diverged"].any() and not runs["timed_out"].any()


def test_the_replay_holds_the_runs_against_the_prediction() -> None:
    """The replay's table: per M, μ and estimator, the median over runs inside its interval; the
    synchronous runs read μ (within 1e-6), M = 2 reads within 0.05 of 1 - (1 - μ)/2, and the
    oversubscribed rows are those with more workers than cores. The same seed, the same table."""
    result = cnn_real_asynchrony(rng=0)
    data = result.data
    metadata = load_cnn_metadata()
    cases = len(metadata["workers"]) * len(metadata["settings"]["momenta"]) * len(ESTIMATORS)
    assert len(data) == cases and set(data["estimator"]) == set(ESTIMATORS)
    assert ((data["low"] <= data["median"]) & (data["median"] <= data["high"])).all()
    np.testing.assert_allclose(data["predicted"], 1 - (1 - data["momentum"]) / data["workers"])
    assert (data["oversubscribed"] == (data["workers"] > metadata["cores"])).all()
    sync = data[data["workers"] == 1]
    np.testing.assert_allclose(sync["median"], sync["momentum"], rtol=0, atol=1e-6)
    two = data[data["workers"] == 2]
    np.testing.assert_allclose(two["median"], two["predicted"], rtol=0, atol=0.05)
    runs = result.raw["runs"]
    np.testing.assert_allclose(runs["gap"], runs["meter_total_momentum"] - runs["momentum"])
    assert "not reproducible" in result.config["note"]
    assert cnn_real_asynchrony(rng=0).data.equals(data)
