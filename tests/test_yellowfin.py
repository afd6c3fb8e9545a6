"""YellowFin: the official variant against the shipped optimizer's traces, SingleStep, the clipping
heuristics, the failure flags (zero gradients, a loss blow-up), the robust-region promise on nq50, the
closed loop under asynchrony, and the old name (deprecated). The comparisons with other settings are in
test_comparisons.py; the PyTorch and optax versions are held against this one in test_torch.py and
test_optax.py.

Numbers quoted in comments were measured with the seeds used here; tolerances are stated per assert.
"""

from __future__ import annotations

import functools
import importlib
import json
import os
import types

import numpy as np
import pytest

import asyncsim
import asyncsim.yellowfin as yf
from asyncsim.cluster import ClusterConfig, simulate
from asyncsim.engine import loss_blew_up, run
from asyncsim.measure import MomentumEstimate, momentum_estimate
from asyncsim.optim import record_of
from asyncsim.problems import make_problem
from asyncsim.yellowfin import (
    EPS,
    _cubic_root,
    no_signal,
    open_loop,
    single_step,
    yellowfin_tuner,
)
from asyncsim.yellowfin import yellowfin as deprecated_yellowfin

#: The closed-loop experiments start from the shipped code's α_0 = 1e-4 (now the default of both
#: variants): the paper's α_0 = 1 diverges under asynchrony
#: (test_paper_initial_step_diverges_under_asynchrony).
ASYNC_START = {"lr_init": 1e-4}


# ------------------------------------------------------------------------------------------ SingleStep
@pytest.mark.parametrize(
    ("inputs", "mu", "lr"),
    [
        ((1.0, 4.0, 1.0, 1.0), 0.1683014, 0.3478104),
        ((1.0, 100.0, 1.0, 1.0), 0.6694215, 0.0330579),  # the condition-number bound binds
        ((2.0, 8.0, 0.5, 0.25), 0.25, 0.125),  # p = 1/4, r = 1/2
    ],
)
def test_single_step_matches_theory_examples(inputs, mu, lr) -> None:
    got_mu, got_lr, _, _ = single_step(*inputs)
    # theory/README.md §7 is ε-free; the tuner's ε = 1e-6 guards move the results by ~1e-6
    assert abs(float(got_mu) - mu) < 1e-5
    assert abs(float(got_lr) - lr) < 1e-5 * lr + 1e-6


def test_cubic_root_is_accurate_for_every_p() -> None:
    """Against vectorized bisection (1100 halvings, to the last bit) on p from 1e-40 to 1e40,
    through p ~ ε³ = 1e-18 where the shipped guarded Cardano divides by about zero."""
    p = np.concatenate([np.logspace(-40, 40, 600), [0.99e-18, 1e-18, 1.01e-18]])
    low, high = np.zeros_like(p), np.ones_like(p)
    for _ in range(1100):
        mid = 0.5 * (low + high)
        above = (1 - mid) ** 3 - p * mid > 0
        low, high = np.where(above, mid, low), np.where(above, high, mid)
    r = _cubic_root(p)
    assert np.max(np.abs(r - low) / low) < 1e-11  # r relative (Cardano alone: 1% at p = 1e4)
    wide = p >= 1e-12  # below, 1 - r < 1e-4 is itself rounded in r (float64 spacing near 1)
    assert np.max(np.abs(r - low)[wide] / (1 - low[wide])) < 1e-11  # and 1 - r relative, hence α
    assert np.max(np.abs(r - low)[~wide]) < 4.5e-16  # there: within two float64 spacings of 1


def test_cubic_root_limits() -> None:
    """p = 0 (an underflowed p) has the root 1, p = ∞ (an overflowed one) 0, NaN stays NaN; p so
    small that 1 - p^(1/3) rounds to 1 gives 1 (the Newton step at r = 1 would give 0); no warning."""
    r = _cubic_root(np.array([0.0, 1e-300, 1e-60, np.inf, np.nan]))
    np.testing.assert_array_equal(r, [1.0, 1.0, 1.0, 0.0, np.nan])


def _shipped_cubic_root(p: float) -> float:
    """The shipped closed form, its ε guard included (theory/README.md §8, step 5)."""
    u = np.cbrt((-np.sqrt(p * p + 4 * p**3 / 27) - p) / 2)
    return float(u - p / (3 * (u + EPS)) + 1)


