"""The engine's recorder and divergence check: a unit on small inputs, then through run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from asyncsim.engine import _Divergence, _Recorder, run
from asyncsim.optim import sgd
from asyncsim.problems import Problem
from asyncsim.trace import Trace


def first_coordinate(w: np.ndarray) -> np.ndarray:
    return w[:, 0].copy()


def column(*values: float) -> np.ndarray:
    return np.array(values, dtype=np.float64)[:, None]


@dataclass
class Flagged:
    """A transformation state that records a ``diverged`` flag, as a tuner does."""

    diverged: np.ndarray

    def record(self) -> dict[str, Any]:
        return {"diverged": self.diverged}


# ------------------------------------------------------------------------------------------ divergence
def test_a_nan_loss_is_flagged_at_its_step_and_stays_flagged() -> None:
    div = _Divergence(first_coordinate, np.full(3, 10.0))
    np.testing.assert_array_equal(div.check(4, column(1.0, 2.0, 3.0)), [1.0, 2.0, 3.0])
    assert not div.any and div.at.tolist() == [-1, -1, -1]
    div.check(5, column(1.0, np.nan, 3.0))
    assert div.any
    assert div.flags.tolist() == [False, True, False]
    assert div.at.tolist() == [-1, 5, -1]
    div.check(6, column(1.0, 2.0, np.inf))  # a recovered loss stays flagged at its first step
    assert div.flags.tolist() == [False, True, True]
    assert div.at.tolist() == [-1, 5, 6]


def test_the_bound_is_exceeded_strictly_and_per_configuration() -> None:
    div = _Divergence(first_coordinate, np.array([10.0, 20.0]))
    div.check(1, column(10.0, 20.0))  # at the bound: not diverged
    assert not div.any
    div.check(2, column(10.5, 20.0))
    assert div.flags.tolist() == [True, False] and div.at.tolist() == [2, -1]
    div.check(3, column(10.5, 20.5))
    assert div.at.tolist() == [2, 3]


def test_the_states_diverged_flag_counts() -> None:
    div = _Divergence(first_coordinate, np.full(3, 10.0))
    div.check(7, column(1.0, 1.0, 1.0), Flagged(np.array([False, False, True])))
    assert div.at.tolist() == [-1, -1, 7]
    div.check(8, column(1.0, 1.0, 1.0), Flagged(np.array([True, False, True])))
    assert div.at.tolist() == [8, -1, 7]
    div.check(9, column(1.0, 1.0, 1.0), None)  # states without a flag change nothing
    assert div.at.tolist() == [8, -1, 7]


def test_freeze_zeroes_the_updates_of_flagged_configurations_only() -> None:
    div = _Divergence(first_coordinate, np.full(3, 1.0))
    div.check(1, column(0.0, 2.0, 0.0))
    updates = np.arange(6.0).reshape(3, 2) + 1
    np.testing.assert_array_equal(div.freeze(updates), [[1.0, 2.0], [0.0, 0.0], [5.0, 6.0]])


# ------------------------------------------------------------------------------------------ recorder
def recorder(steps: int, every: int | None, check_every: int, **options: Any) -> _Recorder:
    div = _Divergence(first_coordinate, np.full(2, 100.0))
    return _Recorder(
        div, lambda w: None, 2, steps=steps, every=every, check_every=check_every, **options
    )


def walk(rec: _Recorder, steps: int, loss_at=lambda t: column(t, t)) -> list[int]:
    """Drive the recorder as a loop does; return the steps it visited."""
    rec.record(0, loss_at(0), first_coordinate(loss_at(0)), None)
    visited = []
    for t in range(1, steps + 1):
        if t == rec.next_at:
            visited.append(t)
            if rec.visit(t, loss_at(t), None):
                break
    return visited


@pytest.mark.parametrize(
    ("steps", "every", "recorded"),
    [
        (10, 4, [0, 4, 8, 10]),
        (10, 5, [0, 5, 10]),
        (10, 1, list(range(11))),
        (10, None, [0, 10]),
        (10, 20, [0, 10]),
        (1, 1, [0, 1]),
    ],
)
def test_schedule_records_the_first_every_and_last_step(steps, every, recorded) -> None:
    rec = recorder(steps, every, check_every=1000)
    walk(rec, steps)
    result = rec.result()
    assert result["steps"].tolist() == recorded
    np.testing.assert_array_equal(result["loss"], np.column_stack([recorded, recorded]))
    assert result["distance"] is None and result["params"] is None


def test_visits_are_the_recorded_steps_and_the_checks_between() -> None:
    rec = recorder(10, 4, check_every=3)
    assert walk(rec, 10) == [3, 4, 6, 8, 9, 10]
    assert rec.result()["steps"].tolist() == [0, 4, 8, 10]


def test_divergence_is_checked_at_visits_only() -> None:
    rec = recorder(20, 10, check_every=4)
    walk(rec, 20, loss_at=lambda t: column(1.0, 1.0 if t < 5 else np.nan))
    assert rec.divergence.at.tolist() == [-1, 8]  # NaN from step 5, first looked at on step 8


def test_recorded_values_time_and_params() -> None:
    clock = np.array([0.5, 1.0, 1.5, 2.0])  # apply times of a shared trace, (steps,)
    rec = recorder(4, 2, check_every=1000, clock=clock, record_params=True)

    @dataclass
    class State:
        lr: float

        def record(self) -> dict[str, Any]:
            return {"lr": self.lr}

    w = column(1.0, 2.0)
    rec.record(0, w, first_coordinate(w), State(0.1))
    rec.visit(2, w + 1, State(0.2))
    w[:] = 7.0  # the recorder keeps copies
    rec.visit(4, w, State(0.3))
    result = rec.result()
    np.testing.assert_array_equal(result["time"], [[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]])
    np.testing.assert_array_equal(result["values"]["lr"], [[0.1, 0.1], [0.2, 0.2], [0.3, 0.3]])
    np.testing.assert_array_equal(result["params"][:, :, 0], [[1.0, 2.0], [2.0, 3.0], [7.0, 7.0]])


def test_stop_at_stops_at_a_recorded_step_once_every_configuration_reached_it() -> None:
    # configuration 0 reaches the target at step 3 (a check only) and is seen at the record of step 4;
    # configuration 1 dips below at step 6, comes back up, and still counts: reached is sticky.
    losses = {t: (5.0 if t < 3 else 0.5, 0.5 if t == 6 else 5.0) for t in range(13)}
    rec = recorder(12, 2, check_every=3, stop_at=1.0)
    visited = walk(rec, 12, loss_at=lambda t: column(*losses[t]))
    assert visited == [2, 3, 4, 6]
    assert rec.result()["steps"].tolist() == [0, 2, 4, 6]


def test_stop_at_counts_diverged_configurations_as_done() -> None:
    rec = recorder(12, 2, check_every=1000, stop_at=1.0)
    visited = walk(rec, 12, loss_at=lambda t: column(0.5 if t >= 4 else 5.0, np.nan))
    assert visited == [2, 4]
    assert rec.divergence.at.tolist() == [-1, 2]


def test_without_stop_at_the_run_records_to_the_end() -> None:
    rec = recorder(12, 4, check_every=1000)
    assert walk(rec, 12, loss_at=lambda t: column(0.0, 0.0)) == [4, 8, 12]


# ------------------------------------------------------------------------------------------ through run
@dataclass(frozen=True, eq=False)
class Ramp(Problem):
    """One coordinate that SGD with step α moves by α per update (gradient -1), w_t = α t; the loss
    is ``loss(w)`` of that coordinate."""

    loss_of: Any = None
    name: str = "ramp"
    dim: int = 1

    def init_params(self, batch: int) -> np.ndarray:
        return np.zeros((batch, 1))

    def loss(self, w: np.ndarray) -> np.ndarray:
        return self.loss_of(w[:, 0])

    def gradient(self, w, randomness, n_aggregated):
        return -np.ones_like(w)


NAN_FROM_10 = Ramp(lambda x: np.where(x >= 10.0, np.nan, 1.0))


def test_run_flags_a_nan_loss_at_its_step_and_freezes_the_configuration() -> None:
    # w_t = α t reaches 10 at t = 10, 5 and 20
    hist = run(NAN_FROM_10, sgd([1.0, 2.0, 0.5]), None, 30, check_every=1, record_every=None)
    assert hist.diverged.tolist() == [True, True, True]
    assert hist.diverged_at.tolist() == [10, 5, 20]
    np.testing.assert_array_equal(hist.final_params, [[10.0], [10.0], [10.0]])


def test_run_detects_at_the_next_check_or_record() -> None:
    # checks every 4 steps and at the last (30): the crossings at 10, 5, 20 are seen at 12, 8, 20
    hist = run(NAN_FROM_10, sgd([1.0, 2.0, 0.5]), None, 30, check_every=4, record_every=None)
    assert hist.diverged_at.tolist() == [12, 8, 20]
    np.testing.assert_array_equal(hist.final_params, [[12.0], [16.0], [10.0]])
    assert hist.steps.tolist() == [0, 30]
    np.testing.assert_array_equal(hist.loss[0], [1.0, 1.0, 1.0])


def test_run_flags_a_loss_above_the_bound() -> None:
    # loss 1 + w against the bound 5 · f(w_0) = 5: w_4 = 4 sits on it, w_5 = 5 exceeds it
    ramp = Ramp(lambda x: 1.0 + x)
    hist = run(ramp, sgd([1.0, 0.1]), None, 8, divergence_factor=5.0, check_every=1)
    assert hist.diverged.tolist() == [True, False]
    assert hist.diverged_at.tolist() == [5, -1]
    np.testing.assert_array_equal(hist.loss[5:, 0], [6.0] * 4)  # frozen where detected


def test_run_stops_at_the_recorded_step_where_all_reached_the_target() -> None:
    ramp = Ramp(lambda x: 10.0 - x)
    trace = Trace.from_staleness(np.zeros(50, dtype=np.int64))
    hist = run(ramp, sgd([1.0, 0.5]), trace, 50, record_every=5, stop_at=3.0)
    # configuration 0 gets to loss 3 at step 7, configuration 1 at step 14: stop at the record of 15
    assert hist.steps.tolist() == [0, 5, 10, 15]
    np.testing.assert_array_equal(hist.final_params, [[15.0], [7.5]])
    np.testing.assert_array_equal(hist.loss[-1], [-5.0, 2.5])


def test_stop_each_stops_every_configuration_at_its_own_stop() -> None:
    """With ``stop_each`` a configuration stops at its own record: its parameters stay and its rows
    repeat; the run still ends where every configuration has stopped."""
    ramp = Ramp(lambda x: 10.0 - x)
    trace = Trace.from_staleness(np.zeros(50, dtype=np.int64))
    hist = run(ramp, sgd([1.0, 0.5]), trace, 50, record_every=5, stop_at=3.0, stop_each=True)
    # configuration 0 reaches loss 3 at step 7 and is seen at the record of 10; configuration 1 at 15
    assert hist.steps.tolist() == [0, 5, 10, 15]
    np.testing.assert_array_equal(hist.final_params, [[10.0], [7.5]])
    np.testing.assert_array_equal(hist.loss[:, 0], [10.0, 5.0, 0.0, 0.0])
    np.testing.assert_array_equal(hist.loss[:, 1], [10.0, 7.5, 5.0, 2.5])
    assert hist.config["options"]["stop_each"] is True


class Counting(Problem):
    """The ramp, counting the rows its gradient and loss are asked for."""

    name: str = "counting"
    dim: int = 1

    def __init__(self) -> None:
        self.rows = {"gradient": 0, "loss": 0}

    def init_params(self, batch: int) -> np.ndarray:
        return np.zeros((batch, 1))

    def loss(self, w: np.ndarray) -> np.ndarray:
        self.rows["loss"] += w.shape[0]
        return 10.0 - w[:, 0]

    def gradient(self, w, randomness, n_aggregated):
        self.rows["gradient"] += w.shape[0]
        return -np.ones_like(w)


def test_stop_each_computes_no_gradient_or_loss_of_a_stopped_configuration() -> None:
    """α = 1 stops at the record of 10 (loss 0), α = 0.01 runs all 40 steps: 10 + 40 gradients,
    where a run without ``stop_each`` computes 2 · 40."""
    counting = Counting()
    run(counting, sgd([1.0, 0.01]), None, 40, record_every=10, stop_at=3.0, stop_each=True)
    assert counting.rows["gradient"] == 10 + 40
    # losses: both at 0 (the start), 10; then one row at 20, 30, 40
    assert counting.rows["loss"] == 2 + 2 + 3
    counting = Counting()
    run(counting, sgd([1.0, 0.01]), None, 40, record_every=10, stop_at=3.0)
    assert counting.rows["gradient"] == 2 * 40


def test_stop_each_needs_stop_at() -> None:
    with pytest.raises(ValueError, match=r"stop_each=True needs stop_at"):
        run(Ramp(lambda x: x), sgd(0.1), None, 5, stop_each=True)
    with pytest.raises(TypeError, match=r"stop_each must be a bool, got int"):
        run(Ramp(lambda x: x), sgd(0.1), None, 5, stop_at=1.0, stop_each=1)
