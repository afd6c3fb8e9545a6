"""Optimizers as pure ``init`` / ``update`` transformations over batches of parameters, as in optax.

Parameters are arrays of shape ``(B, d)``: B independent configurations in lockstep. Hyperparameters are
scalars or arrays of shape ``(B,)``, so one run covers a grid. ``update(grads, state, params, context)``
returns ``(updates, new_state)`` and the engine applies ``w ← w + updates``. A transformation never
modifies its inputs; YellowFin updates its own state's arrays in place (keep no reference to an old
state of it; the engine never does). ``context`` is the engine's
:class:`StepContext` (writer, the parameters it read, its previous read, gradients aggregated), which most
transformations ignore.

A state may define ``record() -> dict[str, ndarray (B,)]``: the values the engine records at each recorded
step (the applied ``lr`` and ``momentum``, and anything a tuner wants plotted).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, Protocol

import numpy as np

from asyncsim._validate import check_array, check_real

__all__ = [
    "GradientTransformation",
    "StepContext",
    "adam",
    "chain",
    "compact",
    "heavy_ball",
    "hyperparameter",
    "implied_batch",
    "nesterov",
    "plain_hyperparameter",
    "published_of",
    "record_of",
    "scale",
    "sgd",
]


class StepContext(Protocol):
    """What the engine knows about the update being applied (read-only).

    ``step`` counts arrivals (gradients received, 0-based). The current parameters are the ``params``
    argument of ``update``; ``read_params`` are the parameters the worker read (the transformation's
    ``read_point`` of the version it read, where it has one). ``staleness`` is τ: the versions
    *published* between the worker's read and this arrival (an arrival that a method discards or
    buffers publishes none; see :func:`published_of`); a read before the start counts from w_0.
    """

    step: int
    writer: np.ndarray  # (B,) int64 worker or group id, -1 unknown
    n_aggregated: np.ndarray  # (B,) gradients aggregated in this update
    read_params: np.ndarray  # (B, d) the parameters the gradient was computed at
    staleness: np.ndarray  # (B,) int64 published versions between the read and this arrival

    def previous_read_params(self) -> np.ndarray:
        """(B, d) the parameters the same writer read for its previous update (w_0 if none)."""
        ...

    def has_previous_read(self) -> np.ndarray:
        """(B,) bool: whether the writer had a previous update."""
        ...


class GradientTransformation(NamedTuple):
    """A pair of pure functions: ``init(params) -> state`` and
    ``update(grads, state, params, context) -> (updates, state)``.

    ``batch`` is the number of configurations its array hyperparameters imply (None when all are
    scalars), so that :func:`asyncsim.engine.run` can size the batch from the transformation alone.
    ``name`` and ``hyperparameters`` say what the transformation is, for the record a run keeps
    (``History.config``): the factory's name and its arguments as plain Python values (a float, or
    a tuple of B floats for an array hyperparameter); None where the factory does not declare them.
    ``needs`` names what the update requires of the staleness source beyond a gradient:
    ``"writers"`` (each update's worker id in the step context, which a cluster trace gives and an
    i.i.d. staleness law does not); :func:`asyncsim.engine.run` refuses a source that lacks it; and
    ``"reads"`` (the realized reads: τ and the parameters read, which the expected-dynamics mode,
    averaging over a staleness law, does not have).

    ``read_point(state, params) -> sent`` (B, d), where given, is what the server sends a worker that
    reads now (a look-ahead point, say) instead of the current parameters; the engine computes it
    once per published version from the state at that version and keeps it with every read of that
    version (it implies ``"reads"``). None: workers read the current parameters.

    >>> t = heavy_ball([0.1, 0.2], 0.5)
    >>> t.name, t.hyperparameters
    ('heavy_ball', {'lr': (0.1, 0.2), 'momentum': 0.5})
    """

    init: Callable[[np.ndarray], Any]
    update: Callable[[np.ndarray, Any, np.ndarray, Any], tuple[np.ndarray, Any]]
    batch: int | None = None
    name: str | None = None
    hyperparameters: Mapping[str, Any] | None = None
    needs: frozenset[str] = frozenset()
    read_point: Callable[[Any, np.ndarray], np.ndarray] | None = None


def implied_batch(*values: Any) -> int | None:
    """The batch size that array-valued hyperparameters imply; raises if they disagree."""
    sizes = {
        int(np.size(v)) for v in values if v is not None and np.ndim(v) == 1 and np.size(v) != 1
    }
    if len(sizes) > 1:
        raise ValueError(
            f"array hyperparameters must share one batch size, got sizes {sorted(sizes)}"
        )
    return sizes.pop() if sizes else None


#: Allowed ranges, as keyword arguments of :func:`~asyncsim._validate.check_array`.
STEP_SIZE: dict[str, Any] = {"low": 0.0, "low_open": True}  # α in (0, inf)
MOMENTUM: dict[str, Any] = {
    "low": -1.0,
    "high": 1.0,
    "low_open": True,
    "high_open": True,
}  # μ in (-1, 1)


def plain_hyperparameter(value: Any) -> float | tuple[float, ...]:
    """A validated scalar or ``(B,)`` hyperparameter as plain Python: a float, or a tuple of floats
    (what :attr:`GradientTransformation.hyperparameters` holds)."""
    arr = np.asarray(value, dtype=np.float64)
    return float(arr) if arr.ndim == 0 else tuple(arr.reshape(-1).tolist())


def hyperparameter(name: str, value: Any, batch: int, **bounds: Any) -> np.ndarray:
    """Broadcast a scalar or ``(B,)`` hyperparameter to a validated column of shape ``(B, 1)``;
    ``bounds`` are the allowed range as :func:`~asyncsim._validate.check_array` takes it."""
    arr = check_array(name, value, **bounds)
    if arr.ndim > 1 or (arr.ndim == 1 and arr.shape[0] not in (1, batch)):
        raise ValueError(
            f"{name} must be a scalar or have shape ({batch},) to match the batch, got shape {arr.shape}"
        )
    return np.broadcast_to(arr.reshape(-1, 1), (batch, 1)).copy()


def record_of(state: Any) -> dict[str, np.ndarray]:
    """The recorded values of a state, merged through nested (chained) states."""
    if hasattr(state, "record"):
        return state.record()
    if isinstance(state, tuple):
        merged: dict[str, np.ndarray] = {}
        for inner in state:
            merged.update(record_of(inner))
        return merged
    return {}


def published_of(state: Any) -> np.ndarray | None:
    """Whether the update just made publishes a new version, (B,) bool, through nested (chained)
    states: a state that may hold a gradient back (discard it, or buffer it) says so in a
    ``published`` attribute, and returns a zero update where it is False. None when no state has
    one: every arrival publishes."""
    if isinstance(state, tuple) and not hasattr(state, "published"):
        flags = [f for f in (published_of(inner) for inner in state) if f is not None]
        return np.logical_and.reduce(flags) if flags else None
    return getattr(state, "published", None)


# ------------------------------------------------------------------------------------------ sgd, scale
class ScaleState(NamedTuple):
    lr: np.ndarray  # (B, 1)

    def record(self) -> dict[str, np.ndarray]:
        return {"lr": self.lr[:, 0]}


def sgd(lr: Any) -> GradientTransformation:
    """Plain SGD, ``w ← w - α g``.

    Parameters
    ----------
    lr : float or array (B,)
        Step size α > 0.
    """
    check_array("lr", lr, **STEP_SIZE)

    def init(params: np.ndarray) -> ScaleState:
        return ScaleState(hyperparameter("lr", lr, params.shape[0], **STEP_SIZE))

    def update(grads, state, params, context=None):
        return -state.lr * grads, state

    return GradientTransformation(
        init, update, implied_batch(lr), "sgd", {"lr": plain_hyperparameter(lr)}
    )


def scale(factor: Any) -> GradientTransformation:
    """Multiply the incoming updates by a factor (scalar or (B,)); a building block for ``chain``."""
    check_array("factor", factor)

    def init(params: np.ndarray) -> np.ndarray:
        return hyperparameter("factor", factor, params.shape[0])

    def update(grads, state, params, context=None):
        return state * grads, state

    return GradientTransformation(
        init, update, implied_batch(factor), "scale", {"factor": plain_hyperparameter(factor)}
    )


# ------------------------------------------------------------------------------------------ momentum
class MomentumState(NamedTuple):
    velocity: np.ndarray  # (B, d) last applied update w_t - w_{t-1}
    lr: float | np.ndarray  # a float when the batch shares it, else (B, 1)
    momentum: float | np.ndarray

    def record(self) -> dict[str, np.ndarray]:
        b = self.velocity.shape[0]
        return {"lr": _per_row(self.lr, b), "momentum": _per_row(self.momentum, b)}


def _per_row(value: float | np.ndarray, batch: int) -> np.ndarray:
    """A float or a (B, 1) column as a (B,) array, in about a microsecond (``np.broadcast_to``
    takes seven): it is recorded at every record of a run."""
    if np.ndim(value) == 0:
        return np.full(batch, value, dtype=np.float64)
    if np.size(value) == batch:
        return np.reshape(value, batch)
    return np.broadcast_to(np.ravel(value), (batch,))  # a column of one, say


def compact(column: np.ndarray) -> float | np.ndarray:
    """A ``(B, 1)`` hyperparameter column as a Python float when every configuration shares it (a
    scalar factor multiplies fastest), else the column itself."""
    first = column[0, 0]
    return float(first) if (column == first).all() else column


def _momentum(lr: Any, momentum: Any, nesterov_form: bool) -> GradientTransformation:
    """Heavy ball, or Nesterov's look-ahead form with ``nesterov_form``."""
    check_array("lr", lr, **STEP_SIZE)
    check_array("momentum", momentum, **MOMENTUM)

    def init(params: np.ndarray) -> MomentumState:
        b = params.shape[0]
        return MomentumState(
            np.zeros_like(params),
            compact(hyperparameter("lr", lr, b, **STEP_SIZE)),
            compact(hyperparameter("momentum", momentum, b, **MOMENTUM)),
        )

    def update(grads, state, params, context=None):
        step = state.lr * grads
        velocity = state.momentum * state.velocity  # u ← μ u - α g, a new array: states stay pure
        velocity -= step
        if nesterov_form:
            # Sutskever's form written on the look-ahead iterate: Δw = μ u - α g.
            return state.momentum * velocity - step, state._replace(velocity=velocity)
        return velocity, state._replace(velocity=velocity)

    return GradientTransformation(
        init,
        update,
        implied_batch(lr, momentum),
        "nesterov" if nesterov_form else "heavy_ball",
        {"lr": plain_hyperparameter(lr), "momentum": plain_hyperparameter(momentum)},
    )


