"""The experiments as library calls: each function on a problem and optimizer defined here, tiny
grids; the figures draw results and import none of the simulator."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from asyncsim import ClusterConfig, Deterministic
from asyncsim.experiments import (
    ExperimentResult,
    best_momentum,
    closed_loop,
    compute_groups,
    concurrently,
    momentum_against_variability,
    momentum_sweep,
    penalty,
    robust_region,
    single_run_momentum,
    staleness_law,
    total_momentum,
    tuners,
)
from asyncsim.optim import heavy_ball
from asyncsim.problems import Problem
from asyncsim.yellowfin import yellowfin_tuner

ROOT = Path(__file__).resolve().parents[1]


class Valley(Problem):
    """A user's problem: f(w) = ½ Σ h_i w_i² with curvatures h from 1 down to 0.1 and additive
    Gaussian gradient noise σ (σ = 0: noiseless), w_0 = 1."""

    name = "valley"
    affine_gradient = True

    def __init__(self, dim: int = 6, noise: float = 0.01) -> None:
        self.dim, self.noise = dim, noise
        self.curvatures = np.geomspace(1.0, 0.1, dim)
        self.target = 1e-2 * float(self.loss(self.init_params(1))[0])

    def init_params(self, batch: int) -> np.ndarray:
        return np.ones((batch, self.dim))

    def loss(self, w: np.ndarray) -> np.ndarray:
        return 0.5 * (self.curvatures * w * w).sum(axis=-1)

    def distance(self, w: np.ndarray) -> np.ndarray:
        return np.linalg.norm(w, axis=-1)

    def draw(self, rngs, steps, max_aggregated):
        if self.noise == 0.0:
            return None
        return np.stack([rng.standard_normal((steps, self.dim)) for rng in rngs])

    def mean_gradient(self, w: np.ndarray) -> np.ndarray:
        return self.curvatures * w

    def gradient(self, w, randomness, n_aggregated):
        if randomness is None:
            return self.mean_gradient(w)
        scale = self.noise / np.sqrt(np.asarray(n_aggregated, dtype=float))
        return self.mean_gradient(w) + randomness * (scale[:, None] if scale.ndim else scale)


def my_heavy_ball(lr, momentum, **options):
    """A user's optimizer factory."""
    return heavy_ball(lr, momentum)


def my_yellowfin(lr, momentum, **options):
    return yellowfin_tuner(lr_init=lr, momentum_init=0.0, **options)


def my_tuner(**options):
    return yellowfin_tuner(**options)


GRID = {"lrs": (0.25, 0.5), "momenta": (-0.3, 0.0, 0.3), "seeds": 2, "record_every": 5}


def _checked(result: ExperimentResult, name: str) -> ExperimentResult:
    assert isinstance(result, ExperimentResult) and result.name == name
    frame = result.to_frame()
    assert len(frame) > 0 and frame.attrs["experiment"] == name
    assert frame.attrs["seed"] == str(result.seed) == "3"
    return result


def test_staleness_law_of_a_users_clusters() -> None:
    clusters = [
        ("two equal", ClusterConfig(2, compute=Deterministic(1.0))),
        ("four", ClusterConfig(4)),
    ]
    data = _checked(staleness_law(clusters, updates=2000, rng=3), "staleness_law").data
    assert set(data["compute"]) == {"two equal", "four"}
    two = data[data["compute"] == "two equal"]
    assert (two["mean"] == 1.0).all() and (two["std"] == 0.0).all()  # staleness exactly M - 1


def test_best_momentum_and_penalty_share_a_sweep_on_a_users_problem() -> None:
    common = {"optimizer": my_heavy_ball, "workers": (1, 4), "steps": 400, **GRID, "rng": 3}
    best = _checked(best_momentum(Valley(), predict=False, **common), "best_momentum")
    assert set(best.data["kind"]) == {"grid"}
    assert best.config["problem"] == "valley" and best.config["optimizer"] == "my_heavy_ball"
    alone = momentum_sweep(Valley(), **common)  # the sweep the two can share
    np.testing.assert_array_equal(alone["iterations"], best.raw["sweep"]["iterations"])
    shared = penalty(Valley(), sweep=best.raw["sweep"], **common)
    assert _checked(shared, "penalty").raw["sweep"] is best.raw["sweep"]
    fixed = shared.data[shared.data["tuning"] == "μ = 0.9 fixed"]
    assert np.isinf(fixed["iterations"]).all()  # 0.9 is not on this grid


def test_single_run_momentum_on_a_noiseless_users_problem() -> None:
    result = single_run_momentum(
        Valley(noise=0.0),
        optimizer=my_heavy_ball,
        budget={1: 300, 4: 600},
        lrs=(0.5, 1.0),
        momenta=(0.0, 0.3, 0.6),
        seeds=2,
        target=1e-3,
        rng=3,
    )
    data = _checked(result, "single_run_momentum").data
    assert list(data["workers"]) == [1, 4] and np.isfinite(data["iterations"]).all()


def test_robust_region_on_a_users_quadratic() -> None:
    result = robust_region(
        Valley(noise=0.0), optimizer=my_heavy_ball, momenta=(0.5,), inside=3, steps=400, rng=3
    )
    measured = _checked(result, "robust_region").data.query("kind == 'measured' and inside")
    np.testing.assert_allclose(measured["rate"], measured["sqrt_momentum"], rtol=0.05)


