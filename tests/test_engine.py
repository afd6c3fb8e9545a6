"""The stale-gradient engine: batching, exact recursions, the expected-dynamics mode, divergence."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from asyncsim._rng import SeedRecord
from asyncsim.cluster import ClusterConfig, simulate
from asyncsim.engine import History, run
from asyncsim.measure import contraction_rate, iterations_to_target
from asyncsim.optim import adam, chain, heavy_ball, nesterov, scale, sgd
from asyncsim.problems import (
    DigitsMLP,
    LeastSquares,
    LogisticRegression,
    NoisyQuadratic,
    make_problem,
)
from asyncsim.trace import StalenessLaw, Trace

SEEDS = [11, 12, 13, 14]


# ------------------------------------------------------------------------------------------ batching
@pytest.mark.parametrize(
    "problem",
    [make_problem("nq50"), NoisyQuadratic(np.logspace(0, -1, 6), noise=0.1, rotation=1)],
    ids=["diagonal", "dense"],
)
def test_batch_equals_single_runs_with_mixed_traces(problem) -> None:
    traces = [Trace.geometric(m, 300, rng=m) for m in (1, 2, 4, 8)]
    lrs, mus = np.array([0.05, 0.1, 0.2, 0.3]), np.array([0.9, 0.5, 0.0, -0.5])
    batch = run(problem, heavy_ball(lrs, mus), traces, 300, rng=SEEDS, record_every=10)
    for i in range(4):
        alone = run(
            problem, heavy_ball(lrs[i], mus[i]), traces[i], 300, rng=[SEEDS[i]], record_every=10
        )
        # atol: losses near zero are compared absolutely at 1e-15 of the initial loss
        np.testing.assert_allclose(batch.loss[:, i], alone.loss[:, 0], rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(
            batch.final_params[i], alone.final_params[0], rtol=1e-12, atol=1e-15
        )


def test_batch_equals_single_runs_on_the_mlp() -> None:
    mlp = DigitsMLP(hidden=8)
    trace = Trace.geometric(4, 60, rng=0)
    batch = run(mlp, heavy_ball([0.1, 0.3], [0.5, 0.0]), trace, 60, rng=SEEDS[:2], record_every=20)
    for i, (lr, mu) in enumerate([(0.1, 0.5), (0.3, 0.0)]):
        alone = run(mlp, heavy_ball(lr, mu), trace, 60, rng=[SEEDS[i]], record_every=20)
        # batched and single matrix products may round differently: rtol 1e-12, atol 1e-14
        np.testing.assert_allclose(
            batch.final_params[i], alone.final_params[0], rtol=1e-12, atol=1e-14
        )


def test_same_seed_same_history_and_different_seed_differs() -> None:
    nq = make_problem("nq50")
    trace = Trace.geometric(4, 200, rng=1)
    a = run(nq, sgd(0.1), trace, 200, rng=5, batch=2)
    b = run(nq, sgd(0.1), trace, 200, rng=5, batch=2)
    c = run(nq, sgd(0.1), trace, 200, rng=6, batch=2)
    np.testing.assert_array_equal(a.loss, b.loss)
    assert not np.array_equal(a.loss, c.loss)
    assert not np.array_equal(a.loss[:, 0], a.loss[:, 1])  # configurations draw independent noise


def test_seed_records_each_configurations_stream() -> None:
    nq = make_problem("nq50")
    trace = Trace.geometric(4, 100, rng=1)
    hist = run(nq, sgd(0.1), trace, 100, rng=5, batch=3)
    assert hist.seed == (SeedRecord(5, (0,)), SeedRecord(5, (1,)), SeedRecord(5, (2,)))
    # configuration b of a batch is the run alone on its recorded stream, keyed by value
    alone = run(nq, sgd(0.1), trace, 100, rng=[hist.seed[1].sequence()])
    np.testing.assert_array_equal(alone.loss[:, 0], hist.loss[:, 1])
    assert run(nq, sgd(0.1), trace, 10, rng=[7, 8]).seed == (SeedRecord(7), SeedRecord(8))


@pytest.mark.parametrize(
    "rng", [None, np.random.default_rng(3), [None, np.random.default_rng(4)]], ids=repr
)
def test_fresh_and_generator_seeds_are_recorded_and_make_the_run_again(rng) -> None:
    nq = make_problem("nq50")
    trace = Trace.geometric(4, 100, rng=1)
    first = run(nq, sgd(0.1), trace, 100, rng=rng, batch=2)
    second = run(nq, sgd(0.1), trace, 100, rng=rng, batch=2)
    assert not np.array_equal(first.loss, second.loss)  # new entropy, or new draws of a generator
    again = run(nq, sgd(0.1), trace, 100, rng=[s.sequence() for s in first.seed])
    np.testing.assert_array_equal(again.loss, first.loss)


# ------------------------------------------------------------------------------------------ record
def test_history_config_says_what_made_the_run() -> None:
    trace = simulate(ClusterConfig(2), 120, rng=4)
    hist = run(
        make_problem("nq50"),
        chain(scale(1.0), heavy_ball([0.05, 0.1], 0.5)),
        trace,
        100,
        rng=3,
        record_every=50,
        stop_at=1e-9,
    )
    config = hist.config
    assert config["problem"]["name"] == "nq50" and config["problem"]["class"] == "NoisyQuadratic"
    assert config["problem"]["parameters"]["noise"] == 0.03
    assert config["problem"]["parameters"]["curvatures"]["shape"] == [50]
    assert config["transform"] == {
        "name": "chain(scale, heavy_ball)",
        "hyperparameters": {"0.factor": 1.0, "1.lr": [0.05, 0.1], "1.momentum": 0.5},
        "batch": 2,
    }
    assert config["staleness"] == {
        "kind": "trace",
        "traces": [{"length": 120, "mean": trace.mean, "config": repr(trace.config), "seed": "4"}],
    }
    assert config["steps"] == 100
    assert config["options"] == {
        "batch": 2,
        "record_every": 50,
        "record_params": False,
        "divergence_factor": 1e6,
        "check_every": 64,
        "estimate_momentum": True,
        "momentum_beta": 0.99,
        "stop_at": 1e-9,
    }
    law = run(make_problem("q10"), adam(0.01), StalenessLaw.geometric(2), 10)
    assert law.config["staleness"]["kind"] == "law"
    assert law.config["staleness"]["laws"][0]["mean"] == pytest.approx(1.0)
    assert law.config["transform"]["hyperparameters"] == {
        "lr": 0.01,
        "b1": 0.9,
        "b2": 0.999,
        "eps": 1e-8,
    }
    assert run(make_problem("q10"), sgd(0.1), None, 5).config["staleness"] == {"kind": "none"}


def test_history_saved_and_loaded_says_what_made_it(tmp_path) -> None:
    trace = simulate(ClusterConfig(2), 200, rng=4)
    hist = run(
        make_problem("nq50"),
        heavy_ball([0.05, 0.1], 0.5),
        trace,
        200,
        rng=3,
        record_every=50,
        record_params=True,
    )
    loaded = History.load(hist.save(tmp_path / "run.npz"))
    for name in ("steps", "loss", "distance", "params", "time", "diverged", "diverged_at"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(hist, name))
        assert getattr(loaded, name).dtype == getattr(hist, name).dtype
    np.testing.assert_array_equal(loaded.final_params, hist.final_params)
    assert loaded.values.keys() == hist.values.keys() == {"lr", "momentum", "total_momentum"}
    for name, values in hist.values.items():
        np.testing.assert_array_equal(loaded[name], values)
    assert loaded.seed == hist.seed == (SeedRecord(3, (0,)), SeedRecord(3, (1,)))
    assert loaded.problem == "nq50" and loaded.config == hist.config
    # the record is enough to make the run again
    config = loaded.config
    again = run(
        make_problem(config["problem"]["name"]),
        heavy_ball(**config["transform"]["hyperparameters"]),
        simulate(
            ClusterConfig(2),
            config["staleness"]["traces"][0]["length"],
            rng=SeedRecord.parse(config["staleness"]["traces"][0]["seed"]).sequence(),
        ),
        config["steps"],
        rng=[s.sequence() for s in loaded.seed],
        record_every=config["options"]["record_every"],
    )
    np.testing.assert_array_equal(again.loss, hist.loss)


def test_history_without_distance_or_params_round_trips(tmp_path) -> None:
    hist = run(DigitsMLP(hidden=2), sgd(0.1), None, 4, rng=0)
    loaded = History.load(hist.save(tmp_path / "mlp.npz"))
    assert loaded.distance is None and loaded.params is None
    np.testing.assert_array_equal(loaded.loss, hist.loss)
    assert loaded.config == hist.config


def test_history_load_rejects_what_is_not_a_history(tmp_path) -> None:
    hist = run(make_problem("q10"), sgd(0.1), None, 4, record_params=True)
    with pytest.raises(ValueError, match=r"path must end in .npz"):
        hist.save(tmp_path / "run.csv")
    path = hist.save(tmp_path / "run.npz")
    arrays = dict(np.load(path))
    del arrays["loss"]
    np.savez(tmp_path / "missing.npz", **arrays)
    with pytest.raises(ValueError, match=r"missing.npz is not a saved History: it lacks loss"):
        History.load(tmp_path / "missing.npz")
    arrays = dict(np.load(path))
    arrays["params"] = arrays["params"][:, :, :3]
    np.savez(tmp_path / "shape.npz", **arrays)
    with pytest.raises(ValueError, match=r"shape.npz is not a valid History: params has shape"):
        History.load(tmp_path / "shape.npz")
    arrays = dict(np.load(path))
    arrays["seed"] = np.array(["3/x"])
    np.savez(tmp_path / "seed.npz", **arrays)
    with pytest.raises(ValueError, match=r"seed.npz is not a valid History: seed record"):
        History.load(tmp_path / "seed.npz")
    Trace.from_staleness([0, 1]).save(tmp_path / "trace.npz")
    with pytest.raises(ValueError, match=r"trace.npz is not a saved History: it lacks format"):
        History.load(tmp_path / "trace.npz")
    (tmp_path / "text.npz").write_text("steps,loss\n")
    with pytest.raises(ValueError, match=r"text.npz is not an .npz archive"):
        History.load(tmp_path / "text.npz")
    with pytest.raises(FileNotFoundError):
        History.load(tmp_path / "absent.npz")


# ------------------------------------------------------------------------------------------ heavy ball
def test_zero_staleness_reproduces_heavy_ball() -> None:
    h = np.logspace(0, -2, 10)
    q = NoisyQuadratic(h)
    lr, mu, steps = 0.5, 0.7, 200
    hist = run(q, heavy_ball(lr, mu), None, steps, record_every=1, record_params=True)
    w_prev, w = np.ones(10), np.ones(10)
    for t in range(steps):
        w, w_prev = w - lr * h * w + mu * (w - w_prev), w
        np.testing.assert_allclose(hist.params[t + 1, 0], w, rtol=1e-12)


@pytest.mark.parametrize(("mu", "kappa"), [(0.25, 5.0), (0.5, 20.0), (0.81, 100.0)])
def test_robust_region_contracts_at_root_mu(mu: float, kappa: float) -> None:
    h = np.logspace(0, -np.log10(kappa), 10)
    low, high = (1 - np.sqrt(mu)) ** 2 / h.min(), (1 + np.sqrt(mu)) ** 2 / h.max()
    if not 1.1 * low < high / 1.1:
        pytest.fail("test setup: the region is too narrow for a step 10% inside both bounds")
    lr = np.sqrt(1.1 * low * high / 1.1)  # geometric middle, at least 10% inside both
    steps = 400
    hist = run(NoisyQuadratic(h), heavy_ball(lr, mu), None, steps, record_every=1)
    rate = contraction_rate(hist.distance[50:], hist.steps[50:])
    np.testing.assert_allclose(rate, np.sqrt(mu), rtol=0.02)


# ------------------------------------------------------------------------------------------ expected
@pytest.mark.parametrize("m", [2, 4, 8])
@pytest.mark.parametrize("mu_l", [0.0, 0.5, -0.3])
def test_expected_mode_is_the_momentum_form(m: int, mu_l: float) -> None:
    q = make_problem("q10", kappa=5)
    lr, steps, mu_s = 0.1, 120, 1 - 1 / m  # the iterates shrink by at most ~1e3 over the run
    hist = run(q, heavy_ball(lr, mu_l), StalenessLaw.geometric(m), steps, record_params=True)
    w = hist.params[:, 0]
    h = q.curvatures
    # theory/README.md §2, exact for t >= 1 with w_{-1} = w_0
    for t in range(1, steps):
        older = w[t - 2] if t >= 2 else w[0]
        step = (mu_l + mu_s) * (w[t] - w[t - 1]) - mu_l * mu_s * (w[t - 1] - older)
        step -= (1 - mu_s) * lr * h * w[t]
        # rtol 1e-10 norm-wise: single coordinates cross zero, where elementwise rtol is meaningless
        error = np.linalg.norm(w[t + 1] - (w[t] + step))
        assert error <= 1e-10 * np.linalg.norm(w[t + 1]), (t, error)


@pytest.mark.slow
@pytest.mark.parametrize("m", [2, 4, 8])
def test_mean_of_realized_runs_follows_the_expected_dynamics(m: int) -> None:
    q = make_problem("q10", kappa=5)
    n_runs, steps, lr, mu = 1000, 60, 0.1, 0.3
    traces = [Trace.geometric(m, steps, rng=seed) for seed in range(n_runs)]
    realized = run(
        q, heavy_ball(lr, mu), traces, steps, record_params=True, estimate_momentum=False
    )
    expected = run(q, heavy_ball(lr, mu), StalenessLaw.geometric(m), steps, record_params=True)
    mean = realized.params.mean(axis=1)
    stderr = realized.params.std(axis=1) / np.sqrt(n_runs)
    gap = np.abs(mean - expected.params[:, 0])
    # 5 standard errors per coordinate and step, plus rounding
    assert np.all(gap <= 5 * stderr + 1e-12), float(np.max(gap / (stderr + 1e-300)))


def test_geometric_law_truncation() -> None:
    law = StalenessLaw.geometric(16)
    assert (15 / 16) ** law.pmf.size < 1e-12 <= (15 / 16) ** (law.pmf.size - 1)
    np.testing.assert_allclose(law.pmf.sum(), 1.0, rtol=1e-15)
    assert StalenessLaw.geometric(1).pmf.tolist() == [1.0]


# ------------------------------------------------------------------------------------------ estimator
def test_estimator_with_one_writer_returns_mu() -> None:
    trace = simulate(ClusterConfig(1), 400, rng=0)
    mus = np.array([-0.5, 0.0, 0.5, 0.9])
    hist = run(make_problem("nq50"), heavy_ball(0.05, mus), trace, 400, rng=0, record_every=50)
    np.testing.assert_allclose(hist["total_momentum"][1:], np.tile(mus, (8, 1)), atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("m", [2, 4, 8])
def test_estimator_measures_implicit_momentum(m: int) -> None:
    """At the noise floor the worker-local estimator reads 1 - (1 - μ)/M (theory/README.md §9)."""
    steps = 30000
    trace = simulate(ClusterConfig(m), steps, rng=m)
    mus = np.array([-0.5, 0.0, 0.5])
    hist = run(make_problem("nq50"), heavy_ball(0.05, mus), trace, steps, rng=1, record_every=100)
    measured = np.median(hist["total_momentum"][100:], axis=0)  # after 10^4 updates of burn-in
    # tolerance 0.03: the spec's own measurement at M = 4 reads 0.005-0.01 low
    np.testing.assert_allclose(measured, 1 - (1 - mus) / m, atol=0.03)


def test_estimator_in_group_mode_reads_the_group() -> None:
    trace = simulate(ClusterConfig(4, mode="sync"), 300, rng=0)
    hist = run(make_problem("nq50"), heavy_ball(0.05, 0.6), trace, 300, rng=0, record_every=100)
    np.testing.assert_allclose(hist["total_momentum"][1:, 0], 0.6, atol=1e-6)


# ------------------------------------------------------------------------------------------ convergence
def _data_problems():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 8))
    w_true = rng.standard_normal(8)
    return {
        "least-squares": LeastSquares(x, x @ w_true + 0.01 * rng.standard_normal(200)),
        "logistic": LogisticRegression(x, (x @ w_true > 0).astype(float), l2=0.01),
    }


CONVERGENCE = {
    # problem: (steps, target loss (None: the problem's own), {optimizer: learning rate}); the rates sit
    # inside the range that reaches the target both without staleness and with M = 4 (scanned on a
    # factor-2 grid), so the matrix tests the engine, not the tuning.
    "nq50": (3000, None, {"sgd": 0.125, "heavy_ball": 0.0625, "nesterov": 0.0625, "adam": 0.004}),
    "q10": (1000, 1e-6, {"sgd": 0.25, "heavy_ball": 0.125, "nesterov": 0.125, "adam": 0.0156}),
    "least-squares": (
        1500,
        None,
        {"sgd": 0.03, "heavy_ball": 0.015, "nesterov": 0.015, "adam": 0.008},
    ),
    # separable data with l2 = 0.01: the regularized optimum is about 0.232
    "logistic": (
        1500,
        0.25,
        {"sgd": 0.125, "heavy_ball": 0.0625, "nesterov": 0.0625, "adam": 0.008},
    ),
    "digits-mlp": (1500, 0.1, {"sgd": 0.25, "heavy_ball": 0.125, "nesterov": 0.125, "adam": 0.008}),
}


def _optimizer(name: str, lr: float):
    return {
        "sgd": lambda: chain(scale(1.0), sgd(lr)),
        "heavy_ball": lambda: heavy_ball(lr, 0.5),
        "nesterov": lambda: nesterov(lr, 0.5),
        "adam": lambda: adam(lr),
    }[name]()


@pytest.mark.parametrize("staleness", [1, 4], ids=["no-staleness", "geometric-M4"])
@pytest.mark.parametrize("name", list(CONVERGENCE))
def test_convergence_matrix(name: str, staleness: int) -> None:
    steps, target, lrs = CONVERGENCE[name]
    problem = (
        _data_problems()[name] if name in ("least-squares", "logistic") else make_problem(name)
    )
    target = problem.target if target is None else target
    trace = Trace.geometric(staleness, steps, rng=0)
    for opt, lr in lrs.items():
        hist = run(problem, _optimizer(opt, lr), trace, steps, rng=1, record_every=50)
        assert not hist.diverged[0], opt
        final = hist.loss[-5:, 0].mean()
        assert final <= target, f"{opt} on {name}: {final:.3g} > {target:.3g}"


# ------------------------------------------------------------------------------------------ divergence
@pytest.mark.parametrize("dense", [False, True], ids=["elementwise", "dense"])
def test_divergent_configurations_are_flagged_and_isolated(dense: bool) -> None:
    problem = make_problem("nq50", rotation=2 if dense else None)
    trace = Trace.geometric(4, 500, rng=3)
    lrs = np.array([0.02, 5.0, 0.05, 50.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        grid = run(problem, heavy_ball(lrs, 0.5), trace, 500, rng=SEEDS, record_every=10)
    assert grid.diverged.tolist() == [False, True, False, True]
    assert (grid.diverged_at[[1, 3]] > 0).all()
    its = iterations_to_target(grid, 1e3 * problem.target)
    assert np.isinf(its[[1, 3]]).all() and np.isfinite(its[[0, 2]]).all()
    for i in (0, 2):
        alone = run(problem, heavy_ball(lrs[i], 0.5), trace, 500, rng=[SEEDS[i]], record_every=10)
        if dense:
            np.testing.assert_allclose(grid.loss[:, i], alone.loss[:, 0], rtol=1e-12, atol=1e-15)
        else:
            np.testing.assert_array_equal(grid.loss[:, i], alone.loss[:, 0])
    # a frozen configuration stays where it was detected
    frozen = grid.diverged_at[1] // 10
    assert np.all(grid.loss[frozen:, 1] == grid.loss[frozen, 1])


# ------------------------------------------------------------------------------------------ bad input
def test_bad_input() -> None:
    nq = make_problem("nq50")
    trace = Trace.geometric(2, 50, rng=0)
    with pytest.raises(ValueError, match="steps must be in"):
        run(nq, sgd(0.1), trace, 0)
    with pytest.raises(ValueError, match=r"steps must be <= the trace length \(50\), got 60"):
        run(nq, sgd(0.1), trace, 60)
    with pytest.raises(ValueError, match="batch sizes disagree"):
        run(nq, sgd([0.1, 0.2]), [trace] * 3, 10)
    with pytest.raises(ValueError, match=r"batch sizes disagree: {.rng.: 3"):
        run(nq, sgd([0.1, 0.2]), trace, 10, rng=[1, 2, 3])
    with pytest.raises(ValueError, match=r"momentum must be finite and in \(-1, 1\)"):
        run(nq, heavy_ball(0.1, 1.2), trace, 10)
    with pytest.raises(ValueError, match="lr"):
        run(nq, sgd(0.0), trace, 10)
    with pytest.raises(ValueError, match="affine gradient"):
        run(DigitsMLP(hidden=2), sgd(0.1), StalenessLaw.geometric(2), 10)
    with pytest.raises(TypeError, match="GradientTransformation"):
        run(nq, lambda g: g, trace, 10)
    with pytest.raises(ValueError, match="record_every must be in"):
        run(nq, sgd(0.1), trace, 10, record_every=0)
    with pytest.raises(ValueError, match="pmf must sum to 1"):
        StalenessLaw(np.array([0.5, 0.4]))


@pytest.mark.parametrize(
    ("rotation", "optimizer"), [(None, "heavy_ball"), (3, "heavy_ball"), (3, "adam")]
)
def test_stop_each_leaves_every_configuration_its_history_up_to_its_stop(rotation, optimizer):
    """Own noise streams, one trace per configuration: with ``stop_each``, each configuration's
    rows equal the run without it up to its own stop (its first recorded loss at the target, or its
    divergence), and repeat that row after it (diagonal: the fused kernel; dense: the NumPy loop
    with the fused momentum update, or Adam's update)."""
    problem = NoisyQuadratic(np.logspace(0, -2, 20), noise=0.01, rotation=rotation)
    lrs = [0.02, 0.3, 1.0, 5.0]
    transform = heavy_ball(lrs, 0.5) if optimizer == "heavy_ball" else adam([0.003, 0.03, 0.1, 3.0])
    traces = [Trace.geometric(m, 600, rng=m) for m in (1, 2, 4, 8)]
    target = 1e-3 * float(problem.loss(problem.init_params(1))[0])
    common = {"rng": 7, "record_every": 5, "stop_at": target}
    each = run(problem, transform, traces, 600, stop_each=True, **common)
    whole = run(problem, transform, traces, 600, **common)
    reached = whole.loss <= target
    stop_row = np.where(
        reached.any(axis=0),
        reached.argmax(axis=0),
        np.searchsorted(whole.steps, np.where(whole.diverged, whole.diverged_at, 10**9)),
    )
    assert each.steps.tolist() == whole.steps.tolist()
    assert reached.any(axis=0).any() and (stop_row < len(whole.steps) - 1).any()
    # a product with the dense Hessian over fewer rows may sum in another order: equal to rounding
    rtol = 0.0 if rotation is None else 1e-12
    for b, row in enumerate(stop_row):
        end = min(row, len(whole.steps) - 1)
        np.testing.assert_allclose(each.loss[: end + 1, b], whole.loss[: end + 1, b], rtol=rtol)
        np.testing.assert_array_equal(each.loss[end:, b], each.loss[end, b])
        for name, values in each.values.items():
            np.testing.assert_allclose(
                values[: end + 1, b], whole.values[name][: end + 1, b], rtol=rtol
            )
    np.testing.assert_array_equal(each.diverged, whole.diverged & ~reached.any(axis=0))
