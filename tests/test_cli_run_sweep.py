"""``asyncsim run`` (one configuration, measured) and ``asyncsim sweep CONFIG.toml --out DIR`` (a grid
in TOML: resumable, a tidy CSV, a bad key named before any work)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tomllib
from pathlib import Path

import pandas as pd
import pytest

import asyncsim.sweep
from asyncsim.cli import main
from asyncsim.sweep_config import ConfigError, read_sweep_config, sweep_from_config

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "sweep.toml"


# ------------------------------------------------------------------------------------------ run
def numbers(text: str) -> dict[str, str]:
    """The value after each label of ``asyncsim run``'s report."""
    lines = {line[:23].strip(): line[23:].split() for line in text.splitlines()[1:]}
    return {label: words[0] for label, words in lines.items() if words}


def test_run_prints_iterations_loss_and_total_momentum(capsys) -> None:
    argv = ["run", "--workers", "4", "--momentum", "0.5", "--steps", "1200", "--seed", "1"]
    assert main(argv) == 0
    report = capsys.readouterr().out
    values = numbers(report)
    assert {"iterations to target", "final loss", "total momentum"} <= set(values)
    assert float(values["iterations to target"]) < 1200
    assert float(values["final loss"]) < 0.0055  # below the nq50 target, 1e-3 f(w0)
    # four asynchronous writers: 1 - (1 - 0.5)/4 = 0.875; the estimate reads a little low
    assert abs(float(values["total momentum"]) - 0.875) < 0.06
    assert "1 - (1 - μ)/M with μ = 0.5 applied, M = 4: 0.8750" in report


def test_run_same_seed_same_report(capsys) -> None:
    argv = ["run", "--workers", "3", "--steps", "200", "--seed", "5"]
    assert main(argv) == 0
    first = capsys.readouterr().out
    assert main(argv) == 0 and capsys.readouterr().out == first
    assert main([*argv[:-1], "6"]) == 0
    assert numbers(capsys.readouterr().out)["final loss"] != numbers(first)["final loss"]


def test_run_sync_measures_the_explicit_momentum(capsys) -> None:
    argv = ["run", "--workers", "4", "--mode", "sync", "--momentum", "0.5", "--steps", "800"]
    assert main(argv) == 0
    assert float(numbers(capsys.readouterr().out)["total momentum"]) == pytest.approx(0.5, abs=1e-6)


def test_run_reports_a_divergence_as_data(capsys) -> None:
    assert main(["run", "--lr", "50", "--steps", "300"]) == 0
    out = capsys.readouterr().out
    assert "not reached" in out and "diverged" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--lr", "0"], "argument --lr: must be a finite number > 0, got 0"),
        (["--momentum", "1"], "argument --momentum: must be a number in (-1, 1), got 1"),
        (["--workers", "0"], "argument --workers: must be an integer >= 1, got 0"),
        (["--problem", "nq5"], "argument --problem: invalid choice: 'nq5'"),
    ],
)
def test_run_usage_errors(argv: list[str], message: str, capsys) -> None:
    assert main(["run", *argv]) == 2
    assert message in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ sweep
def test_the_example_config_runs_to_a_tidy_table(tmp_path: Path, capsys) -> None:
    out = tmp_path / "example"
    assert main(["sweep", str(EXAMPLE), "--out", str(out), "--jobs", "1"]) == 0
    table = pd.read_csv(out / "results.csv")
    config = tomllib.loads(EXAMPLE.read_text())
    grid = len(config["workers"]) * len(config["lrs"]) * len(config["momenta"]) * config["seeds"]
    assert len(table) == grid  # one row per configuration and seed
    assert set(table["problem"]) == {"nq50"} and set(table["optimizer"]) == {"heavy_ball"}
    keys = ["workers", "lr", "momentum", "seed"]
    assert not table.duplicated(keys).any()
    assert {"iterations", "final_loss", "diverged"} <= set(table.columns)
    assert "M =  16" in capsys.readouterr().out


