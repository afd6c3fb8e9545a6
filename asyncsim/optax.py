r"""YellowFin [YF]_ for JAX: :func:`yellowfin`, an optax ``GradientTransformation``.

The tuner's per-step formulas are :mod:`asyncsim.yellowfin`'s own (:func:`~asyncsim.yellowfin.tune`
and the functions it calls) evaluated with ``jax.numpy``, so the update is a pure function that
``jax.jit`` compiles; this module holds only the per-coordinate vectors (the gradient average and the
velocity or momentum buffer), as pytrees shaped and typed like the parameters. The tuner's scalars
are in JAX's default float: float64 with ``jax_enable_x64``, float32 without. One transformation is
one configuration: one tuner over all the leaves. Both variants and the fixed target momentum are
there; the closed loop (which needs each worker's reads) is in :mod:`asyncsim.torch` and the engine.

Failures are flags in the state (``state.record()``): ``no_signal`` (zero or floating-point-zero
gradients), the three clipping heuristics, ``diverged`` (a non-finite statistic: every later update is
zero) and ``blew_up`` (the loss passed as ``value=`` rose above ``blowup_factor`` times its first
value).

Needs the ``jax`` extra: ``pip install 'asyncsim[jax]'``.

References
----------
.. [YF] J. Zhang, I. Mitliagkas, C. Ré, "YellowFin and the Art of Momentum Tuning", MLSys 2019,
   arXiv:1706.03471.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

try:
    import jax
    import jax.numpy as jnp
    import optax
except ImportError as error:
    raise ImportError(
        "asyncsim.optax needs JAX and optax: pip install 'asyncsim[jax]' "
        "(jax==0.10.2, jaxlib==0.10.2, optax==0.2.8)"
    ) from error

from asyncsim._validate import check_real
from asyncsim.engine import BLOWUP_FACTOR, loss_blew_up
from asyncsim.yellowfin import (
    Statistics,
    diverged_now,
    stat_protect,
    statistics_init,
    tune,
    tuner_settings,
    yellowfin_tuner,
)

__all__ = ["YellowFinState", "yellowfin"]

#: Recorded values that are NaN until the tuner sets them.
_NAN_AT_START = (
    "h_min",
    "h_max",
    "grad_var",
    "dist_to_opt",
    "grad_norm_squared",
    "cubic_root",
    "mu_dr_bound",
)
_FLAGS = ("stat_protect_clip", "exploding_grad_clip", "catastrophic_lr_clamp", "no_signal")


class YellowFinState(NamedTuple):
    """The state of :func:`yellowfin`: the step t, the tuner's :class:`~asyncsim.yellowfin.Statistics`
    (scalars, window (K,)), ``grad_sum`` ḡ/(1-β) and ``velocity`` (pytrees like the parameters), the
    framework buffer's existence, the last step's ``values``, and the flags."""

    count: jax.Array
    stats: Statistics
    grad_sum: Any
    velocity: Any
    has_buffer: jax.Array
    values: dict[str, jax.Array]
    diverged: jax.Array
    loss0: jax.Array
    blew_up: jax.Array

    def record(self) -> dict[str, jax.Array]:
        """The tuner's values after the last step (the names of
        :class:`asyncsim.yellowfin.YellowFinState`'s record, without the closed loop's) and the flags
        ``diverged`` and ``blew_up``."""
        return {**self.values, "diverged": self.diverged, "blew_up": self.blew_up}


def _sum_of_squares(tree: Any, dtype: Any) -> jax.Array:
    """Σ ‖leaf‖² over a pytree, in ``dtype``."""
    leaves = jax.tree_util.tree_leaves(tree)
    return sum((jnp.sum(jnp.square(leaf.astype(dtype))) for leaf in leaves), jnp.zeros((), dtype))


def _scaled(tree: Any, factor: jax.Array) -> Any:
    """Every leaf times a scalar, in the leaf's dtype."""
    return jax.tree_util.tree_map(lambda leaf: leaf * factor.astype(leaf.dtype), tree)