def test_single_step_at_the_statistics_floor_is_defined_and_flagged() -> None:
    """Zero gradients leave h_min = h_max = C = ε and D = 0, so p = ε³: the shipped closed form's
    guard u + ε vanishes there (its root: about -1048). Here the result is SingleStep's own solution,
    μ = r² with (1 - r)³ = ε³ r, α = (1 - r)²/(2ε), without warnings, and no_signal flags it."""
    p = EPS**3
    assert _shipped_cubic_root(p) < -100  # the failure the flag is about
    mu, lr, r, _ = single_step(EPS, EPS, EPS, 0.0)
    assert 0 < r < 1 and abs((1 - r) ** 3 - p * r) < 1e-9 * p  # 1 - r is rounded in r
    np.testing.assert_allclose([mu, lr], [r * r, (1 - r) ** 2 / (2 * EPS)], rtol=1e-9)
    np.testing.assert_allclose([mu, lr], [1 - 2e-6, 5e-7], rtol=1e-5)
    assert no_signal(EPS) and no_signal(np.array([0.0, 2 * EPS])).all()
    assert not no_signal(np.array([2.0000001 * EPS, 8.0, np.nan])).any()


# ------------------------------------------------------------------------------------------ reference
@pytest.fixture(scope="module")
def reference(data_file):
    return json.loads(data_file("yf_official_traces.json").read_text())


def _case(reference, name):
    case = next(c for c in reference["cases"] if c["name"] == name)
    trace = case["trace"]

    def column(key):
        return np.array([np.nan if v is None else v for v in trace[key]], dtype=np.float64)

    return case, trace, column


CASES = ["quad10_logspace_noclip", "quad2_wide"]


# ------------------------------------------------------------------------------- three implementations
def _extra(module: str, extra: str) -> types.ModuleType:
    """The module, or a skip where its extra is not installed, outside CI only (CI installs every
    extra: there a missing one fails)."""
    if os.environ.get("CI"):
        return importlib.import_module(module)
    return pytest.importorskip(
        module, reason=f"needs the {extra} extra: pip install -e '.[{extra}]'"
    )


def _numpy_stepper(options: dict, x0: np.ndarray):
    """``step(x, grad) -> (next x, record)`` of :func:`yellowfin_tuner` (float64) from ``x0``."""
    transform = yellowfin_tuner(**options)
    state = transform.init(np.asarray(x0, dtype=np.float64)[None])

    def step(x, grad):
        nonlocal state
        x = np.asarray(x, dtype=np.float64)[None]
        updates, state = transform.update(np.asarray(grad, np.float64)[None], state, x, None)
        return (x + updates)[0], {k: float(v[0]) for k, v in record_of(state).items()}

    return step


def _framework_options(options: dict) -> tuple[float, float, dict]:
    """(α₀, μ₀, the rest) of :func:`yellowfin_tuner`'s options."""
    rest = dict(options)
    return rest.pop("lr_init", 1e-4), rest.pop("momentum_init", 0.0), rest


def _torch_stepper(options: dict, x0: np.ndarray):
    """The same for :class:`asyncsim.torch.YellowFin` on one parameter of ``x0``'s dtype."""
    torch = _extra("torch", "torch")
    from asyncsim.torch import YellowFin

    lr, momentum, rest = _framework_options(options)
    weight = torch.nn.Parameter(torch.from_numpy(x0.copy()))
    optimizer = YellowFin([weight], lr, momentum, **rest)

    def step(x, grad):
        with torch.no_grad():
            weight.copy_(torch.from_numpy(np.asarray(x, x0.dtype)))
        weight.grad = torch.from_numpy(np.asarray(grad, x0.dtype).copy())
        optimizer.step()
        return weight.detach().numpy().astype(np.float64), optimizer.record()[0]

    return step


def _optax_stepper(options: dict, x0: np.ndarray):
    """The same for :func:`asyncsim.optax.yellowfin` (jitted, with 64-bit scalars)."""
    jax = _extra("jax", "jax")
    _extra("optax", "jax")
    transform, update = _optax_compiled(tuple(sorted(options.items())))
    with jax.enable_x64(True):
        state = transform.init(jax.numpy.asarray(x0))

    def step(x, grad):
        nonlocal state
        x = np.asarray(x, x0.dtype)
        with jax.enable_x64(True):
            updates, state = update(np.asarray(grad, x0.dtype), state, x)
            record = {k: float(v) for k, v in jax.device_get(state.record()).items()}
        return (x + np.asarray(updates)).astype(np.float64), record

    return step


@functools.cache
def _optax_compiled(options: tuple) -> tuple:
    """The transformation and its jitted update, once per option set (compiling is the slow part)."""
    import jax

    from asyncsim.optax import yellowfin

    lr, momentum, rest = _framework_options(dict(options))
    transform = yellowfin(lr, momentum, **rest)
    return transform, jax.jit(transform.update)


STEPPERS = {"numpy": _numpy_stepper, "torch": _torch_stepper, "optax": _optax_stepper}


