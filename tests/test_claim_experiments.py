"""The experiments behind the newer rows of the claims table, each on a user-defined problem and
a factory optimizer at a tiny scale: implicit momentum and the mean-iterate optimum (expected
dynamics), the robust region on a non-convex objective, Adam's β1 under asynchrony, and compute
groups under the papers' convention; closed forms where there is one."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose

import theory
from asyncsim.cluster import ClusterConfig
from asyncsim.distributions import Deterministic
from asyncsim.engine import run
from asyncsim.experiments.adam import adam_beta1
from asyncsim.experiments.expected_dynamics import (
    implicit_momentum_equivalence,
    mean_iterate_momentum,
)
from asyncsim.experiments.group_conventions import (
    group_cluster,
    group_trace,
    groups_papers_convention,
)
from asyncsim.experiments.nonconvex import LogPeriodicCurvature, robust_region_nonconvex
from asyncsim.optim import adam, heavy_ball
from asyncsim.problems import Problem
from asyncsim.trace import StalenessLaw


# ------------------------------------------------------------------------------------------ a user's
class TinyQuadratic(Problem):
    """A user's problem: ``f = ½ Σ h_i w_i²`` from ones, with optional additive gradient noise σ/√k."""

    affine_gradient = True

    def __init__(self, curvatures=(1.0, 0.5, 0.2), noise: float = 0.0) -> None:
        self.curvatures = np.asarray(curvatures, dtype=np.float64)
        self.noise = float(noise)
        self.dim = self.curvatures.size
        self.name = "tiny-quadratic"
        self.target = 1e-3 * float(self.loss(self.init_params(1))[0])

    def init_params(self, batch: int) -> np.ndarray:
        return np.ones((batch, self.dim))

    def loss(self, w: np.ndarray) -> np.ndarray:
        return 0.5 * (w * w * self.curvatures).sum(axis=-1)

    def distance(self, w: np.ndarray) -> np.ndarray:
        return np.linalg.norm(w, axis=-1)

    def draw(self, rngs, steps, max_aggregated):
        if self.noise == 0.0:
            return None
        return np.stack([rng.standard_normal((steps, self.dim)) for rng in rngs])

    def mean_gradient(self, w: np.ndarray) -> np.ndarray:
        return w * self.curvatures

    def gradient(self, w, randomness, n_aggregated):
        g = self.mean_gradient(w)
        if randomness is None:
            return g
        k = np.reshape(np.asarray(n_aggregated, dtype=np.float64), (-1, 1))
        return g + self.noise * randomness / np.sqrt(k)


class Parabola1D(Problem):
    """A user's 1-D problem for the non-convex experiment: constant generalized curvature h."""

    dim = 1
    name = "parabola-1d"
    w_star = 0.5

    def __init__(self, h: float = 2.0) -> None:
        self.h = h
        self.curvature_range = (h, h)

    def init_params(self, batch: int) -> np.ndarray:
        return np.full((batch, 1), 3.0)

    def loss(self, w: np.ndarray) -> np.ndarray:
        return 0.5 * self.h * (w[:, 0] - self.w_star) ** 2

    def distance(self, w: np.ndarray) -> np.ndarray:
        return np.abs(w[:, 0] - self.w_star)

    def mean_gradient(self, w: np.ndarray) -> np.ndarray:
        return self.h * (w - self.w_star)

    def gradient(self, w, randomness, n_aggregated):
        return self.mean_gradient(w)


def my_heavy_ball(lr, momentum):
    """A user's factory ``(lr, momentum) -> GradientTransformation``."""
    return heavy_ball(lr, momentum)


def my_adam(lr, momentum, *, b1=0.9):
    """A user's Adam factory: μ unused, β1 an option."""
    return adam(lr, b1=b1)


# ------------------------------------------------------------------------------------------ Thm 3/5/6
def test_expected_iterate_is_the_heavy_ball_after_the_first_step():
    """What is exactly true (theory/README.md §2): the expected recursion under geometric staleness
    with μ = 0 is the heavy ball with (α/M, 1 - 1/M) for t ≥ 1, started from w_1 = w_0 - α∇f(w_0)
    (not the heavy ball's w_0 - (α/M)∇f(w_0)); the law truncated at 1e-30 leaves ~1e-30."""
    problem, m, alpha, steps = TinyQuadratic(), 4, 1.5, 80
    hist = run(
        problem,
        heavy_ball(alpha, 0.0),
        StalenessLaw.geometric(m, tail=1e-30),
        steps,
        record_params=True,
        estimate_momentum=False,
    )
    w = [problem.init_params(1)[0]]
    w.append(w[0] - alpha * problem.mean_gradient(w[0][None])[0])
    for _ in range(steps - 1):
        grad = problem.mean_gradient(w[-1][None])[0]
        w.append(w[-1] + (1 - 1 / m) * (w[-1] - w[-2]) - alpha / m * grad)
    assert_allclose(hist.params[:, 0], np.array(w), rtol=0, atol=1e-12)