def yellowfin(
    learning_rate: float = 1e-4,
    momentum: float = 0.0,
    variant: str = "paper",
    *,
    beta: float = 0.999,
    window: int = 20,
    update_form: str | None = None,
    smoothing: bool | None = None,
    envelope: str | None = None,
    slow_start: bool | None = None,
    adapt_clip: bool | None = None,
    target_momentum: float | None = None,
    blowup_factor: float = BLOWUP_FACTOR,
) -> optax.GradientTransformationExtraArgs:
    r"""YellowFin [YF]_ as an optax transformation: the updates to add to the parameters.

    One step is :func:`asyncsim.yellowfin.yellowfin_tuner`'s steps 1-8 (open loop) on the gradient of
    all the leaves taken together: the official clips (``adapt_clip``), the statistics from ``‖g‖²``
    and ``‖ḡ‖²``, SingleStep, the slow start and the smoothing, then the update in heavy-ball
    (``u = μ u_prev - α g``) or framework form (``v ← μ v + g``, ``u = -α v``). ``update`` takes the
    loss as ``value=`` (optional, as optax's line searches do) for the blow-up flag.

    Parameters
    ----------
    learning_rate : float
        Initial step α₀ > 0 (default 10⁻⁴; keep α₀ h ≲ 0.01 for the largest curvature h).
    momentum : float
        Initial momentum μ₀ in [0, 1).
    variant : {"paper", "official"}
        :data:`asyncsim.yellowfin.VARIANTS`; the six choices can be set one by one below.
    beta, window, update_form, smoothing, envelope, slow_start, adapt_clip : optional
        As :func:`~asyncsim.yellowfin.yellowfin_tuner` (None: the variant's).
    target_momentum : float or None
        Fix μ* in [0, 1) instead of tuning it.
    blowup_factor : float
        ``blew_up`` is set once ``value`` exceeds this factor times its first value (or is not
        finite).

    Returns
    -------
    optax.GradientTransformationExtraArgs
        State :class:`YellowFinState`.

    Examples
    --------
    >>> params = {"w": jnp.ones(3)}
    >>> optimizer = yellowfin()
    >>> state = optimizer.init(params)
    >>> loss = lambda p: 0.5 * jnp.sum(p["w"] ** 2)
    >>> @jax.jit
    ... def train_step(params, state):
    ...     value, grads = jax.value_and_grad(loss)(params)
    ...     updates, state = optimizer.update(grads, state, params, value=value)
    ...     return optax.apply_updates(params, updates), state
    >>> for _ in range(3):
    ...     params, state = train_step(params, state)
    >>> bool(state.record()["no_signal"]), bool(state.diverged), bool(state.blew_up)
    (False, False, False)
    """
    check_real("learning_rate", learning_rate, low=0.0, low_open=True)
    check_real("momentum", momentum, low=0.0, high=1.0, high_open=True)
    factor = check_real("blowup_factor", blowup_factor, low=1.0, low_open=True)
    for name, value in (("beta", beta), ("target_momentum", target_momentum)):
        if value is not None and np.ndim(value) != 0:
            raise ValueError(f"{name} must be a scalar (one configuration), got {value!r}")
    hp = yellowfin_tuner(
        variant,
        beta=beta,
        window=window,
        update_form=update_form,
        smoothing=smoothing,
        envelope=envelope,
        slow_start=slow_start,
        adapt_clip=adapt_clip,
        target_momentum=target_momentum,
    ).hyperparameters
    settings = tuner_settings(hp)
    fixed = not math.isnan(hp["target_momentum"])
    mu0 = hp["target_momentum"] if fixed else float(momentum)
    heavy_ball = hp["update_form"] == "heavy_ball"

    def init(params: Any) -> YellowFinState:
        dtype = jnp.result_type(float)

        def scalar(value: Any) -> jax.Array:
            return jnp.asarray(value, dtype=bool if isinstance(value, bool) else dtype)

        values = {name: scalar(math.nan) for name in _NAN_AT_START}
        values |= {name: scalar(False) for name in _FLAGS}
        values |= {"lr": scalar(learning_rate), "momentum": scalar(mu0), "mu_star": scalar(mu0)}
        for name in ("lr_t", "lr_smoothed"):
            values[name] = scalar(learning_rate)
        for name in ("mu_t", "mu_smoothed"):
            values[name] = scalar(mu0)
        zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
        return YellowFinState(
            count=jnp.zeros((), jnp.int32),
            stats=statistics_init(hp["window"], xp=jnp, dtype=dtype),
            grad_sum=zeros,
            velocity=zeros,
            has_buffer=scalar(False),
            values=values,
            diverged=scalar(False),
            loss0=scalar(math.nan),
            blew_up=scalar(False),
        )

    def update(
        updates: Any, state: YellowFinState, params: Any = None, *, value: Any = None, **extra: Any
    ) -> tuple[Any, YellowFinState]:
        del params, extra  # the step needs the gradient alone
        t, prev = state.count, state.values
        dtype = prev["lr"].dtype
        beta_t = jnp.asarray(hp["beta"], dtype)
        grads = updates
        s = _sum_of_squares(grads, dtype)

        # 1. stat-protect clip; 2.-6. the statistics and (α, μ*)
        stat_clip = jnp.zeros((), bool)
        if settings.adapt_clip:
            scale, stat_clip = stat_protect(s, prev["h_max"], t, xp=jnp)
            grads = _scaled(grads, scale)
            s = s * scale * scale
        grad_sum = jax.tree_util.tree_map(
            lambda acc, g: acc * beta_t.astype(acc.dtype) + g, state.grad_sum, grads
        )
        stats, values, apply_scale = tune(
            state.stats,
            s,
            _sum_of_squares(grad_sum, dtype),
            t,
            prev,
            beta_t,
            settings,
            target=jnp.asarray(hp["target_momentum"], dtype) if fixed else None,
            xp=jnp,
        )
        g_apply = _scaled(grads, apply_scale)
        lr, mu = values.pop("lr"), values.pop("mu_star")

        # 8. the step
        has_buffer = state.has_buffer
        if heavy_ball:
            velocity = jax.tree_util.tree_map(
                lambda v, g: v * mu.astype(v.dtype) + g * (-lr).astype(g.dtype),
                state.velocity,
                g_apply,
            )
            steps = velocity
        else:
            moving = mu != 0.0

            def buffer(v: jax.Array, g: jax.Array) -> jax.Array:
                stepped = jnp.where(has_buffer, v * mu.astype(v.dtype) + g, g)
                return jnp.where(moving, stepped, v)

            velocity = jax.tree_util.tree_map(buffer, state.velocity, g_apply)
            steps = jax.tree_util.tree_map(
                lambda v, g: jnp.where(moving, v, g) * (-lr).astype(g.dtype), velocity, g_apply
            )
            has_buffer = has_buffer | moving

        values |= {"lr": lr, "momentum": mu, "mu_star": mu, "stat_protect_clip": stat_clip}
        diverged = state.diverged | diverged_now(values, xp=jnp)
        steps = jax.tree_util.tree_map(lambda u: jnp.where(diverged, jnp.zeros_like(u), u), steps)
        loss0, blew_up = state.loss0, state.blew_up
        if value is not None:
            loss = jnp.asarray(value, dtype)
            loss0 = jnp.where(jnp.isnan(loss0), loss, loss0)
            blew_up = blew_up | loss_blew_up(loss, loss0, factor)
        new_state = YellowFinState(
            count=t + 1,
            stats=stats,
            grad_sum=grad_sum,
            velocity=velocity,
            has_buffer=has_buffer,
            values=values,
            diverged=diverged,
            loss0=loss0,
            blew_up=blew_up,
        )
        return steps, new_state

    return optax.GradientTransformationExtraArgs(init, update)
