r"""YellowFin [YF]_ for PyTorch: :class:`YellowFin`, a ``torch.optim.Optimizer``, and
:class:`MomentumMeter`, the worker-local total-momentum estimator for real training.

The tuner's per-step formulas are :mod:`asyncsim.yellowfin`'s own (:func:`~asyncsim.yellowfin.tune`
and the functions it calls), evaluated in float64 on each parameter group's scalars; this module holds
only the per-coordinate vectors (the gradient average, the velocity or momentum buffer, the meter's
averages) as tensors in the parameters' dtype and device. Each parameter group is one configuration:
one tuner, one set of flags. Both variants, the fixed target momentum and the closed loop are there;
the arguments and their defaults are :func:`~asyncsim.yellowfin.yellowfin_tuner`'s (α₀ = 10⁻⁴: the
module docstring of :mod:`asyncsim.yellowfin` says which α₀ fits which curvature).

Failures are flags, never exceptions or silent fixes: ``record()`` gives, per group, the tuner's values
and the flags ``no_signal`` (zero or floating-point-zero gradients), the three clipping heuristics,
``momentum_clamped``, ``diverged`` (a non-finite statistic: the group's parameters are left as they
are from then on) and ``blew_up`` (the loss the closure returns rose above ``blowup_factor`` times its
first value).

Needs the ``torch`` extra: ``pip install 'asyncsim[torch]'``.

References
----------
.. [YF] J. Zhang, I. Mitliagkas, C. Ré, "YellowFin and the Art of Momentum Tuning", MLSys 2019,
   arXiv:1706.03471.
"""

from __future__ import annotations

import functools
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, MutableMapping, Sequence
from typing import Any

import numpy as np

try:
    import torch
except ImportError as error:
    raise ImportError(
        "asyncsim.torch needs PyTorch: pip install 'asyncsim[torch]' (torch==2.13.0)"
    ) from error

from asyncsim._validate import check_real
from asyncsim.engine import BLOWUP_FACTOR, loss_blew_up
from asyncsim.measure import MomentumEstimate, momentum_estimate
from asyncsim.yellowfin import (
    Statistics,
    closed_loop_momentum,
    diverged_now,
    stat_protect,
    statistics_init,
    tune,
    tuner_settings,
    yellowfin_tuner,
)

__all__ = ["MomentumMeter", "YellowFin"]

#: Per-group options, passed to :func:`~asyncsim.yellowfin.yellowfin_tuner` as they are.
_OPTIONS = (
    "variant",
    "beta",
    "window",
    "update_form",
    "smoothing",
    "envelope",
    "slow_start",
    "adapt_clip",
    "target_momentum",
    "closed_loop",
    "gain",
    "estimator_beta",
    "clamp",
)
#: Recorded values that are NaN until the tuner sets them.
_NAN_AT_START = (
    "mu_hat",
    "h_min",
    "h_max",
    "grad_var",
    "dist_to_opt",
    "grad_norm_squared",
    "cubic_root",
    "mu_dr_bound",
)
_FLAGS = (
    "stat_protect_clip",
    "exploding_grad_clip",
    "catastrophic_lr_clamp",
    "momentum_clamped",
    "no_signal",
)


def _sum_of_squares(tensors: Sequence[torch.Tensor]) -> float:
    """Σ ‖t‖² over the tensors, accumulated in float64 (one host transfer)."""
    return torch.stack([torch.sum(t * t, dtype=torch.float64) for t in tensors]).sum().item()