def test_implicit_momentum_equivalence_on_a_users_problem():
    result = implicit_momentum_equivalence(
        TinyQuadratic(),
        optimizer=my_heavy_ball,
        workers=(1, 4),
        momenta=(-0.3, 0.0),
        effective_steps=(0.5,),
        steps=600,
        rng=0,
    )
    data = result.data
    assert len(data) == 4 and result.config["optimizer"] == "my_heavy_ball"
    plain = data[data["momentum"] == 0.0]
    # μ = 0: the same recursion, so the same rate (up to the fit of the log envelope)
    assert (plain["relative_difference"] < 1e-4).all()
    assert (plain["heavy_ball_difference"] < 1e-4).all()
    # explicit μ: the exact rate is the cubic's; the total-momentum heavy ball only approximates it
    assert (data["exact_difference"] < 1e-2).all()
    explicit = data[(data["momentum"] != 0.0) & (data["workers"] > 1)]
    assert (explicit["relative_difference"] > 1e-2).all()
    assert_allclose(
        data["total_momentum"], theory.total_momentum(data["momentum"], data["workers"])
    )


def test_mean_iterate_momentum_on_a_users_problem():
    momenta = tuple(np.round(np.arange(-0.5, 0.51, 0.1), 2))
    result = mean_iterate_momentum(
        TinyQuadratic(),
        optimizer=my_heavy_ball,
        budget={1: 60, 4: 200},
        momenta=momenta,
        effective_steps=(0.5, 1.0, 2.0),
        rng=0,
    )
    data = result.data.set_index("workers")
    assert list(data.index) == [1, 4]
    # by rate, the grid's best μ is theory's best on the same grid (within one grid step)
    assert (np.abs(data["momentum_by_rate"] - data["theory_grid_momentum"]) <= 0.1 + 1e-9).all()
    # the optimum falls with M (AbM Fig. 6)
    assert data.loc[4, "theory_momentum"] < data.loc[1, "theory_momentum"]
    assert data.loc[4, "momentum_by_rate"] < data.loc[1, "momentum_by_rate"]
    cases = result.raw["per_case"]
    converging = cases[(cases["exact"] < 0.97) & np.isfinite(cases["rate"])]
    assert len(converging) > 10
    assert_allclose(converging["rate"], converging["exact"], rtol=0.05)


# ------------------------------------------------------------------------------------------ YF §3
def test_log_periodic_curvature_closed_forms():
    p = LogPeriodicCurvature()
    x = np.linspace(-3, 3, 61)[:, None] + 1e-3
    eps = 1e-6
    numeric = (p.loss(x + eps) - p.loss(x - eps)) / (2 * eps)
    assert_allclose(p.mean_gradient(x)[:, 0], numeric, rtol=1e-6, atol=1e-8)
    second = (p.mean_gradient(x + eps) - p.mean_gradient(x - eps))[:, 0] / (2 * eps)
    assert_allclose(p.curvature(x), second, rtol=1e-5, atol=1e-6)
    h = p.generalized_curvature(x)
    assert_allclose(h, p.mean_gradient(x)[:, 0] / (x[:, 0] - p.w_star))
    assert (h >= 0.2 - 1e-12).all() and (h <= 1.8 + 1e-12).all()
    assert (p.curvature(x) < 0).any() and (p.loss(x) >= 0).all()
    with pytest.raises(ValueError, match="h0 > b"):
        LogPeriodicCurvature(h0=0.5, b=0.8)


def test_robust_region_nonconvex_on_a_users_problem():
    """On a 1-D quadratic (constant generalized curvature) the rate inside the region is √μ."""
    result = robust_region_nonconvex(
        Parabola1D(), optimizer=my_heavy_ball, momenta=(0.49, 0.81), inside=4, steps=600, rng=0
    )
    data = result.data
    inside, below = data[data["inside"]], data[~data["inside"] & (data["lr"] < 0.1)]
    assert len(inside) == 8 and len(below) == 4
    assert (inside["relative_difference"] < 0.01).all()
    assert_allclose(inside["operator_max"], inside["sqrt_momentum"], rtol=1e-6)
    assert (below["measured"] > below["sqrt_momentum"] * 1.01).all()
    assert data["nonconvex_steps"].isna().all()  # the user's problem has no f''