def _drive_records(step, xs, grads) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Feed ``grads[t]`` at ``xs[t]`` (open loop): the records (T,) and the next parameters (T, d)."""
    out = [step(x, g) for x, g in zip(xs, grads, strict=False)]
    records = {k: np.array([r[k] for _, r in out], dtype=np.float64) for k in out[0][1]}
    return records, np.array([x for x, _ in out])


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("implementation", list(STEPPERS))
def test_official_variant_reproduces_the_shipped_optimizer_open_loop(
    reference, name, implementation
) -> None:
    """Fed the reference's parameters and gradients (float32, as recorded), every implementation
    reproduces each column within the file's recommended tolerances and every clip flag exactly;
    the torch and optax optimizers hold their parameters in float32, as the shipped code did."""
    case, trace, column = _case(reference, name)
    ctor = case["yf_constructor"]
    assert (ctor["lr"], ctor["mu"], ctor["beta"], ctor["curv_win_width"]) == (1e-4, 0.0, 0.999, 20)
    tol = reference["recommended_tolerances"]["open_loop"]
    steps = case["T"]
    x = np.array(trace["x"], dtype=np.float32)
    step = STEPPERS[implementation]({"variant": "official", "adapt_clip": ctor["adapt_clip"]}, x[0])
    mine, x_next = _drive_records(step, x[:steps], np.array(trace["grad_in"], dtype=np.float32))
    pairs_rel = {
        "h_min": "h_min",
        "h_max": "h_max",
        "dist_to_opt": "dist_to_opt",
        "lr_t": "lr_t",
        "lr": "lr_applied",
        "lr_smoothed": "lr_smoothed",
        "grad_norm_squared": "grad_norm_squared",
    }
    for key, ref in pairs_rel.items():
        np.testing.assert_allclose(mine[key], column(ref), rtol=tol["rel"][ref], err_msg=key)
    pairs_abs = {
        "mu_t": "mu_t",
        "momentum": "mu_applied",
        "mu_smoothed": "mu_smoothed",
        "cubic_root": "cubic_root",
    }
    for key, ref in pairs_abs.items():
        np.testing.assert_allclose(
            mine[key], column(ref), rtol=0, atol=tol["abs"][ref], err_msg=key
        )
    np.testing.assert_allclose(x_next, x[1:], rtol=0, atol=tol["abs"]["x_next"])
    # the variance is float32-limited in the reference: the file's own bound
    debias = 1 - 0.999 ** np.arange(1, steps + 1)
    bound = (
        1e-3 * np.abs(column("grad_var")) + 1e-5 * column("grad_norm_squared_avg_biased") / debias
    )
    assert (np.abs(mine["grad_var"] - column("grad_var")) <= bound).all()
    for flag in ("stat_protect_clip", "exploding_grad_clip", "catastrophic_lr_clamp"):
        np.testing.assert_array_equal(mine[flag].astype(bool), np.array(trace[flag]), err_msg=flag)
    assert mine["exploding_grad_clip"].sum() == case["summary"]["n_exploding_grad_clip"]
    assert not mine["diverged"].any() and not mine["no_signal"].any()


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("implementation", list(STEPPERS))
def test_official_variant_follows_the_shipped_optimizer_closed_loop(
    reference, name, implementation
) -> None:
    """On its own iterates (gradient ``float32(h x + noise[t])``, as the reference was made) every
    implementation stays within the file's closed-loop tolerance of the shipped trajectory, 1e-5."""
    case, trace, _ = _case(reference, name)
    tol = reference["recommended_tolerances"]["closed_loop"]["x_abs"]
    assert tol.startswith("1e-5 for") and name in tol
    h, noise = np.array(case["h"]), np.array(case["noise"]["array"])
    x = np.array(case["x0"], dtype=np.float32)
    step = STEPPERS[implementation](
        {"variant": "official", "adapt_clip": case["yf_constructor"]["adapt_clip"]}, x
    )
    path = [x.astype(np.float64)]
    for t in range(case["T"]):
        x, _ = step(x, (h * x.astype(np.float64) + noise[t]).astype(np.float32))
        x = x.astype(np.float32)
        path.append(x.astype(np.float64))
    np.testing.assert_allclose(np.array(path), np.array(trace["x"]), rtol=0, atol=1e-5)


AGREEMENT_OPTIONS = [
    {"variant": "paper"},
    {"variant": "official"},
    {"variant": "official", "target_momentum": 0.5, "beta": 0.99, "smoothing": True, "window": 5},
    {"variant": "paper", "lr_init": 0.01, "momentum_init": 0.3, "envelope": "log"},
]


@pytest.fixture(scope="module")
def noisy_quadratic_runs():
    """300 steps of each option set in float64 on a noisy quadratic (d = 10, curvatures 1 to 0.01,
    σ = 0.1), each implementation on its own iterates; computed once per implementation."""
    h = np.logspace(0, -2, 10)
    noise = 0.1 * np.random.default_rng(19).standard_normal((300, 10))

    def runs(implementation: str) -> list[tuple[np.ndarray, dict[str, np.ndarray]]]:
        out = []
        for options in AGREEMENT_OPTIONS:
            x = np.ones(10)
            step = STEPPERS[implementation](options, x)
            path, records = [x], []
            for t in range(300):
                x, record = step(x, h * x + noise[t])
                path.append(x)
                records.append(record)
            out.append((np.array(path), {k: np.array([r[k] for r in records]) for k in record}))
        return out

    return runs