def test_total_momentum_on_a_users_problem() -> None:
    result = total_momentum(
        Valley(),
        optimizer=my_heavy_ball,
        workers=(1, 4),
        momenta=(0.0, 0.5),
        lr=0.1,
        seeds=2,
        steps=3000,
        rng=3,
    )
    data = _checked(result, "total_momentum").data
    sync = data[data["mode"] == "sync"]
    np.testing.assert_allclose(sync["measured"], sync["explicit"], atol=0.05)
    assert len(result.raw["per_run"]) == 3 * 2 * 2  # (async 1, async 4, sync 4) x seeds x μ


def test_closed_loop_on_a_users_problem_and_factory() -> None:
    result = closed_loop(
        Valley(noise=0.3),  # at σ = 0.01 YellowFin diverges here, open loop and closed alike
        optimizer=my_yellowfin,
        cluster=ClusterConfig(4),
        target=0.8,
        gains=(0.05,),
        lr_init=0.1,
        seeds=2,
        steps=3000,
        rng=3,
    )
    data = _checked(result, "closed_loop").data
    assert set(data["loop"]) == {"open", "closed, γ = 0.05"}
    late = data[(data["gain"] > 0) & (data["step"] >= 1500)]
    assert abs(np.median(late["total"]) - 0.8) < 0.05  # the loop holds the total near μ* ...
    assert (
        abs(np.median(late["momentum"]) - late["fixed_point"].iloc[0]) < 0.1
    )  # ... at 1 - M(1 - μ*)
    assert len(result.raw["per_seed"]) == 2 * 2


def test_tuners_on_a_users_problem_and_tuner() -> None:
    result = tuners(
        Valley(),
        tuner=my_tuner,
        variants=(("mine", {"lr_init": 0.1}),),
        workers=(1,),
        lrs=(0.25, 0.5),
        adam_lrs=(0.05,),
        seeds=2,
        steps=600,
        rng=3,
    )
    data = _checked(result, "tuners").data
    assert set(data["method"]) == {"mine", "momentum (grid-tuned)", "adam (grid-tuned)"}
    assert len(result.raw["per_seed"]) == 3 * 2


def test_compute_groups_on_a_users_problem() -> None:
    result = compute_groups(
        Valley(),
        optimizer=my_heavy_ball,
        clusters=(("mine", ClusterConfig(4)),),
        groups=(1, 2, 4),
        steps=500,
        **GRID,
        rng=3,
    )
    data = _checked(result, "compute_groups").data
    assert list(data["groups"]) == [1, 2, 4] and data["best"].sum() >= 1
    np.testing.assert_allclose(data["hardware"].iloc[0], 1.0)


def test_momentum_against_variability_on_a_users_problem_and_factory() -> None:
    result = momentum_against_variability(
        (4,),
        (1.0, 0.2),
        problem=Valley(noise=0.1),
        optimizer=my_heavy_ball,
        probe_lrs=(0.1,),
        probe_steps=600,
        lrs=(0.25, 0.5),
        momenta=(-0.3, 0.0, 0.3),
        seeds=2,
        steps=600,
        rng=3,
        progress=False,
    )
    frame = result.to_frame()
    assert frame["cv"].tolist() == [1.0, 0.2] and result.problem == "valley"
    assert frame["staleness_std"].iloc[1] < frame["staleness_std"].iloc[0]  # regular compute
    assert np.isfinite(result.best_momentum_geometric).all()  # a quadratic: theory beside


def test_concurrently_gives_what_each_task_gives_alone() -> None:
    tasks = {
        "a": lambda executor: staleness_law(
            [("four", ClusterConfig(4))], updates=500, rng=1, executor=executor
        ),
        "b": lambda executor: staleness_law(
            [("two", ClusterConfig(2))], updates=500, rng=1, executor=executor
        ),
    }
    together = {name: value for name, value, _ in concurrently(tasks)}
    assert list(together) == ["a", "b"]
    alone = staleness_law([("two", ClusterConfig(2))], updates=500, rng=1)
    np.testing.assert_array_equal(together["b"].data["empirical"], alone.data["empirical"])


# ------------------------------------------------------------------------------------------ layers
def _imported(path: Path) -> set[str]:
    """Every module ``path`` imports, TYPE_CHECKING blocks left out."""
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            node.body = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def test_figures_draw_results_and_import_no_simulator() -> None:
    modules = sorted((ROOT / "asyncsim" / "figures").glob("*.py"))
    imported = set().union(*(_imported(path) for path in modules))
    simulator = {
        "asyncsim.engine",
        "asyncsim.sweep",
        "asyncsim.cluster",
        "asyncsim.trace",
        "theory",
    }
    assert not imported & simulator, imported & simulator
    assert "asyncsim.experiments" in imported


def test_the_import_check_can_fail(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from asyncsim.sweep import Sweep\nif TYPE_CHECKING:\n    import asyncsim.engine\n"
    )
    assert _imported(probe) == {"asyncsim.sweep", "asyncsim.sweep.Sweep"}


@pytest.mark.parametrize("scale", ["tiny", 3])
def test_bad_scale_is_named(scale) -> None:
    with pytest.raises(ValueError, match="scale must be one of"):
        staleness_law(scale=scale)