# ------------------------------------------------------------------------------------------ meter
class MomentumMeter:
    r"""Worker-local total-momentum estimator [AbM]_ for tensors that one worker reads and writes.

    Each update k of this worker is a term: its read ``y^(k)`` (the parameters it computed the gradient
    at), the gradient step ``α g^(k)`` it sent, and its next read ``y^(k+1)`` give
    ``n = y^(k+1) - y^(k) + α g^(k)`` and ``d = y^(k) - y^(k-1)``; ``μ̂_T`` is the median over
    coordinates of ``EMA_β(n) / EMA_β(d)`` (theory/README.md §9; the same update and median as
    :func:`asyncsim.measure.momentum_estimator_update` and :func:`~asyncsim.measure.momentum_estimate`,
    which the estimate calls). In a synchronous heavy-ball loop ``n = μ d`` and the meter reads μ;
    with M asynchronous workers, about ``1 - (1 - μ)/M``.

    Use: ``read()`` just before the forward pass (the parameters this worker reads, which others may
    change before it writes), then ``sent(lr)`` once the gradient is known (``lr`` times each
    parameter's ``.grad``, or the ``grads`` given). Without a ``read()`` since the last ``sent``,
    ``sent`` takes the parameters as they are then (right for a synchronous loop). Each worker of
    ``torch.multiprocessing`` keeps its own meter over the shared parameters.

    Parameters
    ----------
    params : iterable of Tensor
        The parameters.
    beta : float
        EMA factor β in [0, 1). The ratio of averages weights each write by the size of its step,
        so with a momentum that changes, keep the memory 1/(1 - β) short next to the time it takes
        to change: β = 0.9 reads YellowFin's tuned μ within 0.01, 0.99 lags it (tests/test_torch.py).
    state : mapping or None
        Where the per-parameter tensors live (``state[p]``, keys ``meter_*``); :class:`YellowFin`
        passes its own state so that its ``state_dict`` holds them. Default: a dict of the meter's.

    Examples
    --------
    >>> w = torch.zeros(3, dtype=torch.float64)
    >>> meter = MomentumMeter([w])
    >>> step = torch.zeros(3, dtype=torch.float64)
    >>> for k in range(5):  # heavy ball with μ = 0.5 and gradient 1 + k
    ...     grad = torch.full((3,), 1.0 + k, dtype=torch.float64)
    ...     meter.sent(0.1, [grad])
    ...     step = 0.5 * step - 0.1 * grad
    ...     w += step
    >>> round(meter.estimate(), 12)
    0.5

    References
    ----------
    .. [AbM] I. Mitliagkas, C. Zhang, S. Hadjis, C. Ré, "Asynchrony begets Momentum, with an Application
       to Deep Learning", arXiv:1605.09774.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor],
        beta: float = 0.99,
        *,
        state: MutableMapping[torch.Tensor, dict] | None = None,
    ) -> None:
        self.params = list(params)
        if not self.params:
            raise ValueError("params must hold at least one tensor, got none")
        self.beta = check_real("beta", beta, low=0.0, high=1.0, high_open=True)
        self.state: MutableMapping[torch.Tensor, dict] = (
            defaultdict(dict) if state is None else state
        )

    @property
    def _info(self) -> dict[str, Any]:
        """The meter's counters, kept with the first parameter's state."""
        return self.state[self.params[0]].setdefault(
            "meter", {"terms": 0, "pending_valid": False, "has_read": False, "read_taken": False}
        )

    @torch.no_grad()
    def read(self) -> None:
        """Record the parameters as this worker reads them now."""
        for p in self.params:
            self.state[p]["meter_read"] = p.detach().clone()
        self._info["read_taken"] = True

    @torch.no_grad()
    def sent(self, lr: float, grads: Sequence[torch.Tensor | None] | None = None) -> None:
        """Account for this worker's write: the step ``lr`` times ``grads`` (default each parameter's
        ``.grad``; None counts as zero), from its last ``read()`` (else the parameters now)."""
        info = self._info
        grads = [p.grad for p in self.params] if grads is None else list(grads)
        if len(grads) != len(self.params):
            raise ValueError(f"grads must hold {len(self.params)} tensors, got {len(grads)}")
        beta = self.beta
        for p, g in zip(self.params, grads, strict=True):
            st = self.state[p]
            y = st.pop("meter_read") if info["read_taken"] else p.detach().clone()
            if info["pending_valid"]:  # complete the previous write's term with this read
                n = y + st["meter_pending_num"]
                st.setdefault("meter_num", torch.zeros_like(y)).mul_(beta).add_(n, alpha=1 - beta)
                st.setdefault("meter_den", torch.zeros_like(y)).mul_(beta).add_(
                    st["meter_pending_den"], alpha=1 - beta
                )
            step = torch.zeros_like(y) if g is None else g.detach() * lr
            st["meter_pending_num"] = step - y
            st["meter_pending_den"] = y - st["meter_last_read"] if info["has_read"] else y * 0.0
            st["meter_last_read"] = y
        info["terms"] += int(info["pending_valid"])
        info["pending_valid"] = info["has_read"]
        info["has_read"] = True
        info["read_taken"] = False

    def estimate(self) -> float:
        """μ̂_T, the median over coordinates of the ratio of averages; NaN before the first complete
        term (two writes)."""
        info = self._info
        if info["terms"] == 0:
            return math.nan

        def flat(key: str) -> np.ndarray:
            parts = [self.state[p][key].detach().reshape(-1) for p in self.params]
            return torch.cat(parts).to("cpu", torch.float64).numpy()[None, :]

        est = MomentumEstimate(
            None, None, None, flat("meter_num"), flat("meter_den"), np.array([info["terms"]]), 0.0
        )
        return float(momentum_estimate(est)[0])


# ------------------------------------------------------------------------------------------ optimizer
class YellowFin(torch.optim.Optimizer):
    r"""YellowFin [YF]_ as a ``torch.optim.Optimizer``: one tuner per parameter group.

    The step for a group with gradients ``g`` (the parameters with a ``.grad``, taken together) is
    :func:`asyncsim.yellowfin.yellowfin_tuner`'s, steps 1-8: the official clips (``adapt_clip``), the
    statistics from ``‖g‖²`` and ``‖ḡ‖²`` (:func:`~asyncsim.yellowfin.tune`), SingleStep, the slow start
    and the smoothing, then μ (the tuner's, a fixed ``target_momentum``, or the closed loop's) and the
    update, heavy ball ``w ← w - α g + μ (w - w_prev)`` or framework ``v ← μ v + g``, ``w ← w - α v``.
    After each step ``param_groups[i]["lr"]`` and ``["momentum"]`` hold the pair applied (an LR
    scheduler has no effect: the tuner sets α).

    Parameters
    ----------
    params : iterable of Tensor or of dict
        Parameters or parameter groups; a group may set any argument below except ``blowup_factor``.
    lr : float
        Initial step α₀ > 0 (default 10⁻⁴; keep α₀ h ≲ 0.01 for the largest curvature h).
    momentum : float
        Initial momentum μ₀ in [0, 1).
    variant : {"paper", "official"}
        :data:`asyncsim.yellowfin.VARIANTS`; the six choices can be set one by one below.
    beta, window, update_form, smoothing, envelope, slow_start, adapt_clip : optional
        As :func:`~asyncsim.yellowfin.yellowfin_tuner` (scalars; None: the variant's).
    target_momentum : float or None
        Fix μ* in [0, 1) instead of tuning it.
    closed_loop : bool
        Steer μ so that the measured total momentum (this optimizer's :class:`MomentumMeter`) tracks
        μ*: ``μ ← clip(μ + γ (μ* - μ̂_T), *clamp)``; heavy-ball form. In asynchronous workers call
        :meth:`read` just before each forward pass.
    gain, estimator_beta, clamp : optional
        The closed loop's γ, the meter's β and ``(μ_low, μ_high)``.
    blowup_factor : float
        ``blew_up`` is set once the loss a closure returns exceeds this factor times its first
        value (or is not finite).

    Examples
    --------
    >>> _ = torch.manual_seed(0)
    >>> model = torch.nn.Linear(4, 1)
    >>> optimizer = YellowFin(model.parameters())
    >>> x, y = torch.randn(64, 4), torch.randn(64, 1)
    >>> for _ in range(3):
    ...     optimizer.zero_grad()
    ...     torch.nn.functional.mse_loss(model(x), y).backward()
    ...     optimizer.step()
    >>> record = optimizer.record()[0]
    >>> record["lr"] > 0, record["no_signal"], record["diverged"]
    (True, False, False)
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-4,
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
        closed_loop: bool = False,
        gain: float = 0.01,
        estimator_beta: float = 0.99,
        clamp: tuple[float, float] = (-0.9, 0.999),
        blowup_factor: float = BLOWUP_FACTOR,
    ) -> None:
        self.blowup_factor = check_real("blowup_factor", blowup_factor, low=1.0, low_open=True)
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "variant": variant,
            "beta": beta,
            "window": window,
            "update_form": update_form,
            "smoothing": smoothing,
            "envelope": envelope,
            "slow_start": slow_start,
            "adapt_clip": adapt_clip,
            "target_momentum": target_momentum,
            "closed_loop": closed_loop,
            "gain": gain,
            "estimator_beta": estimator_beta,
            "clamp": tuple(clamp),
        }
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group, checking its options (ValueError or TypeError naming the option)."""
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        check_real("lr", group["lr"], low=0.0, low_open=True)
        check_real("momentum", group["momentum"], low=0.0, high=1.0, high_open=True)
        _resolve(group)

    # -------------------------------------------------------------------------------- the step
    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One update of every group; ``closure``, where given, re-evaluates the model and returns the
        loss (torch's convention), which the blow-up flag watches."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        value = None if loss is None else float(torch.as_tensor(loss).detach())
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if params:
                self._step_group(group, params, value)
        return loss

    def _step_group(self, group: dict[str, Any], params: list[torch.Tensor], loss: Any) -> None:
        hp = _resolve(group)
        settings = tuner_settings(hp)
        host = self.state[group["params"][0]]
        if "tuner" not in host:
            host["tuner"] = _tuner_init(group, hp)
        tuner = host["tuner"]
        t = tuner["step"]
        prev = {k: np.array([v], dtype=np.float64) for k, v in tuner["values"].items()}
        grads = [p.grad for p in params]
        if any(g.is_sparse for g in grads):
            raise RuntimeError("YellowFin does not support sparse gradients")

        with np.errstate(all="ignore"):  # a failure shows as the group's diverged flag
            # 1. stat-protect clip; 2.-6. the statistics and (α, μ*)
            s = np.array([_sum_of_squares(grads)])
            stat_clip = np.zeros(1, dtype=bool)
            if settings.adapt_clip:
                factor, stat_clip = stat_protect(s, prev["h_max"], t)
                if stat_clip[0]:
                    grads = [g * float(factor[0]) for g in grads]
                    s = s * factor * factor
            sums = []
            for p, g in zip(params, grads, strict=True):
                state = self.state[p]
                gsum = state.setdefault("grad_sum", torch.zeros_like(p))
                sums.append(gsum.mul_(hp["beta"]).add_(g))
            stats = Statistics(
                np.array(tuner["window"])[:, None], *(np.array([v]) for v in tuner["statistics"])
            )
            target = hp["target_momentum"]
            stats, values, apply_scale = tune(
                stats,
                s,
                np.array([_sum_of_squares(sums)]),
                t,
                prev,
                np.array([hp["beta"]]),
                settings,
                target=None if math.isnan(target) else np.array([target]),
            )
            g_apply = grads
            if values["exploding_grad_clip"][0]:
                g_apply = [g * float(apply_scale[0]) for g in grads]
            lr, mu_star = float(values.pop("lr")[0]), float(values.pop("mu_star")[0])

            # 7. momentum: open loop μ*, or the closed loop's feedback
            mu, mu_hat, clamped = mu_star, tuner["values"]["mu_hat"], False
            if hp["closed_loop"]:
                meter = self._meter(group)
                applied = {id(p): g for p, g in zip(params, g_apply, strict=True)}
                meter.sent(lr, [applied.get(id(p)) for p in group["params"]])
                mu_hat = meter.estimate()
                mu_loop = tuner["values"]["momentum"] if t > 0 else mu_star
                low, high = hp["clamp"]
                new_mu, bound = closed_loop_momentum(
                    np.array([mu_loop]),
                    np.array([mu_star]),
                    np.array([mu_hat]),
                    hp["gain"],
                    low,
                    high,
                )
                mu, clamped = float(new_mu[0]), bool(bound[0])
            values |= {
                "lr": np.array([lr]),
                "momentum": np.array([mu]),
                "mu_star": np.array([mu_star]),
                "mu_hat": np.array([mu_hat]),
                "stat_protect_clip": stat_clip,
                "momentum_clamped": np.array([clamped]),
            }
            diverged = bool(tuner["diverged"] or diverged_now(values)[0])

        # 8. the step (none once the group diverged: its parameters stay finite)
        if not diverged:
            for p, g in zip(params, g_apply, strict=True):
                _apply(self.state[p], p, g, lr, mu, hp["update_form"])
        tuner["step"] = t + 1
        tuner["window"] = stats.window[:, 0].tolist()
        tuner["statistics"] = [float(v[0]) for v in stats[1:]]
        tuner["values"] = {k: _plain(v[0]) for k, v in values.items()}
        tuner["diverged"] = diverged
        if loss is not None:
            if math.isnan(tuner["loss0"]):
                tuner["loss0"] = loss
            blew = loss_blew_up(np.float64(loss), np.float64(tuner["loss0"]), self.blowup_factor)
            tuner["blew_up"] = bool(tuner["blew_up"] or blew)
        group["lr"], group["momentum"] = lr, mu

    def _meter(self, group: dict[str, Any]) -> MomentumMeter:
        """The closed loop's meter of a group, over the optimizer's own state."""
        return MomentumMeter(group["params"], group["estimator_beta"], state=self.state)

    def read(self) -> None:
        """Record the parameters that this worker reads now, for the closed loop's meter: call it just
        before the forward pass when other workers write to the same parameters. (Synchronous loops
        need not: the step reads the parameters itself.)"""
        for group in self.param_groups:
            if group["closed_loop"]:
                self._meter(group).read()

    def record(self) -> list[dict[str, Any]]:
        """Per group, the tuner's values after the last step (the names of
        :class:`asyncsim.yellowfin.YellowFinState`'s record) and the flags ``diverged``,
        ``blew_up``; the initial values before the first step."""
        out = []
        for group in self.param_groups:
            tuner = self.state[group["params"][0]].get("tuner") or _tuner_init(
                group, _resolve(group)
            )
            out.append(
                {**tuner["values"], "diverged": tuner["diverged"], "blew_up": tuner["blew_up"]}
            )
        return out


def _resolve(group: dict[str, Any]) -> dict[str, Any]:
    """The group's options, checked and resolved by :func:`~asyncsim.yellowfin.yellowfin_tuner`
    (scalars only: one group is one configuration)."""
    for name in ("beta", "target_momentum", "gain"):
        if np.ndim(group[name]) != 0:
            raise ValueError(f"{name} of a parameter group must be a scalar, got {group[name]!r}")
    if not isinstance(group["closed_loop"], bool):
        raise ValueError(f"closed_loop must be True or False, got {group['closed_loop']!r}")
    return _resolved(tuple(group[name] for name in _OPTIONS))


@functools.lru_cache(maxsize=64)
def _resolved(options: tuple) -> dict[str, Any]:
    """:func:`_resolve`'s work, once per distinct set of options (each step asks again)."""
    return dict(yellowfin_tuner(**dict(zip(_OPTIONS, options, strict=True))).hyperparameters)