@pytest.mark.parametrize("implementation", ["torch", "optax"])
def test_the_three_implementations_agree_in_float64(noisy_quadratic_runs, implementation) -> None:
    """torch and optax equal the NumPy tuner to 1e-10 over 300 steps of a noisy quadratic in
    float64, on their own iterates (so a difference would compound), for both variants, a fixed
    target and non-default options: parameters, every recorded value and every flag (measured:
    1e-13 at most)."""
    numpy_runs = noisy_quadratic_runs("numpy")
    for options, (path, records), (ref_path, ref) in zip(
        AGREEMENT_OPTIONS, noisy_quadratic_runs(implementation), numpy_runs, strict=True
    ):
        np.testing.assert_allclose(path, ref_path, rtol=1e-10, atol=0, err_msg=str(options))
        shared = records.keys() & ref.keys()  # NumPy has no blew_up, optax no closed loop
        closed_loop = {"mu_hat", "momentum_clamped"} if implementation == "optax" else set()
        assert shared == ref.keys() - closed_loop and len(shared) >= 19
        for key in shared:
            np.testing.assert_allclose(
                records[key], ref[key], rtol=1e-10, atol=1e-300, err_msg=f"{options} {key}"
            )


@pytest.mark.parametrize("name", CASES)
def test_paper_smoothing_matches_the_smoothed_columns(reference, name) -> None:
    """With smoothing on, the applied pair is the β-EMA of (α_t, μ_t) from (1e-4, 0) that the shipped
    code computes but does not apply: the reference's lr_smoothed / mu_smoothed columns."""
    case, trace, column = _case(reference, name)
    tol = reference["recommended_tolerances"]["open_loop"]
    steps = case["T"]
    transform = yellowfin_tuner(
        "official", smoothing=True, adapt_clip=case["yf_constructor"]["adapt_clip"]
    )
    records, _ = open_loop(transform, np.array(trace["x"])[:steps], np.array(trace["grad_in"]))
    np.testing.assert_allclose(
        records["lr"][:, 0], column("lr_smoothed"), rtol=tol["rel"]["lr_smoothed"]
    )
    np.testing.assert_allclose(
        records["momentum"][:, 0], column("mu_smoothed"), rtol=0, atol=tol["abs"]["mu_smoothed"]
    )


# ------------------------------------------------------------------------------------------ heuristics
def _drive(transform, grads):
    """Feed (T, d) gradients at w = 0 one step at a time; return the states before each step too."""
    grads = np.asarray(grads, dtype=np.float64)[:, None, :]
    state = transform.init(np.zeros(grads[0].shape))
    states, updates = [state], []
    for g in grads:
        velocity_before = state.velocity.copy()
        u, state = transform.update(g, state, np.zeros(g.shape), None)
        states.append(state)
        updates.append((u.copy(), velocity_before))
    return states, updates


def test_stat_protect_clip_bounds_what_enters_the_statistics() -> None:
    steady = [[1.0, 0.0]] * 5
    states, updates = _drive(yellowfin_tuner("official"), [*steady, [1e3, 0.0]])
    before, after = states[5], states[6]
    flags = [record_of(s)["stat_protect_clip"][0] for s in states[1:]]
    assert flags == [False] * 5 + [True]
    h_max = before.values["h_max"][0]
    bound = np.sqrt(100 * h_max) + EPS
    # ‖g‖ = 1000 is scaled by bound/(1000 + 1e-6) before the statistics
    expected = (1e3 * bound / (1e3 + 1e-6)) ** 2
    np.testing.assert_allclose(after.values["grad_norm_squared"][0], expected, rtol=1e-12)
    # the exploding-gradient clip then fires too (s ≥ h_max): the applied gradient has norm √h_max + ε
    assert after.values["exploding_grad_clip"][0]
    u, v_before = updates[5]
    applied = after.velocity[0] - after.values["momentum"][0] * v_before[0]
    norm = np.linalg.norm(applied)
    np.testing.assert_allclose(
        norm, (np.sqrt(h_max) + EPS) * np.sqrt(expected) / (np.sqrt(expected) + 1e-6)
    )
    np.testing.assert_allclose(u[0], -after.values["lr"][0] * after.velocity[0], rtol=1e-15)