def test_an_interrupted_sweep_resumes_to_the_same_table(
    tmp_path: Path, await_chunks, capsys
) -> None:
    """Killed (SIGKILL) after a few chunks, run again: the table equals an uninterrupted run's, byte
    for byte."""
    config = tmp_path / "grid.toml"
    text = EXAMPLE.read_text().replace("seeds = 4", "seeds = 16")
    config.write_text(text.replace("steps = 1200", "steps = 400"))
    total = len(read_sweep_config(config).chunks())
    interrupted, whole = tmp_path / "interrupted", tmp_path / "whole"
    command = [sys.executable, "-m", "asyncsim.cli", "sweep", str(config), "--jobs", "1"]
    proc = subprocess.Popen([*command, "--out", str(interrupted)], stdout=subprocess.DEVNULL)
    try:
        await_chunks(proc, interrupted, 2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    done_before = len(list(interrupted.glob("chunk-*.npz")))
    assert 2 <= done_before < total, "nothing was left to resume"
    assert not (interrupted / "results.csv").exists()
    for out in (interrupted, whole):
        assert main(["sweep", str(config), "--out", str(out), "--jobs", "1"]) == 0
    assert (interrupted / "results.csv").read_bytes() == (whole / "results.csv").read_bytes()
    capsys.readouterr()


def test_a_resumed_sweep_computes_only_the_missing_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    out = tmp_path / "out"
    argv = ["sweep", str(EXAMPLE), "--out", str(out), "--jobs", "1"]
    assert main(argv) == 0
    first = (out / "results.csv").read_bytes()
    missing = sorted(out.glob("chunk-*.npz"))[::5]
    for path in missing:
        path.unlink()
    computed = []
    run_chunk = asyncsim.sweep.run_chunk
    monkeypatch.setattr(
        asyncsim.sweep, "run_chunk", lambda *a: computed.append(a[1:]) or run_chunk(*a)
    )
    assert main(argv) == 0
    assert len(computed) == len(missing)
    assert (out / "results.csv").read_bytes() == first
    capsys.readouterr()


def test_ctrl_c_says_how_to_resume(tmp_path: Path, monkeypatch, capsys) -> None:
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("asyncsim.sweep.run_sweep", interrupt)
    assert main(["sweep", str(EXAMPLE), "--out", str(tmp_path), "--jobs", "1"]) == 130
    assert "run the same command to resume" in capsys.readouterr().out


BAD_CONFIGS = [
    ("lrs = [0.1]\nworker = [1]", "unknown key 'worker'; allowed keys: problem, optimizer"),
    ('lrs = [0.1]\nproblem = "nq51"', "key problem: problem must be one of 'nq50', 'q10'"),
    ("lrs = [0.1, -0.2]", "key lrs: lrs must be finite and in (0, inf) elementwise, got -0.2"),
    ("lrs = 0.1", "key lrs: must be a non-empty list of numbers, got 0.1"),
    ("lrs = [0.1]\nmomenta = [0.5, 1.0]", "key momenta: momenta must be finite and in (-1, 1)"),
    ("lrs = [0.1]\nseeds = 0", "key seeds: seeds must be in [1, inf), got 0 (allowed: an integer"),
    ("lrs = [0.1]\nseeds = 2.5", "key seeds: seeds must be an integer, got 2.5 (float) (allowed:"),
    ("lrs = [0.1]\nworkers = [4, 0]", "key workers: workers must be in [1, inf), got 0"),
    ("lrs = [0.1]\nsteps = true", "key steps: steps must be an integer, got True (bool)"),
    ('lrs = [0.1]\noptimizer = "sgd"', "key optimizer: optimizer must be one of 'heavy_ball'"),
    ("momenta = [0.0]", "key lrs: required (a non-empty list of numbers > 0)"),
    (
        "lrs = [0.1]\n[problem_options]\nnois = 0.1",
        "key problem_options: unknown option 'nois' of problem nq50; allowed: noise, rotation",
    ),
    ("lrs = [0.1]\n[problem_options]\nnoise = -1", "noise must be a finite number in [0, inf)"),
    ("lrs = [0.1]\n[cluster]\nmean = 2.0", "key cluster: only with staleness = 'cluster'"),
    (
        'lrs = [0.1]\nstaleness = "cluster"\n[cluster]\ncompute = "pareto"',
        "key cluster: compute must be one of 'exponential'",
    ),
    (
        'lrs = [0.1]\nstaleness = "cluster"\n[cluster]\nspread = 2.0',
        "key cluster: spread must be a finite number in [0, 1], got 2.0",
    ),
    (
        'lrs = [0.1]\nstaleness = "cluster"\nworkers = [8]\ngroups = [3]',
        "groups must divide workers[0] = 8, got 3",
    ),
    ("lrs = [0.1\n", "not valid TOML"),
]


@pytest.mark.parametrize(("text", "message"), BAD_CONFIGS)
def test_a_bad_config_exits_2_naming_key_value_and_range(
    text: str, message: str, tmp_path: Path, capsys
) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(text)
    out = tmp_path / "out"
    assert main(["sweep", str(config), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "error: argument CONFIG.toml:" in err and message in err, err
    assert "Traceback" not in err
    assert not out.exists()  # nothing ran, nothing was written


def test_a_missing_config_and_another_sweeps_folder_exit_2(tmp_path: Path, capsys) -> None:
    assert main(["sweep", str(tmp_path / "none.toml"), "--out", str(tmp_path / "o")]) == 2
    assert "cannot read it" in capsys.readouterr().err
    out = tmp_path / "used"
    assert main(["sweep", str(EXAMPLE), "--out", str(out), "--jobs", "1"]) == 0
    other = tmp_path / "other.toml"
    other.write_text(EXAMPLE.read_text().replace("seeds = 4", "seeds = 5"))
    chunks = sorted(out.iterdir())
    assert main(["sweep", str(other), "--out", str(out)]) == 2
    assert "holds another sweep's chunks" in capsys.readouterr().err
    assert sorted(out.iterdir()) == chunks


def test_every_documented_key_is_read() -> None:
    """A config with every key builds the sweep it says (cluster staleness, groups, options)."""
    config = {
        "problem": "q10",
        "optimizer": "yellowfin",
        "staleness": "cluster",
        "workers": [8],
        "groups": [1, 8],
        "lrs": [0.01, 0.1],
        "momenta": [0.0],
        "seeds": 2,
        "steps": 50,
        "record_every": 5,
        "target": 0.01,
        "seed": 3,
        "problem_options": {"kappa": 20},
        "options": {"closed_loop": True, "gain": [0.01, 0.05], "target_momentum": 0.9},
        "cluster": {"compute": "gamma", "shape": 4.0, "mean": 2.0, "server_time": 0.1},
    }
    sweep = sweep_from_config(config)
    assert sweep.problem_name == "q10" and sweep.problem_options == (("kappa", 20),)
    assert sweep.points() == [(8, 1), (8, 8)]
    assert dict(sweep.options) == {
        "closed_loop": (True,),
        "gain": (0.01, 0.05),
        "target_momentum": (0.9,),
    }
    assert sweep.cluster.compute.mean == pytest.approx(2.0)
    assert sweep.cluster.server_time is not None
    assert (sweep.seeds, sweep.steps, sweep.record_every, sweep.target, sweep.seed) == (
        2,
        50,
        5,
        0.01,
        3,
    )
    with pytest.raises(ConfigError, match="key cluster: unknown key 'servertime'"):
        sweep_from_config(config | {"cluster": {"servertime": 0.1}})


def test_the_cli_module_runs_as_a_script(tmp_path: Path) -> None:
    """``python -m asyncsim.cli`` is how the interruption test starts a sweep it can kill."""
    done = subprocess.run(
        [sys.executable, "-m", "asyncsim.cli", "sweep", "--help"],
        capture_output=True,
        text=True,
        env=os.environ | {"COLUMNS": "100"},
    )
    assert done.returncode == 0 and "CONFIG.toml" in done.stdout
