"""YellowFin against other settings: the closed loop against the open loop under asynchrony, the tuner
against grid-tuned momentum SGD and Adam, and the randomness of both (keyed by value, recorded).

Numbers quoted in comments were measured with the seeds used here; tolerances are stated per assert.
"""

from __future__ import annotations

import numpy as np
import pytest

from asyncsim._rng import SeedRecord
from asyncsim.comparisons import compare_closed_loop, compare_tuners

#: The closed-loop experiments start from the shipped code's α_0 = 1e-4: the paper's α_0 = 1 diverges
#: under asynchrony (test_yellowfin.py::test_paper_initial_step_diverges_under_asynchrony).
ASYNC_START = {"lr_init": 1e-4}


# ------------------------------------------------------------------------------------------ closed loop
@pytest.mark.slow
def test_closed_loop_against_open_loop_at_sixteen_workers() -> None:
    """Median updates to target at M = 16 (event traces), open loop (gain 0) against the closed loop
    with γ ∈ {0.01, 0.05, 0.1}, for fixed μ* ∈ {0.9, 0.669} and the tuner's own μ*.

    Measured (rng = 7; 8 seeds, nq50, 13000 updates / 6 seeds, digits-mlp, 10000 updates; median
    updates, open → closed γ = 0.01, 0.05, 0.1): μ* = 0.9: 3480 → 10590, 11660, 11670 / 3700 →
    >10000 (all); μ* = 0.669: 2190 (2 of 8 diverged) → 4320, 4470, 4470 / 5040 (2 of 6 missed, one
    at 6840) → 4470, 4430, 4400; tuned: diverged in 8 of 8 → 1570, 1650, 1690 (1, 2, 3 of 8
    diverged) / 1930 (1 of 6 missed) → 2270 (all γ, every run). With 16 seeds on digits-mlp the tuned
    open loop's median is 1940 (2 missed, the others 1520-4380) and the closed loop's 2180 (every
    run, 2000-2460). The loop removes the implicit momentum (total held at μ*) and with it the
    1/(1 - μ_total) gain on YellowFin's small α: slower where the open loop is stable; where the open
    loop's total momentum ≈ 0.99 with a large α diverges or bounces (the tuned target, whose α
    grows), it trades a little speed for reaching the target in every run, with a narrow spread."""
    nq = compare_closed_loop("nq50", seeds=4, steps=13_000, rng=7, **ASYNC_START)
    mlp = compare_closed_loop("digits-mlp", seeds=3, steps=5000, rng=7, **ASYNC_START)
    open_, closed = 0, slice(1, None)
    nine, six, tuned = 0, 1, 2
    # μ* = 0.9: slower with the loop on both problems (here 3470 → 10390-11670; 3600 → >5000)
    assert (nq.iterations[nine, closed] > 2 * nq.iterations[nine, open_]).all()
    assert (mlp.iterations[nine, closed] > 1.3 * mlp.iterations[nine, open_]).all()
    for result in (nq, mlp):
        # μ* = 0.669: the loop saturates at the clamp (fixed point -4.3) and reaches the target in
        # every run, later than the open loop's runs that did not fail (here 1 of 4 and 1 of 3 did)
        assert (result.momentum[six, closed] < -0.8).all()
        assert np.isfinite(result.per_seed[six, closed]).all()
        open_runs = result.per_seed[six, open_]
        assert np.median(open_runs[np.isfinite(open_runs)]) < result.iterations[six, closed].min()
    # the tuner's own μ*: on digits-mlp the loop reaches the target in every run, its runs within
    # 30% of each other, at most 25% slower than the open loop's median (here 2260 against 2060,
    # runs 2240-2460 against 1520, 2060 and a miss; 1.18x with 6 seeds, 1.12x with 16); on nq50 the
    # tuned α outgrows stability at M = 16 and every open-loop run diverges (here 4 of 4; closed
    # 0, 1 and 2 of 4)
    assert (mlp.iterations[tuned, closed] <= 1.25 * mlp.iterations[tuned, open_]).all()
    assert np.isfinite(mlp.per_seed[tuned, closed]).all()
    runs = mlp.per_seed[tuned, closed]
    assert (runs.max(axis=1) <= 1.3 * runs.min(axis=1)).all()
    assert nq.diverged[tuned, open_] >= 1