def test_catastrophic_move_clamp_limits_the_step() -> None:
    # t = 0: α_0 ‖g‖ = 1e-4 · 2e6 = 200 ≥ 100, so α = 100/√(s + ε); μ_0 = 0 and no buffer: w ← w - α g
    states, updates = _drive(yellowfin_tuner("official"), [[2e6, 0.0], [1.0, 0.0]])
    first = states[1].values
    assert first["catastrophic_lr_clamp"][0] and not states[2].values["catastrophic_lr_clamp"][0]
    lr = 100 / np.sqrt(4e12 + EPS)
    np.testing.assert_allclose(first["lr"][0], lr, rtol=1e-15)
    np.testing.assert_allclose(updates[0][0][0], [-lr * 2e6, 0.0], rtol=1e-15)
    assert first["lr_t"][0] == 1e-4  # the tuner's own value is kept and recorded
    # off in the paper variant: the same gradient is applied with α_0 = 1
    paper = _drive(yellowfin_tuner("paper", lr_init=1e-4), [[2e6, 0.0]])[0][1].values
    assert not paper["catastrophic_lr_clamp"][0] and paper["lr"][0] == 1e-4


# ------------------------------------------------------------------------------------------ update forms
def test_heavy_ball_form_and_smoothing_rule() -> None:
    grads = np.random.default_rng(3).standard_normal((6, 2, 4))
    transform = yellowfin_tuner(beta=[0.9, 0.99])  # paper variant: heavy ball, smoothed pair
    records, x_next = open_loop(transform, np.zeros_like(grads), grads)
    updates = x_next  # fed at w = 0
    lr, mu = records["lr"], records["momentum"]
    np.testing.assert_array_equal(lr[0], [1e-4, 1e-4])  # t = 0 keeps (α_0, μ_0) = (1e-4, 0)
    np.testing.assert_allclose(updates[0], -1e-4 * grads[0], rtol=1e-15)
    for t in range(1, 6):
        expected = mu[t][:, None] * updates[t - 1] - lr[t][:, None] * grads[t]
        np.testing.assert_allclose(updates[t], expected, rtol=1e-12, atol=1e-15)
        beta = np.array([0.9, 0.99])
        np.testing.assert_allclose(
            lr[t], beta * lr[t - 1] + (1 - beta) * records["lr_t"][t], rtol=1e-14
        )
        np.testing.assert_allclose(
            mu[t], beta * mu[t - 1] + (1 - beta) * records["mu_t"][t], rtol=1e-14
        )


def test_linear_envelope_is_the_debiased_ema_of_the_window() -> None:
    s = np.array([4.0, 1.0, 9.0, 2.0, 16.0])
    grads = np.sqrt(s)[:, None, None] * np.ones((1, 1, 1))
    records, _ = open_loop(yellowfin_tuner(window=3, beta=0.5), np.zeros_like(grads), grads)
    window_min = [4, 1, 1, 1, 2]
    window_max = [4, 4, 9, 9, 16]
    ema_min = ema_max = 0.0
    for t in range(5):
        ema_min = 0.5 * ema_min + 0.5 * window_min[t]
        ema_max = 0.5 * ema_max + 0.5 * window_max[t]
        c = 1 - 0.5 ** (t + 1)
        np.testing.assert_allclose(records["h_min"][t, 0], ema_min / c, rtol=1e-15)
        np.testing.assert_allclose(records["h_max"][t, 0], ema_max / c, rtol=1e-15)


# ------------------------------------------------------------------------------------------ batching
def test_batch_equals_single_runs() -> None:
    nq = make_problem("nq50")
    trace = simulate(ClusterConfig(4), 300, rng=1)
    options = {
        "beta": [0.999, 0.99, 0.999],
        "gain": [0.05, 0.0, 0.1],
        "closed_loop": np.array([True, False, True]),
        "target_momentum": [0.9, np.nan, np.nan],
        "lr_init": [1e-4, 1e-3, 1e-4],
    }
    seeds = [21, 22, 23]
    batch = run(nq, yellowfin_tuner(**options), trace, 300, rng=seeds, record_every=50)
    for i in range(3):
        alone = yellowfin_tuner(**{k: np.asarray(v)[i] for k, v in options.items()})
        single = run(nq, alone, trace, 300, rng=[seeds[i]], record_every=50)
        # B = 1 takes the BLAS path, the batch NumPy's: rounding differs at 1e-16 per step
        np.testing.assert_allclose(
            batch.final_params[i], single.final_params[0], rtol=1e-9, atol=1e-12
        )
        for key in ("lr", "momentum", "h_min", "mu_hat"):
            np.testing.assert_allclose(batch[key][:, i], single[key][:, 0], rtol=1e-9, err_msg=key)


# ------------------------------------------------------------------------------------------ validation
@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"variant": "adam"}, "variant"),
        ({"beta": 1.0}, r"beta must be finite and in \[0, 1\)"),
        ({"beta": [0.9, -0.1]}, "beta"),
        ({"gain": -0.01}, r"gain must be finite and in \[0, inf\)"),
        ({"clamp": (0.5, -0.5)}, "clamp must satisfy -1 < low < high < 1"),
        ({"clamp": (-1.0, 0.9)}, r"clamp\[0\]"),
        ({"window": 0}, r"window must be in \[1, inf\)"),
        ({"estimator_beta": 1.0}, "estimator_beta"),
        ({"update_form": "nesterov"}, "update_form"),
        ({"envelope": "cubic"}, "envelope"),
        ({"target_momentum": 1.0}, "target_momentum"),
        ({"lr_init": 0.0}, "lr_init"),
        ({"momentum_init": -0.5}, "momentum_init"),
        ({"smoothing": "yes"}, "smoothing"),
        ({"closed_loop": True, "update_form": "framework"}, "closed_loop"),
        ({"closed_loop": 1}, "closed_loop"),
    ],
)
def test_bad_input_names_the_parameter(options, match) -> None:
    with pytest.raises(ValueError, match=match):
        yellowfin_tuner(**options)