def test_robust_region_nonconvex_default_problem_meets_its_whole_range():
    data = robust_region_nonconvex(momenta=(0.81,), inside=3, steps=400, rng=0).data
    inside = data[data["inside"]]
    assert (inside["operator_max"] <= 0.9 + 1e-9).all()
    assert (inside["nonconvex_steps"] > 0.1).all()
    assert (inside["h_min_visited"] < 0.3).all() and (inside["h_max_visited"] > 1.7).all()


# ------------------------------------------------------------------------------------------ Adam β1
def test_adam_beta1_on_a_users_problem():
    kwargs = {
        "optimizer": my_adam,
        "workers": (1, 4),
        "betas": (0.0, 0.9),
        "lrs": (0.05, 0.1),
        "seeds": 2,
        "steps": 300,
        "record_every": 5,
        "rng": 3,
    }
    result = adam_beta1(TinyQuadratic(noise=0.01), **kwargs)
    data = result.data
    assert len(data) == 4 and set(result.raw["sweeps"]) == {0.0, 0.9}
    assert (data.groupby("workers")["relative"].min() == 1.0).all()
    assert (data["relative"] >= 1.0).all()
    per_seed = result.raw["per_seed"]
    assert len(per_seed) == 2 * 2 * 2
    medians = per_seed.groupby(["workers", "b1"])["iterations"].median()
    assert_allclose(
        medians.to_numpy(), data.set_index(["workers", "b1"])["iterations"][medians.index]
    )
    again = adam_beta1(TinyQuadratic(noise=0.01), **kwargs)
    assert again.data.equals(data)


# ------------------------------------------------------------------------------------------ groups
def test_group_trace_papers_convention():
    template = ClusterConfig(4, compute=Deterministic(1.0))
    papers = group_trace(template, 2, 50, sync=0.1, rng=0)
    assert (papers.n_aggregated == 1).all()
    assert group_cluster(template, 2, sync=0.1).time_multipliers == (0.5,) * 4
    aggregate = group_trace(template, 2, 50, convention="aggregate", rng=0)
    assert (aggregate.n_aggregated == 2).all()


def test_groups_papers_convention_on_a_users_problem():
    """Deterministic compute 1 on 4 workers, sync 0.1: a group of k updates every 1/k + 0.1 (k > 1),
    so the time per update is (1/k + 0.1)/g under the papers' convention and 1/g otherwise."""
    result = groups_papers_convention(
        TinyQuadratic(noise=0.02),
        optimizer=my_heavy_ball,
        clusters=(("deterministic", ClusterConfig(4, compute=Deterministic(1.0))),),
        groups=(1, 2, 4),
        sync=0.1,
        conventions=("papers", "aggregate"),
        lrs=(0.2, 0.5),
        momenta=(0.0, 0.5),
        seeds=2,
        steps=400,
        record_every=2,
        rng=0,
    )
    data = result.data.set_index(["convention", "groups"])
    assert_allclose(
        data.loc["papers", "time_per_update"], [0.25 + 0.1, (0.5 + 0.1) / 2, 1 / 4], rtol=1e-9
    )
    assert_allclose(data.loc["aggregate", "time_per_update"], [1.0, 0.5, 0.25], rtol=1e-9)
    assert_allclose(data["time_to_target"], data["time_per_update"] * data["iterations"])
    for _, part in result.data.groupby("convention"):
        fastest = int(part.loc[part["time_to_target"].idxmin(), "groups"])
        assert part["intermediate_best"].all() == (fastest == 2)
        assert part["relative_time"].iloc[0] == 1.0
    assert len(result.raw["per_run"]) == 2 * 3 * 2 * 4


def test_groups_papers_convention_serial_and_parallel_agree():
    kwargs = {
        "clusters": (("exp", ClusterConfig(4)),),
        "groups": (1, 4),
        "lrs": (0.3,),
        "momenta": (0.0,),
        "seeds": 2,
        "steps": 200,
        "record_every": 5,
        "rng": 1,
    }
    serial = groups_papers_convention(TinyQuadratic(noise=0.02), **kwargs)
    parallel = groups_papers_convention(TinyQuadratic(noise=0.02), jobs=2, **kwargs)
    assert serial.raw["per_run"].equals(parallel.raw["per_run"])


@pytest.mark.parametrize(
    ("arguments", "message"),
    [({"sync": -0.1}, "sync"), ({"conventions": ("papers", "members")}, "conventions")],
)
def test_groups_papers_convention_rejects_bad_inputs(arguments, message):
    with pytest.raises(ValueError, match=message):
        groups_papers_convention(TinyQuadratic(), **arguments)
