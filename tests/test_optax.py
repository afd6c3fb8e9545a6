"""asyncsim.optax: YellowFin as an optax transformation (pytrees, float32 without 64-bit mode, optax's
extra arguments, the failure flags).

The official traces and the 1e-10 agreement with the NumPy tuner are in test_yellowfin.py, with the
NumPy and torch versions. Skipped where the jax extra is missing, outside CI only.
"""

from __future__ import annotations

import importlib
import os

import numpy as np
import pytest


def _extra(module: str, extra: str):
    """The module, or a skip where its extra is not installed, outside CI only (CI installs every
    extra: there a missing one fails)."""
    if os.environ.get("CI"):
        return importlib.import_module(module)
    return pytest.importorskip(
        module, reason=f"needs the {extra} extra: pip install -e '.[{extra}]'"
    )


jax = _extra("jax", "jax")
optax = _extra("optax", "jax")
jnp = jax.numpy

from asyncsim.optax import yellowfin  # noqa: E402 (after the extra's check)
from asyncsim.yellowfin import EPS, no_signal, single_step  # noqa: E402

H = np.logspace(0, -2, 6)


@pytest.fixture(autouse=True)
def _x64():
    """64-bit mode in every test (a test may leave it inside): eager JAX compiles each primitive once
    per dtype, so keeping to one mode saves most of this file's time."""
    with jax.enable_x64(True):
        yield


def _run(transform, params, steps: int, *, gradient, value=None, jit=False):
    """``steps`` updates on ``params`` with ``gradient(params, t)``; the final parameters, the state
    and each step's record (host copies). Eager unless ``jit``: compiling costs more than these short
    runs (the jitted update is held against the NumPy tuner in test_yellowfin.py)."""
    state = transform.init(params)

    def step(params, state, t):
        grads = gradient(params, t)
        extra = {} if value is None else {"value": value(params)}
        updates, state = transform.update(grads, state, params, **extra)
        return optax.apply_updates(params, updates), state

    if jit:
        step = jax.jit(step)
    records = []
    for t in range(steps):
        params, state = step(params, state, t)
        records.append(jax.device_get(state.record()))
    return params, state, records


def _noisy_quadratic(params, t):
    """Gradient of ½ Σ h x² on the flattened leaves, plus deterministic noise."""
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    noise = 0.1 * jnp.sin(1.7 * (t + 1) * jnp.arange(1, flat.size + 1))
    return unravel(jnp.asarray(H, flat.dtype) * flat + noise.astype(flat.dtype))


def test_a_pytree_is_one_configuration() -> None:
    """The tuner sees all the leaves together: a dict of two leaves (shapes (2, 2) and (2,)) steps as
    the one flat vector of their six values (to 1e-12 over 50 steps of the official variant, clips
    on)."""
    importlib.import_module("jax.flatten_util")
    tree = {"a": jnp.ones((2, 2)), "b": jnp.full(2, 0.5)}
    flat = jax.flatten_util.ravel_pytree(tree)[0]
    tree_end, _, tree_records = _run(
        yellowfin(variant="official"), tree, 50, gradient=_noisy_quadratic
    )
    flat_end, _, flat_records = _run(
        yellowfin(variant="official"), flat, 50, gradient=_noisy_quadratic
    )
    tree_end = jax.flatten_util.ravel_pytree(tree_end)[0]
    np.testing.assert_allclose(tree_end, flat_end, rtol=1e-12)
    for key in ("lr", "momentum", "h_max", "grad_var"):
        np.testing.assert_allclose(
            tree_records[-1][key], flat_records[-1][key], rtol=1e-12, err_msg=key
        )


def test_float32_without_64_bit_mode() -> None:
    """Without ``jax_enable_x64`` the scalars are float32 and the parameters stay float32; the jitted
    run follows the 64-bit one to float32 rounding (measured: 4e-6 at most after 150 steps)."""
    importlib.import_module("jax.flatten_util")
    with jax.enable_x64(False):
        end32, state, _ = _run(yellowfin(), jnp.ones(6), 150, gradient=_noisy_quadratic, jit=True)
        assert state.values["lr"].dtype == jnp.float32 and end32.dtype == jnp.float32
        end32 = np.asarray(end32, dtype=np.float64)
    end64, state, _ = _run(yellowfin(), jnp.ones(6), 150, gradient=_noisy_quadratic)
    assert state.values["lr"].dtype == jnp.float64
    np.testing.assert_allclose(end32, end64, rtol=1e-4, atol=3e-5)


