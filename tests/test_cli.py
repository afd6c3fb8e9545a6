"""The ``asyncsim`` command, called through ``main(argv)``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from asyncsim import ClusterConfig, SeedRecord, Trace, simulate
from asyncsim.cli import main

BASE = ["staleness", "--workers", "4", "--updates", "2000", "--seed", "0"]


def test_staleness_prints_the_summary_beside_the_geometric_law(capsys):
    assert main(BASE) == 0
    out = capsys.readouterr().out
    trace = simulate(ClusterConfig(4), 2000, rng=0)
    assert f"mean staleness      {trace.mean:12.4f}   (geometric law: g - 1 = 3)" in out
    assert f"variance            {trace.variance:12.4f}   (geometric law: g(g - 1) = 12)" in out
    assert "throughput" in out and "lag-1 correlation" in out
    assert "seed 0" in out
    rows = [line.split() for line in out.splitlines() if line[:5].strip().isdigit()]
    assert [int(row[0]) for row in rows] == list(range(8))
    np.testing.assert_allclose([float(r[1]) for r in rows], trace.pmf(7), atol=5e-6)
    np.testing.assert_allclose([float(r[2]) for r in rows], 0.25 * 0.75 ** np.arange(8), atol=5e-6)


def test_groups_are_the_writers_of_the_reference_law(capsys):
    argv = [*BASE, "--mode", "groups", "--groups", "2", "--compute", "uniform"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "g = 2 asynchronous writer(s) of 2 gradient(s) each" in out
    assert "Uniform(low=0.5, high=1.5)" in out
    assert "    0     " in out and "0.50000" in out  # geometric law at g = 2: 1/2 at lag 0


def test_options_reach_the_config(capsys):
    argv = [
        *BASE,
        *("--compute", "gamma", "--shape", "3", "--mean", "2"),
        *("--multipliers", "1,1,1,4", "--pull-latency", "0.5", "--server-time", "0.1"),
    ]
    assert main(argv) == 0
    assert "Gamma(shape=3.0, mean_time=2.0)" in capsys.readouterr().out


@pytest.mark.parametrize("suffix", [".csv", ".npz"])
def test_out_saves_the_trace(tmp_path, capsys, suffix):
    path = tmp_path / f"trace{suffix}"
    assert main([*BASE, "--out", str(path)]) == 0
    assert f"trace saved to {path}" in capsys.readouterr().out
    expected = simulate(ClusterConfig(4), 2000, rng=0)
    saved = Trace.load(path)
    for name in ("staleness", "writer", "read_version", "apply_time", "n_aggregated"):
        np.testing.assert_array_equal(getattr(saved, name), getattr(expected, name))
    if suffix == ".csv":
        frame = pd.read_csv(path)
        np.testing.assert_array_equal(frame["staleness"], expected.staleness)
        np.testing.assert_array_equal(frame["apply_time"], expected.apply_time)
    else:
        assert saved.seed == SeedRecord(0)


def test_plot_writes_a_png(tmp_path):
    path = tmp_path / "pmf.png"
    assert main([*BASE, "--plot", str(path)]) == 0
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--workers", "0"], "argument --workers: must be an integer >= 1, got 0"),
        (["--workers", "four"], "argument --workers: must be an integer >= 1, got four"),
        (["--updates", "-5"], "argument --updates: must be an integer >= 1, got -5"),
        (["--seed", "-1"], "argument --seed: must be an integer >= 0, got -1"),
        (["--mean", "0"], "argument --mean: must be a finite number > 0, got 0"),
        (["--mean", "nan"], "argument --mean: must be a finite number > 0, got nan"),
        (["--spread", "1.5"], "argument --spread: must be a number in [0, 1], got 1.5"),
        (
            ["--multipliers", "1,x,1,1"],
            "argument --multipliers: must be comma-separated finite numbers > 0, got 1,x,1,1",
        ),
        (
            ["--multipliers", "1,2"],
            "argument --multipliers: must hold --workers = 4 values, got 2",
        ),
        (["--mode", "hogwild"], "argument --mode: invalid choice: 'hogwild'"),
        (
            ["--mode", "groups", "--groups", "3"],
            "argument --groups: must divide --workers 4, got 3",
        ),
        (["--mode", "groups"], "argument --groups: required with --mode groups"),
        (["--groups", "2"], "argument --groups: only allowed with --mode groups, got --mode async"),
        (
            ["--out", "trace.txt"],
            "argument --out: must be a file name ending in .csv or .npz, got trace.txt",
        ),
        (
            ["--plot", "pmf.jpg"],
            "argument --plot: must be a file name ending in .png or .pdf or .svg, got pmf.jpg",
        ),
        (
            ["--method", "fast", "--push-latency", "1"],
            "method='fast' cannot serve this config: it has push_latency",
        ),
    ],
)
def test_malformed_arguments_are_usage_errors(capsys, extra, message):
    assert main([*BASE, *extra]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "usage: asyncsim staleness" in captured.err
    assert message in captured.err


def test_a_command_is_required(capsys):
    assert main([]) == 2
    assert "the following arguments are required: COMMAND" in capsys.readouterr().err


def test_help_exits_0(capsys):
    assert main(["staleness", "--help"]) == 0
    assert "--workers" in capsys.readouterr().out


# ------------------------------------------------------------------------ checked before any work
def _forbid_work(monkeypatch):
    """Make every computation of the two commands fail the test if it starts."""
    import asyncsim.cli
    import asyncsim.figures

    def refuse(*args, **kwargs):
        raise AssertionError("work started before the arguments were checked")

    monkeypatch.setattr(asyncsim.cli, "simulate", refuse)
    monkeypatch.setattr(asyncsim.figures, "make_figures", refuse)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["figures", "--out", "{file}"], "argument --out: must be a folder, got the existing file"),
        (
            ["figures", "--out", "{file}/sub"],
            "argument --out: must be a folder that can be created, got",
        ),
        (["figures", "--only", "nope"], "argument --only: must be one of staleness, "),
        (["staleness", "--out", "{missing}/trace.csv"], "argument --out: must be in an existing"),
        (["staleness", "--plot", "{missing}/pmf.png"], "argument --plot: must be in an existing"),
        (["staleness", "--out", "{file}/trace.csv"], "argument --out: must be in an existing"),
        (
            ["staleness", "--out", "{folder}"],
            "argument --out: must be a file to write, got the folder",
        ),
        (["staleness", "--updates", "1.5"], "argument --updates: must be an integer >= 1, got 1.5"),
        (
            ["staleness", "--updates", "1e-3"],
            "argument --updates: must be an integer >= 1, got 1e-3",
        ),
        (["staleness", "--updates", "inf"], "argument --updates: must be an integer >= 1, got inf"),
    ],
)
def test_bad_arguments_stop_before_any_work(tmp_path, capsys, monkeypatch, argv, message):
    _forbid_work(monkeypatch)
    (tmp_path / "file.txt").write_text("a regular file")
    (tmp_path / "folder.csv").mkdir()
    places = {
        "file": tmp_path / "file.txt",
        "missing": tmp_path / "no",
        "folder": tmp_path / "folder.csv",
    }
    assert main([arg.format(**places) for arg in argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert message in captured.err
    assert "Traceback" not in captured.err


def test_the_installed_command_reports_a_usage_error_without_traceback(tmp_path):
    """The console script itself, not only ``main``: exit code 2 and one line of error."""
    import subprocess
    import sys

    (tmp_path / "file.txt").write_text("")
    code = "import sys; from asyncsim.cli import main; sys.exit(main())"
    argv = [sys.executable, "-c", code, "figures", "--out", str(tmp_path / "file.txt")]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "error: argument --out: must be a folder" in done.stderr


def test_updates_accept_the_notation_of_the_help_text(capsys):
    assert main(["staleness", "--help"]) == 0
    assert "default 1e5" in capsys.readouterr().out
    assert main(["staleness", "--workers", "2", "--updates", "1e3", "--seed", "0"]) == 0
    assert "1000 updates" in capsys.readouterr().out


def test_version(capsys):
    import asyncsim

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"asyncsim {asyncsim.__version__}"


def test_figures_help_says_where_it_writes(capsys):
    assert main(["figures", "--help"]) == 0
    assert "figures/ in the current directory" in " ".join(capsys.readouterr().out.split())