def test_closed_loop_needs_writer_ids() -> None:
    with pytest.raises(ValueError, match="writer ids"):
        run(make_problem("nq50"), yellowfin_tuner(closed_loop=True), None, 5)


# ------------------------------------------------------------------------------------------ failures
def test_non_finite_statistic_flags_the_configuration() -> None:
    grads = np.ones((6, 2, 3))
    grads[3, 1, 0] = np.inf  # configuration 1 only, at step 3
    records, _ = open_loop(yellowfin_tuner("official"), np.zeros_like(grads), grads)
    np.testing.assert_array_equal(records["diverged"][:, 0], np.zeros(6))
    np.testing.assert_array_equal(records["diverged"][:, 1], [0, 0, 0, 1, 1, 1])  # sticky
    assert np.isfinite(records["lr"][:, 0]).all()


@pytest.mark.parametrize("variant", ["paper", "official"])
@pytest.mark.parametrize("size", [0.0, 1e-30, 1e-20])
def test_zero_gradients_give_a_defined_step_and_the_no_signal_flag(variant, size) -> None:
    """Zero and floating-point-zero gradients (‖g‖² below the ε ulp): the shipped closed form gave
    (in float64, here before) a root of -9.7 (μ = 94, α = 5.7e6) for 0 and 1e-30, and 1.0012
    (μ = 1.0025 > 1) for 1e-20; the shipped optimizer (float32) μ = 1.0000017; all unflagged. Here
    every step is the floor's SingleStep solution (μ ∈ [0, 1), α tiny), flagged, and not diverged."""
    grads = np.full((30, 2, 3), size)
    grads[:, 1] = 1.0  # an ordinary configuration beside it
    records, x_next = open_loop(yellowfin_tuner(variant), np.zeros_like(grads), grads)
    assert records["no_signal"][:, 0].all() and not records["no_signal"][:, 1].any()
    assert not records["diverged"].any()
    mu, lr, root = (records[k][1:, 0] for k in ("mu_t", "lr_t", "cubic_root"))
    assert ((root > 0) & (root < 1) & (mu >= 0) & (mu < 1)).all()
    assert (lr <= 5.1e-7).all() and (lr > 0).all()  # (1 - r)²/(2ε) ≈ 5e-7, times the slow start
    assert np.isfinite(x_next).all() and (records["momentum"][:, 0] < 1).all()


def test_paper_initial_step_diverges_under_asynchrony() -> None:
    """The paper's α_0 = 1, smoothed with β = 0.999, stays near 1 for hundreds of updates: fine with
    one worker, divergent with staleness ~15 (M = 16). The engine flags and freezes it; nothing is
    restored. The default α_0 = 1e-4 holds at M = 16 over these 600 updates."""
    nq = make_problem("nq50")
    traces = [None, simulate(ClusterConfig(16), 600, rng=2)]
    paper = {"lr_init": 1.0}
    diverged = [
        run(nq, yellowfin_tuner(**paper), tr, 600, rng=[5, 6], record_every=100).diverged
        for tr in traces
    ]
    assert not diverged[0].any() and diverged[1].all()
    late = run(nq, yellowfin_tuner(), traces[1], 600, rng=[5, 6], record_every=100)
    assert not late.diverged.any()


def test_a_loss_blow_up_below_the_divergence_bound_is_flagged() -> None:
    """The digits MLP at M = 16 from the paper's α_0 = 1: the loss rises from 2.4 to 24-32x that
    (measured) within 300 updates, far below the divergence bound of 1e6x, so ``diverged`` stays
    False; ``History.blew_up`` (a recorded loss above 10x the first) flags it. From the default
    α_0 = 1e-4 the loss never exceeds its start (measured peak 1.0x) on the same traces and noise."""
    mlp = make_problem("digits-mlp")
    trace = simulate(ClusterConfig(16), 300, rng=2)
    transform = yellowfin_tuner(lr_init=np.repeat([1.0, 1e-4], 3))
    history = run(mlp, transform, trace, 300, rng=[5, 6, 7] * 2, record_every=25)
    assert not history.diverged.any()
    np.testing.assert_array_equal(history.blew_up, [True] * 3 + [False] * 3)
    peak = history.loss.max(axis=0) / history.loss[0]
    assert (peak[:3] > 15).all() and (peak[3:] < 2).all()


