"""The claims table: every verdict rule on synthetic measurements on each side of its threshold, the
effects read from synthetic results, disagreeing root seeds, and the command."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from asyncsim._rng import SeedRecord
from asyncsim.cli import main
from asyncsim.experiments import ExperimentResult
from asyncsim.experiments.claims import (
    CLAIMS,
    COLUMNS,
    VERDICTS,
    Claim,
    Measurement,
    Rule,
    _row,
    bootstrap,
    to_markdown,
)
from asyncsim.sweep import Sweep, SweepResult


# ------------------------------------------------------------------------------------------ rules
def _sides(rule: Rule) -> dict[str, Measurement]:
    """Measurements built to fall on each side of ``rule``: all of the interval holding, only the
    estimate, not even the estimate."""
    step = max(abs(rule.threshold) * 0.1, 0.01) + rule.tolerance
    inward = {"at_least": 1.0, "at_most": -1.0, "within": 0.0}[rule.direction]
    if rule.direction == "within":
        t, tol = rule.threshold, rule.tolerance
        return {
            "reproduced": Measurement(t, t - tol / 2, t + tol / 2),
            "partly": Measurement(t + tol / 2, t, t + 2 * tol),
            "refuted": Measurement(t + 2 * tol, t + tol * 1.5, t + 3 * tol),
        }
    t = rule.threshold
    return {
        "reproduced": Measurement(t + 2 * inward * step, t + inward * step, t + 3 * inward * step),
        "partly": Measurement(t + inward * step, t - inward * step, t + 2 * inward * step),
        "refuted": Measurement(t - inward * step, t - 2 * inward * step, t + inward * step),
    }


@pytest.mark.parametrize("claim", CLAIMS, ids=[c.id for c in CLAIMS])
def test_each_rule_on_each_side_of_its_threshold(claim: Claim) -> None:
    for expected, measured in _sides(claim.rule).items():
        assert claim.rule.verdict(measured) == expected, (expected, measured, str(claim.rule))
    assert claim.rule.verdict(Measurement(np.nan, np.nan, np.nan)) == "refuted"


def test_rules_at_the_threshold_itself() -> None:
    assert Rule("at_least", 2.0).verdict(Measurement(2.0, 2.0, 2.5)) == "reproduced"
    assert Rule("at_least", 2.0).verdict(Measurement(2.0, 1.99, 2.5)) == "partly"
    assert Rule("at_most", 0.0).verdict(Measurement(0.0, -0.5, 0.0)) == "reproduced"
    assert Rule("within", 1.0, 0.25).verdict(Measurement(1.25, 1.0, 1.25)) == "reproduced"
    with pytest.raises(ValueError, match="direction must be one of"):
        Rule("above", 1.0)


def test_the_table_has_every_claim_of_the_issue_once() -> None:
    ids = [c.id for c in CLAIMS]
    assert len(ids) == len(set(ids)) >= 14
    assert all(c.claim and c.source and c.paper and c.effect for c in CLAIMS)
    assert set(VERDICTS) == {"reproduced", "partly", "refuted"}


def test_bootstrap_interval_covers_the_mean_of_known_data() -> None:
    values = np.random.default_rng(0).normal(1.0, 0.2, size=64)
    m = bootstrap(values.size, lambda i: values[i].mean(), np.random.default_rng(1))
    assert m.estimate == pytest.approx(values.mean())
    half = 1.96 * values.std() / np.sqrt(values.size)  # the normal interval it should be near
    assert m.low == pytest.approx(m.estimate - half, abs=0.3 * half)
    assert m.high == pytest.approx(m.estimate + half, abs=0.3 * half)
    again = bootstrap(values.size, lambda i: values[i].mean(), np.random.default_rng(1))
    assert again == m


def test_bootstrap_of_an_effect_that_can_be_infinite_warns_not() -> None:
    """A method that never reached the target (inf updates) against one that did: the effect is
    inf, the interval picks resampled values (no inf - inf), undefined resamples are left out."""
    never = np.array([np.inf, np.inf, np.inf, 400.0])
    reached = np.array([200.0, 210.0, np.inf, 190.0])

    def ratio(i: np.ndarray) -> float:
        return float(np.median(never[i]) / np.median(reached[i]))

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = bootstrap(4, ratio, np.random.default_rng(0))
    assert m.estimate == np.inf and m.high == np.inf and m.low >= 1.0
    assert Rule("at_least", 1.6).verdict(m) == "reproduced"


# ------------------------------------------------------------------------------------------ effects
def _fake_sweep(best_mu: list[float], seeds: int = 8) -> SweepResult:
    """A sweep result whose median iterations are least at ``best_mu[p]`` for point p (and α[0]),
    every seed alike but for noise that never changes the order."""
    sweep = Sweep(
        "q10",
        lrs=(0.1, 0.2),
        momenta=(-0.45, 0.0, 0.45, 0.9),
        workers=tuple(2**p for p in range(len(best_mu))),
        seeds=seeds,
        steps=10,
    )
    momenta = np.asarray(sweep.momenta)
    base = 100.0 + 50.0 * np.abs(momenta[None, :] - np.asarray(best_mu)[:, None])  # (points, μ)
    its = np.broadcast_to(base[:, None, None, :], (len(best_mu), seeds, 2, 4)).copy()
    its[:, :, 1] += 30.0  # α[1] is worse
    its += np.random.default_rng(0).uniform(0, 5, its.shape)
    grid = sweep.grid()
    b = grid["lr"].size
    columns = {
        "point": np.repeat(np.arange(len(best_mu)), seeds * b),
        "workers": np.repeat(sweep.workers, seeds * b),
        "groups": np.repeat(sweep.workers, seeds * b),
        "lr": np.tile(grid["lr"], len(best_mu) * seeds),
        "momentum": np.tile(grid["momentum"], len(best_mu) * seeds),
        "seed": np.tile(np.repeat(np.arange(seeds), b), len(best_mu)),
        "iterations": its.ravel(),
    }
    return SweepResult(columns, sweep)


def _result(raw: dict, data: pd.DataFrame | None = None, root: int = 0) -> ExperimentResult:
    return ExperimentResult(
        "fake", pd.DataFrame() if data is None else data, {}, SeedRecord(root), raw
    )


def _claim(claim_id: str) -> Claim:
    return next(c for c in CLAIMS if c.id == claim_id)


@pytest.mark.parametrize(
    ("best_mu", "verdict"),
    [([0.9, 0.45, -0.45], "reproduced"), ([0.9, 0.45, 0.45], "refuted")],
)
def test_best_momentum_effects_on_synthetic_sweeps(best_mu, verdict) -> None:
    claim = _claim("best-momentum-negative-nq50")
    result = _result({"sweep": _fake_sweep(best_mu)})
    measured = claim.measure(result, np.random.default_rng(0))
    assert measured.estimate == best_mu[-1]
    assert claim.rule.verdict(measured) == verdict
    drop = _claim("best-momentum-falls-nq50").measure(result, np.random.default_rng(0))
    assert drop.estimate == pytest.approx(best_mu[-1] - best_mu[0])


def test_penalty_effects_on_a_synthetic_sweep() -> None:
    """At the last M the best μ is -0.45: μ = 0.9 costs 100 + 67.5 updates, the best μ ≥ 0 (0)
    122.5, all μ 100; at M = 1 the best is 0.9 for all three (100)."""
    result = _result({"sweep": _fake_sweep([0.9, -0.45], seeds=16)})
    tuning = _claim("penalty-tuning").measure(result, np.random.default_rng(0)).estimate
    negative = _claim("penalty-negative").measure(result, np.random.default_rng(0)).estimate
    assert tuning == pytest.approx((100 + 50 * 1.35) / (100 + 50 * 0.45), rel=0.05)
    assert negative == pytest.approx((100 + 50 * 0.45) / 100, rel=0.05)


def test_total_momentum_effects_on_synthetic_runs() -> None:
    rows = []
    for mode, m in (("async", 16), ("sync", 16)):
        for seed in range(4):
            for mu in (0.0, 0.5):
                total = mu if mode == "sync" else 1 - (1 - mu) / m
                rows.append(
                    {
                        "mode": mode,
                        "workers": m,
                        "seed": seed,
                        "explicit": mu,
                        "measured": total + 0.01 * seed,
                    }
                )
    result = _result({"per_run": pd.DataFrame(rows)})
    sync = _claim("total-momentum-sync").measure(result, np.random.default_rng(0))
    assert sync.estimate == pytest.approx(0.015)
    assert _claim("total-momentum-sync").rule.verdict(sync) == "reproduced"
    gap = _claim("total-momentum-async").measure(result, np.random.default_rng(0))
    assert gap.estimate == pytest.approx(0.5 * (1 - 1 / 16) + 0.015)  # μ = 0.5: the smallest gap
    assert _claim("total-momentum-async").rule.verdict(gap) == "reproduced"


# ------------------------------------------------------------------------------------------ roots
def test_root_seeds_that_disagree_make_a_claim_partly() -> None:
    claim = Claim(
        "fake",
        "nowhere",
        "x is at least 1",
        "x ≥ 1",
        "fake",
        "x",
        lambda result, rng: Measurement(*(result.raw["x"],) * 3),
        Rule("at_least", 1.0),
    )
    agree = _row(claim, [_result({"x": 2.0}, root=0), _result({"x": 3.0}, root=1)])
    assert agree["verdict"] == "reproduced" and agree["note"] == ""
    differ = _row(claim, [_result({"x": 2.0}, root=0), _result({"x": 0.5}, root=1)])
    assert differ["verdict"] == "partly"
    assert differ["note"] == "root seeds disagree: root 0: reproduced, root 1: refuted"
    assert differ["measured"] == "2; 0.5" and differ["effect"] == "x"
    assert set(differ) == set(COLUMNS)
    assert "| fake | x is at least 1 | nowhere |" in to_markdown([differ])


# ------------------------------------------------------------------------------------------ command
def test_claims_command_writes_its_table(tmp_path: Path, capsys) -> None:
    out = tmp_path / "claims"
    assert (
        main(["claims", "--only", "robust-region-quadratic", "--out", str(out), "--jobs", "1"]) == 0
    )
    table = pd.read_csv(out / "claims.csv")
    assert list(table.columns) == list(COLUMNS)
    assert table["id"].tolist() == ["robust-region-quadratic"]
    assert table["verdict"].iloc[0] == "reproduced"  # q10: rates within 5% of √μ inside the region
    assert "robust-region-quadratic" in (out / "claims.md").read_text()
    assert "reproduced" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["claims", "--only", "nope"], "argument --only: must be one of"),
        (["claims", "--seeds", "0"], "--seeds"),
        (["claims", "--scale", "huge"], "--scale"),
    ],
)
def test_claims_usage_errors(argv: list[str], message: str, tmp_path: Path, capsys) -> None:
    assert main([*argv, "--out", str(tmp_path / "out")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_fake_sweep_is_what_it_says() -> None:
    fake = _fake_sweep([0.9, -0.45])
    assert fake.best()["momentum"].tolist() == [0.9, -0.45]
    assert dataclasses.is_dataclass(fake)