def heavy_ball(lr: Any, momentum: Any) -> GradientTransformation:
    """Heavy-ball momentum [Polyak 1964], ``w ← w - α g + μ (w - w_prev)``.

    Parameters
    ----------
    lr : float or array (B,)
        Step size α > 0.
    momentum : float or array (B,)
        μ in (-1, 1); negative values are allowed (asynchrony adds implicit momentum that a negative
        explicit momentum can cancel).
    """
    return _momentum(lr, momentum, nesterov_form=False)


def nesterov(lr: Any, momentum: Any) -> GradientTransformation:
    """Nesterov momentum: ``u ← μ u - α g``, ``w ← w + μ u - α g`` (the look-ahead form used by
    PyTorch and optax), with μ in (-1, 1) and α > 0 as in :func:`heavy_ball`."""
    return _momentum(lr, momentum, nesterov_form=True)


# ------------------------------------------------------------------------------------------ adam
class AdamState(NamedTuple):
    mu: np.ndarray  # (B, d) first-moment EMA
    nu: np.ndarray  # (B, d) second-moment EMA
    steps: int  # updates so far
    lr: np.ndarray  # (B, 1)

    def record(self) -> dict[str, np.ndarray]:
        return {"lr": self.lr[:, 0]}


def adam(lr: Any, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> GradientTransformation:
    """Adam [Kingma & Ba 2015]: bias-corrected moment EMAs, ``w ← w - α m̂ / (√v̂ + ε)``.

    Parameters
    ----------
    lr : float or array (B,)
        Step size α > 0.
    b1, b2 : float
        EMA factors in [0, 1).
    eps : float
        ε > 0 added to the root of the second moment.
    """
    check_array("lr", lr, **STEP_SIZE)
    check_real("b1", b1, low=0.0, high=1.0, high_open=True)
    check_real("b2", b2, low=0.0, high=1.0, high_open=True)
    check_real("eps", eps, low=0.0, low_open=True)

    def init(params: np.ndarray) -> AdamState:
        zeros = np.zeros_like(params)
        lr_col = hyperparameter("lr", lr, params.shape[0], **STEP_SIZE)
        return AdamState(zeros, zeros.copy(), 0, lr_col)

    def update(grads, state, params, context=None):
        count = state.steps + 1
        mu = b1 * state.mu + (1.0 - b1) * grads
        nu = b2 * state.nu + (1.0 - b2) * grads * grads
        step_size = state.lr * (np.sqrt(1.0 - b2**count) / (1.0 - b1**count))
        return -step_size * mu / (np.sqrt(nu) + eps * np.sqrt(1.0 - b2**count)), AdamState(
            mu, nu, count, state.lr
        )

    hyperparameters = {
        "lr": plain_hyperparameter(lr),
        "b1": float(b1),
        "b2": float(b2),
        "eps": float(eps),
    }
    return GradientTransformation(init, update, implied_batch(lr), "adam", hyperparameters)


# ------------------------------------------------------------------------------------------ chain
def chain(*transforms: GradientTransformation) -> GradientTransformation:
    """Apply transformations in sequence, each to the previous one's output; the state is a tuple.

    Its name lists the parts, and its hyperparameters are theirs prefixed by their position:

    >>> t = chain(scale(2.0), sgd(0.1))
    >>> t.name, t.hyperparameters
    ('chain(scale, sgd)', {'0.factor': 2.0, '1.lr': 0.1})
    """
    if not transforms or not all(isinstance(t, GradientTransformation) for t in transforms):
        raise TypeError("chain takes one or more GradientTransformation arguments")

    def init(params: np.ndarray) -> tuple:
        return tuple(t.init(params) for t in transforms)

    def update(grads, state, params, context=None):
        new_states = []
        for t, s in zip(transforms, state, strict=True):
            grads, s = t.update(grads, s, params, context)
            new_states.append(s)
        return grads, tuple(new_states)

    points = [(i, t.read_point) for i, t in enumerate(transforms) if t.read_point is not None]

    def read_point(state, params):
        for i, point in points:  # each part's look-ahead, in order
            params = point(state[i], params)
        return params

    name = f"chain({', '.join(t.name or '?' for t in transforms)})"
    hyperparameters = {
        f"{i}.{key}": value
        for i, t in enumerate(transforms)
        for key, value in (t.hyperparameters or {}).items()
    }
    return GradientTransformation(
        init,
        update,
        implied_batch(*(np.empty(t.batch or 1) for t in transforms)),
        name,
        hyperparameters,
        frozenset().union(*(t.needs for t in transforms)),
        read_point if points else None,
    )