def test_blow_up_rule() -> None:
    """loss > initial + 9 |initial| or not finite; a negative initial loss is measured by its size."""
    loss = np.array([10.0, 10.001, np.nan, np.inf, 1.0, 7.9, 8.1])
    initial = np.array([1.0, 1.0, 1.0, 1.0, 1.0, -1.0, -1.0])
    np.testing.assert_array_equal(
        loss_blew_up(loss, initial), [False, True, True, True, False, False, True]
    )
    assert loss_blew_up(2.0, 1.0, factor=1.5) and not loss_blew_up(1.5, 1.0, factor=1.5)


# ------------------------------------------------------------------------------------------ nq50
@pytest.fixture(scope="module")
def nq50_runs():
    """Both variants on nq50 without staleness, 4 seeds, 5000 steps, every step recorded."""
    nq = make_problem("nq50")
    return {
        v: run(nq, yellowfin_tuner(v), None, 5000, rng=[1, 2, 3, 4], record_every=1)
        for v in ("paper", "official")
    }


@pytest.mark.parametrize("variant", ["paper", "official"])
def test_estimated_range_lies_in_the_robust_region(nq50_runs, variant) -> None:
    """(1-√μ)² ≤ α h ≤ (1+√μ)² for h in {h_min, h_max}, for the tuner's per-step pair (α_t, μ_t)
    after burn-in (the slow start scales α_t down for t < 10K = 200). Lower edge: equality up to the
    ε guard, α_t = (1-√μ_t)²/(h_min + ε). Upper edge: μ_t ≥ ((√κ-1)/(√κ+1))² with κ from h + ε."""
    history = nq50_runs[variant]
    late = history.steps > 200
    lr, mu = history["lr_t"][late], history["mu_t"][late]
    h_min, h_max = history["h_min"][late], history["h_max"][late]
    low, high = (1 - np.sqrt(mu)) ** 2, (1 + np.sqrt(mu)) ** 2
    assert (low <= lr * (h_min + EPS) * (1 + 1e-12)).all()
    assert (lr * h_min >= low * (1 - EPS / h_min.min() - 1e-12)).all()
    assert (lr * h_max <= high * (1 + 1e-12)).all()
    if variant == "official":  # no smoothing: the applied pair is the per-step pair
        np.testing.assert_array_equal(history["lr"][late], lr)
        np.testing.assert_array_equal(history["momentum"][late], mu)
    else:  # the smoothed pair that the paper applies lags it and leaves the region most of the time
        lr_s, mu_s = history["lr"][late], history["momentum"][late]
        inside = ((1 - np.sqrt(mu_s)) ** 2 <= lr_s * (h_min + EPS)) & (
            lr_s * h_max <= (1 + np.sqrt(mu_s)) ** 2
        )
        assert inside.mean() < 0.5  # measured 0.11 (0.18 from α_0 = 1)


def test_gradient_norm_proxy_misses_the_spectrum_and_alpha_grows(nq50_runs) -> None:
    """h_min and h_max track ‖g‖² (noise floor σ² d = 0.045), not the spectrum [0.01, 1]: the
    estimated condition number stays near 2-3 instead of 100, and α grows as the gradient norm
    falls (YellowFin_Pytorch#18, #19): official α from 1e-4 to about 2.6 (measured medians: 0.32 at
    t = 500, 2.6 at t = 5000, μ ≈ 0.34). The top curvature h = 1 then lies outside the robust region
    (α > (1 + √μ)² ≈ 2.5), near the stability edge 2(1 + μ) ≈ 2.7, and the loss rises about 8x."""
    official = nq50_runs["official"]
    end = {k: np.median(official[k][-1]) for k in ("h_min", "h_max", "lr", "momentum")}
    assert 0.03 < end["h_min"] < 0.2 and end["h_max"] < 0.5
    assert end["h_max"] / end["h_min"] < 10
    assert np.median(official["lr"][500]) < 0.5 < 2.0 < end["lr"]
    late = official.steps >= 3000  # from then on h = 1 lies outside the region: α > (1 + √μ)²
    assert (official["lr"][late] > (1 + np.sqrt(official["momentum"][late])) ** 2).mean() > 0.9
    assert np.median(official.loss[-1]) > 3 * np.median(official.loss[500])  # and the loss rises


# ------------------------------------------------------------------------------------------ closed loop
def test_estimate_with_skipped_coordinates_is_the_rowwise_nanmedian() -> None:
    """momentum_estimate's vectorized masked median (the closed loop calls it every step) equals
    np.nanmedian row by row, with coordinates skipped (|Δ̄| ~ 0), NaN terms and empty rows."""
    rng = np.random.default_rng(8)
    for _ in range(100):
        b, d = rng.integers(1, 6), rng.integers(1, 10)
        den = np.where(rng.random((b, d)) < 0.4, 0.0, rng.standard_normal((b, d)))
        num = np.where(rng.random((b, d)) < 0.1, np.nan, rng.standard_normal((b, d)))
        est = MomentumEstimate(None, None, None, num, den, np.ones(b, dtype=np.int64), 0.99)
        mag = np.abs(den)
        keep = mag > 1e-9 * mag.max(axis=1, keepdims=True)
        if keep.all():
            continue
        expected = np.full(b, np.nan)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(keep, num / den, np.nan)
        for i in range(b):
            if (~np.isnan(ratio[i])).any():
                expected[i] = np.nanmedian(ratio[i])
        np.testing.assert_array_equal(momentum_estimate(est), expected)