def test_extra_arguments_pass_through_an_optax_chain() -> None:
    """In ``optax.chain`` after a clip, ``value=`` reaches YellowFin (its blow-up flag watches it) and
    the step equals YellowFin fed the clipped gradient."""
    chained = optax.chain(optax.clip_by_global_norm(0.5), yellowfin(1e-2))
    alone = yellowfin(1e-2)
    params = jnp.ones(3)
    state, alone_state = chained.init(params), alone.init(params)
    grads = jnp.array([3.0, 0.0, 4.0])
    for _ in range(3):
        updates, state = chained.update(grads, state, params, value=jnp.array(2.0))
        expected, alone_state = alone.update(grads * 0.1, alone_state, params)
        np.testing.assert_allclose(updates, expected, rtol=1e-6)
    assert float(state[1].loss0) == 2.0 and not bool(state[1].blew_up)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"learning_rate": 0.0}, r"learning_rate must be a finite number in \(0, inf\)"),
        ({"momentum": 1.0}, r"momentum must be a finite number in \[0, 1\)"),
        ({"variant": "adam"}, "variant"),
        ({"beta": [0.9, 0.99]}, "beta must be a scalar"),
        ({"window": 0}, "window"),
        ({"blowup_factor": 0.5}, "blowup_factor"),
    ],
)
def test_bad_options_name_the_parameter(options, match) -> None:
    with pytest.raises(ValueError, match=match):
        yellowfin(**options)


# ------------------------------------------------------------------------------------------ failures
def test_single_step_at_the_statistics_floor_in_jax() -> None:
    """The zero-gradient floor h_min = h_max = C = ε, D = 0 (where the shipped closed form divides by
    about zero) through ``jax.numpy``: the NumPy solution, to 1e-12, and the no_signal flag."""
    inputs = (EPS, EPS, EPS, 0.0)
    ours = single_step(*(jnp.asarray(v) for v in inputs), xp=jnp)
    np.testing.assert_allclose(ours, single_step(*inputs), rtol=1e-12)
    assert 0 < float(ours.momentum) < 1 and bool(no_signal(jnp.asarray(EPS)))


@pytest.mark.parametrize("variant", ["paper", "official"])
def test_zero_gradients_give_a_defined_step_and_the_no_signal_flag(variant) -> None:
    """Where the shipped optimizer applies μ = 1.0000017 and the shipped formula in float64 μ = 94,
    α = 5.7e6 (asyncsim.yellowfin's docstring): here μ in [0, 1), α tiny, zero updates,
    no_signal set and diverged not, for zero and floating-point-zero (1e-30) gradients; ordinary
    gradients clear the flag."""
    for size in (0.0, 1e-30):
        end, _, records = _run(
            yellowfin(variant=variant), jnp.ones(3), 15, gradient=lambda p, t, s=size: p * s
        )
        assert all(r["no_signal"] and not r["diverged"] for r in records)
        assert all(0 <= r["momentum"] < 1 and 0 < r["lr"] <= 1e-4 for r in records)
        np.testing.assert_array_equal(end, np.ones(3))
    _, _, later = _run(yellowfin(variant=variant), jnp.ones(3), 15, gradient=lambda p, t: p)
    assert not later[-1]["no_signal"]


def test_non_finite_gradient_sets_diverged_and_zeroes_the_updates() -> None:
    """A NaN gradient at step 2: diverged from then on (sticky) and no update moves the parameters."""

    def gradient(params, t):
        return jnp.where(t == 2, jnp.nan, 1.0) * params

    end, state, records = _run(yellowfin(0.1), jnp.ones(2), 6, gradient=gradient)
    assert [bool(r["diverged"]) for r in records] == [False, False, True, True, True, True]
    assert bool(state.diverged) and np.isfinite(end).all()
    before, _, _ = _run(yellowfin(0.1), jnp.ones(2), 2, gradient=gradient)
    np.testing.assert_array_equal(end, before)


def test_a_loss_blow_up_is_flagged_from_value() -> None:
    """From α₀ = 3 on a quadratic of curvature 1 the loss grows 4x a step: ``blew_up`` once it
    passes 10x its first value (step 2), long before anything is non-finite; from the default α₀
    nothing is flagged."""

    def loss(params):
        return 0.5 * jnp.sum(params**2)

    for lr, expected in ((3.0, [False, False, True, True, True, True]), (1e-4, [False] * 6)):
        _, _, records = _run(yellowfin(lr), jnp.ones(4), 6, gradient=lambda p, t: p, value=loss)
        assert [bool(r["blew_up"]) for r in records] == expected
        assert not records[-1]["diverged"]