def _tuner_init(group: dict[str, Any], hp: dict[str, Any]) -> dict[str, Any]:
    """A group's tuner state before its first step, in plain Python (``torch.load`` with
    ``weights_only=True`` reads it back)."""
    stats = statistics_init(hp["window"])
    lr0 = float(group["lr"])
    mu0 = float(group["momentum"]) if math.isnan(hp["target_momentum"]) else hp["target_momentum"]
    values = dict.fromkeys(_NAN_AT_START, math.nan) | dict.fromkeys(_FLAGS, False)
    values |= {"lr": lr0, "momentum": mu0, "mu_star": mu0}
    values |= {"lr_t": lr0, "mu_t": mu0, "lr_smoothed": lr0, "mu_smoothed": mu0}
    return {
        "step": 0,
        "window": stats.window.tolist(),
        "statistics": [float(v) for v in stats[1:]],
        "values": values,
        "diverged": False,
        "blew_up": False,
        "loss0": math.nan,
    }


def _apply(state: dict, p: torch.Tensor, g: torch.Tensor, lr: float, mu: float, form: str) -> None:
    """Step 8 on one parameter: heavy ball (``velocity`` = the last step) or framework
    (``momentum_buffer``, created at g where μ ≠ 0; untouched while μ = 0)."""
    if form == "heavy_ball":
        velocity = state.setdefault("velocity", torch.zeros_like(p))
        velocity.mul_(mu).add_(g, alpha=-lr)
        p.add_(velocity)
    elif mu != 0.0:
        buffer = state.get("momentum_buffer")
        if buffer is None:
            buffer = state["momentum_buffer"] = g.clone()
        else:
            buffer.mul_(mu).add_(g)
        p.add_(buffer, alpha=-lr)
    else:
        p.add_(g, alpha=-lr)


def _plain(value: Any) -> Any:
    """A NumPy scalar as a Python float or bool."""
    return bool(value) if isinstance(value, np.bool_) else float(value)