def test_closed_loop_settles_at_its_fixed_point_and_saturates() -> None:
    """μ* = 0.9 fixed, γ = 0.1: the estimator reads 1 - (1 - μ)/M, so the loop settles where that
    equals μ*: μ = 1 - M (1 - μ*) = 0.9, 0.6, 0.2, -0.6 for M = 1, 4, 8, 16, with the measured total
    at μ*. With μ* = 0.669 the fixed point (-1.65, -4.3 at M = 8, 16) is below the clamp -0.9: μ sits
    on the clamp and the total stays at 1 - 1.9/M, above the target."""
    nq = make_problem("nq50")
    steps, seeds = 4000, (31, 32)
    cases = [(m, 0.9) for m in (1, 4, 8, 16)] + [(8, 0.669), (16, 0.669)]
    traces = {
        (m, s): simulate(ClusterConfig(m), steps, rng=s) for m in (1, 4, 8, 16) for s in seeds
    }
    rows = [(m, target, s) for m, target in cases for s in seeds]
    transform = yellowfin_tuner(
        closed_loop=True, target_momentum=[r[1] for r in rows], gain=0.1, **ASYNC_START
    )
    history = run(
        nq,
        transform,
        [traces[m, s] for m, _, s in rows],
        steps,
        rng=[s for *_, s in rows],
        record_every=10,
    )
    assert not history.diverged.any()
    # one estimator: the engine's recorded total is the loop's own μ̂_T
    np.testing.assert_allclose(history["total_momentum"][1:], history["mu_hat"][1:], rtol=1e-12)
    late = history.steps >= steps // 2
    mu = np.median(history["momentum"][late], axis=0)
    total = np.median(history["mu_hat"][late], axis=0)
    clamped = history["momentum_clamped"][late].mean(axis=0)
    for i, (m, target, _) in enumerate(rows):
        if m == 1:  # one writer: the estimator returns μ exactly, so μ never leaves μ*
            np.testing.assert_allclose(history["momentum"][:, i], 0.9, rtol=0, atol=1e-9)
        elif target == 0.9:
            fixed_point = 1 - m * (1 - target)
            assert abs(mu[i] - fixed_point) <= (0.1 if m <= 8 else 0.2), (m, mu[i])
            assert abs(total[i] - 0.9) <= 0.01, (m, total[i])  # measured 0.896-0.901
        else:  # saturated at the clamp
            assert mu[i] == -0.9 and clamped[i] > 0.9, (m, mu[i], clamped[i])
            assert abs(total[i] - (1 - 1.9 / m)) <= 0.03 and total[i] > target + 0.05, (m, total[i])


# ------------------------------------------------------------------------------------------ old name
def test_the_module_is_the_module_and_the_factory_is_yellowfin_tuner() -> None:
    assert isinstance(yf, types.ModuleType) and asyncsim.yellowfin is yf
    assert yf.yellowfin_tuner is asyncsim.yellowfin_tuner
    assert "yellowfin_tuner" in asyncsim.__all__ and "yellowfin" not in asyncsim.__all__
    assert "yellowfin" not in yf.__all__


@pytest.mark.parametrize("spelling", ["asyncsim.yellowfin(...)", "from-import"])
def test_the_old_name_warns_and_gives_the_same_transform(spelling) -> None:
    """``asyncsim.yellowfin(...)`` and ``from asyncsim.yellowfin import yellowfin`` keep working for
    one release: each warns and returns the transform ``yellowfin_tuner`` gives for the same
    arguments (positional and keyword), step for step."""
    grads = np.random.default_rng(0).normal(size=(30, 2, 3))
    params = np.cumsum(grads, axis=0)
    options = {"window": 3, "beta": [0.9, 0.99], "adapt_clip": True}
    expected, expected_next = open_loop(yellowfin_tuner("official", **options), params, grads)
    old = deprecated_yellowfin if spelling == "from-import" else asyncsim.yellowfin
    with pytest.warns(DeprecationWarning, match="asyncsim.yellowfin_tuner"):
        transform = old("official", **options)
    records, next_params = open_loop(transform, params, grads)
    np.testing.assert_array_equal(next_params, expected_next)
    assert records.keys() == expected.keys()
    for name, values in expected.items():
        np.testing.assert_array_equal(records[name], values, err_msg=name)