def test_closed_loop_streams_are_keyed_by_seed_and_recorded() -> None:
    """Seed s draws from its own streams: adding a seed or a target changes no other run, and the
    recorded root makes the same result again."""
    options = {"n_workers": 4, "gains": (0.1,), "steps": 1500, "record_every": 20} | ASYNC_START
    both = compare_closed_loop("nq50", targets=(0.9, None), seeds=2, rng=11, **options)
    assert both.seed == SeedRecord(11)
    more_seeds = compare_closed_loop("nq50", targets=(0.9, None), seeds=3, rng=11, **options)
    one_target = compare_closed_loop("nq50", targets=(None,), seeds=2, rng=11, **options)
    again = compare_closed_loop(
        "nq50", targets=(0.9, None), seeds=2, rng=both.seed.sequence(), **options
    )
    assert np.isfinite(both.per_seed[1]).sum() >= 2  # the tuned target: runs to compare
    np.testing.assert_array_equal(more_seeds.per_seed[..., :2], both.per_seed)
    np.testing.assert_array_equal(one_target.per_seed[0], both.per_seed[1])
    np.testing.assert_array_equal(again.per_seed, both.per_seed)
    assert again.seed == both.seed
    other = compare_closed_loop("nq50", targets=(0.9, None), seeds=2, rng=12, **options)
    assert other.seed == SeedRecord(12) and not np.array_equal(other.per_seed, both.per_seed)


# ------------------------------------------------------------------------------------------ tuners
def test_compare_tuners_runs_and_reports_side_by_side() -> None:
    """Small grids here; the full comparison (theory/README.md §5 grids and seeds) is in the report."""
    lrs = tuple(2.0 ** np.arange(-8.0, 1.5))
    result = compare_tuners(
        "nq50", seeds=3, steps=3000, lrs=lrs, momenta=(0.0, 0.45, 0.9), adam_lrs=lrs[:-2], rng=3
    )
    assert result.methods == ("yellowfin", "momentum", "adam")
    assert result.iterations.shape == (3,) and result.per_seed.shape == (3, 3)
    np.testing.assert_array_equal(result.iterations, np.median(result.per_seed, axis=1))
    assert result.best[1]["lr"] in lrs and result.best[1]["momentum"] in (0.0, 0.45, 0.9)
    assert np.isfinite(result.iterations[1:]).all()  # the grids reach the target
    # the paper variant's α, set by the ‖g‖² proxy, keeps the loss at a noise floor above the target
    # for thousands of updates: clearly slower than tuned momentum (here 290 updates; YellowFin
    # reached the target in 1 of 3 runs, after 2810)
    assert result.iterations[0] > 3 * result.iterations[1]
    assert result.seed == SeedRecord(3)
    frame = result.to_frame()
    assert list(frame["method"]) == list(result.methods)
    mlp = compare_tuners(
        "digits-mlp", seeds=1, steps=200, lrs=(0.1, 0.4), momenta=(0.0, 0.9), adam_lrs=(0.01,)
    )
    assert mlp.per_seed.shape == (3, 1) and mlp.problem == "digits-mlp"


def test_compare_tuners_old_seed_argument_warns_and_means_rng() -> None:
    options = {"seeds": 2, "steps": 600, "lrs": (0.1,), "momenta": (0.0, 0.9), "adam_lrs": (0.01,)}
    expected = compare_tuners("nq50", n_workers=4, rng=5, **options)
    with pytest.warns(DeprecationWarning, match="pass rng="):
        old = compare_tuners("nq50", n_workers=4, seed=5, **options)
    assert old.seed == expected.seed == SeedRecord(5)
    np.testing.assert_array_equal(old.per_seed, expected.per_seed)
    # the grids' sweep seed is derived from the root, not the root itself
    assert old.sweeps[0].sweep.seed == expected.sweeps[0].sweep.seed != 5
