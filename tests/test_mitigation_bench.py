"""The staleness-mitigation bench at a tiny scale: its table, its intervals, its report, its figure and
its command."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from asyncsim.cli import main
from asyncsim.cluster import ClusterConfig
from asyncsim.distributions import Uniform
from asyncsim.experiments import mitigations
from asyncsim.experiments.mitigations import (
    BASELINE,
    SETTINGS,
    _cell,
    _speedup,
    ranking_changes,
    summary_markdown,
    winners,
)
from asyncsim.figures import FIGURES
from asyncsim.figures.mitigations import make_mitigations
from asyncsim.mitigations import METHODS
from asyncsim.problems import make_problem
from asyncsim.sweep import Sweep, run_sweep

TINY = {
    "methods": ("staleness_aware", "dana"),
    "workers": (1, 4),
    "seeds": 3,
    "budgets": {"nq50": ({1: 400, 4: 400}, 10)},
}


@pytest.fixture(scope="module")
def bench():
    return mitigations(["nq50"], rng=0, **TINY)


def test_the_table_has_one_row_per_cell_and_method(bench) -> None:
    data = bench.data
    assert len(data) == 2 * 2 * 3  # regimes x M x methods (async SGD added)
    assert set(data["method"]) == {BASELINE, *TINY["methods"]}
    assert (data.groupby(["regime", "workers"])["rank"].min() == 1).all()
    base = data[data["method"] == BASELINE]
    reached = np.isfinite(base["iterations"])
    assert (base["speedup"][reached] == 1.0).all()  # the baseline over itself
    finite = data[np.isfinite(data["iterations"])]
    assert (finite["iterations_low"] <= finite["iterations"]).all()
    assert (finite["iterations"] <= finite["iterations_high"]).all()
    per_seed = bench.raw["per_seed"]
    assert len(per_seed) == 2 * 2 * (1 + 1 + 3) * 6 * 3  # settings x 6 step sizes x 3 seeds


def test_without_staleness_the_reducing_methods_equal_async_sgd_seed_by_seed(bench) -> None:
    # M = 1: staleness 0, so the staleness-aware step is async SGD's, on the same noise (CRN)
    runs = bench.raw["per_seed"]
    one = runs[runs["workers"] == 1].set_index(["regime", "lr", "seed"])
    base = one[one["method"] == BASELINE]["iterations"]
    same = one[one["method"] == "staleness_aware"]["iterations"]
    pd.testing.assert_series_equal(base, same)


def test_one_worker_runs_once_and_takes_each_regimes_clock(bench) -> None:
    # M = 1 runs in the first regime only; the uniform rows are those runs on the uniform clock,
    # which must equal running the uniform sweep itself
    runs = bench.raw["per_seed"]
    mine = runs[
        (runs["workers"] == 1) & (runs["regime"] == "uniform") & (runs["method"] == BASELINE)
    ]
    uniform = (ClusterConfig(1, compute=Uniform(0.9, 1.1)),)
    sweep = Sweep(
        make_problem("nq50"), tuple(sorted(set(mine["lr"]))), cluster=uniform, staleness="cluster",
        seeds=3, steps=400, record_every=10, optimizer=METHODS[BASELINE].factory, seed=0,
    )  # fmt: skip
    direct = run_sweep(sweep).to_frame().sort_values(["seed", "lr"])
    mine = mine.sort_values(["seed", "lr"])
    np.testing.assert_array_equal(mine["iterations"], direct["iterations"])
    np.testing.assert_allclose(mine["time"], direct["time_to_target"])


def test_the_cell_summary_by_hand() -> None:
    # two methods, one setting each, two step sizes, four seeds; resamples: all seeds, then seed 0
    rows = []
    for method, its in ((BASELINE, [[100, 200, 300, 400], [90, 90, 500, 500]]),
                        ("dana", [[50, 60, 70, 80], [40, np.inf, np.inf, np.inf]])):  # fmt: skip
        for lr, per_lr in zip((0.1, 0.2), its, strict=True):
            for seed, value in enumerate(per_lr):
                rows.append(
                    {"problem": "p", "regime": "r", "workers": 4, "method": method, "value": "",
                     "lr": lr, "seed": seed, "iterations": value, "time": value / 4,
                     "budget": 1000}
                )  # fmt: skip
    resamples = np.array([[0, 1, 2, 3], [0, 0, 0, 0]])
    cell = _cell(pd.DataFrame(rows), resamples).set_index("method")
    # medians: ASGD 250 (lr 0.1) and 295 (0.2): tuned 250; DANA 65 and inf: 65
    assert cell.loc[BASELINE, "iterations"] == 250 and cell.loc[BASELINE, "lr"] == 0.1
    assert cell.loc["dana", "iterations"] == 65 and cell.loc["dana", "time"] == 65 / 4
    assert cell.loc["dana", "speedup"] == pytest.approx(250 / 65)
    # resample of seed 0 only: ASGD tuned 90 (lr 0.2), DANA 40 (lr 0.2): interval ends 40 and 65
    assert (cell.loc["dana", "iterations_low"], cell.loc["dana", "iterations_high"]) == (40, 65)
    assert cell.loc["dana", "speedup_low"] == 90 / 40
    assert cell.loc["dana", "speedup_high"] == 250 / 65
    assert cell.loc["dana", "rank"] == 1 and cell.loc[BASELINE, "rank"] == 2


def test_a_baseline_that_never_met_the_target_gives_lower_bounds() -> None:
    baseline, method = (
        np.array([np.inf, 100.0, np.inf, 100.0]),
        np.array([50.0, np.inf, np.inf, 50.0]),
    )
    np.testing.assert_array_equal(_speedup(baseline, method, 1000), [20.0, 0.0, np.nan, 2.0])


def test_the_report_names_each_cells_winner_and_the_regime_changes(bench) -> None:
    text = summary_markdown(bench)
    assert text.count("## nq50,") == 4
    assert len(winners(bench.data)) == 4
    assert "## Where the ranking changes between the regimes" in text
    assert ranking_changes(bench.data)  # a sentence even when nothing changes


def test_the_figure_draws_a_marker_per_method_and_worker_count(bench) -> None:
    fig = make_mitigations(bench)
    assert len(fig.axes) == 2  # one problem, two regimes
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == [METHODS[m].label for m in (BASELINE, *TINY["methods"])]
    fig.canvas.draw()


def test_asyncsim_figures_leaves_the_bench_to_its_own_command() -> None:
    """``asyncsim figures`` is the README's quick main job; the bench (about ten minutes) runs
    with ``asyncsim mitigations``, which draws this figure."""
    assert "mitigations" not in FIGURES


def test_bad_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match="methods must be one of"):
        mitigations(["nq50"], methods=["sgd"])
    with pytest.raises(ValueError, match="budgets has no entry for problem 'q10'"):
        mitigations(["q10"])
    with pytest.raises(ValueError, match="workers must be in"):
        mitigations(["nq50"], workers=(0,))
    with pytest.raises(ValueError, match=r"budgets\['nq50'\] gives no updates for M = \[8\]"):
        mitigations(["nq50"], workers=(4, 8))


def test_the_command_writes_the_table_the_report_and_the_figure(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    monkeypatch.setitem(SETTINGS, "quick", SETTINGS["quick"] | TINY | {"workers": (4,), "seeds": 2})
    args = ["mitigations", "--problem", "nq50", "--method", "dana", "--jobs", "1"]
    assert main([*args, "--out", str(tmp_path), "--no-cache"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "mitigations.csv",
        "mitigations.md",
        "mitigations.png",
    ]
    table = pd.read_csv(tmp_path / "mitigations.csv")
    assert set(table["method"]) == {BASELINE, "dana"}
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--method", "sgd"], "argument --method: must be one of asgd"),
        (["--problem", "mnist"], "argument --problem: must be one of nq50"),
        (["--scale", "huge"], "argument --scale: invalid choice"),
    ],
)
def test_usage_errors(argv: list[str], message: str, capsys) -> None:
    assert main(["mitigations", *argv]) == 2
    assert message in capsys.readouterr().err
