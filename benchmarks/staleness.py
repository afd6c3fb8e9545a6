"""Updates per second of the SimPy model and of the fast path, side by side in one run; and the fixed
cost of one ``simulate`` call, now and at an earlier commit.

Throughput: asynchronous mode, Exp(1) compute times, M in {4, 16, 64}; each figure is the median over
``--repeats`` runs (seeds 0, 1, ...), and every fast trace is checked equal to the SimPy one.

Fixed cost (``--fixed-cost``): the time of one call at n = 1, 1,000 and 10,000 updates for M = 16, 64
and 256 on each path (the least of ``--repeats`` calls, after a warm-up call); with ``--baseline
COMMIT`` the same is measured on that commit's ``asyncsim`` (exported with ``git archive`` into a
temporary folder and imported from there in a child process, which is checked), and the table
shows before, after and their ratio, and whether the fast path beats SimPy at n >= 1,000.

    python benchmarks/staleness.py [--updates 1000000] [--repeats 3]
    python benchmarks/staleness.py --fixed-cost [--baseline 5029cb4] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from asyncsim import ClusterConfig, simulate

WORKERS = (4, 16, 64)
COST_WORKERS = (16, 64, 256)
COST_SIZES = (1, 1_000, 10_000)
COLUMNS = ("staleness", "writer", "read_version", "apply_time", "n_aggregated")
REPO = Path(__file__).resolve().parents[1]


def timed(config: ClusterConfig, n: int, seed: int, method: str):
    start = time.perf_counter()
    trace = simulate(config, n, rng=seed, method=method)
    return time.perf_counter() - start, trace


def throughput(updates: int, repeats: int) -> None:
    simulate(ClusterConfig(4), 10_000, rng=0, method="fast")  # warm up imports and allocators
    print(f"{updates} updates, asynchronous, Exp(1) compute; median of {repeats} runs")
    print(f"{'M':>4} {'SimPy (updates/s)':>18} {'fast (updates/s)':>18} {'ratio':>8}")
    for m in WORKERS:
        config = ClusterConfig(m)
        slow, fast = [], []
        for seed in range(repeats):
            seconds_simpy, reference = timed(config, updates, seed, "simpy")
            seconds_fast, trace = timed(config, updates, seed, "fast")
            if not all(np.array_equal(getattr(trace, c), getattr(reference, c)) for c in COLUMNS):
                raise AssertionError(f"fast path differs from SimPy at M = {m}, seed {seed}")
            slow.append(seconds_simpy)
            fast.append(seconds_fast)
        rate_simpy = updates / np.median(slow)
        rate_fast = updates / np.median(fast)
        print(f"{m:>4} {rate_simpy:>18,.0f} {rate_fast:>18,.0f} {rate_fast / rate_simpy:>7.1f}x")


def call_costs(repeats: int) -> dict[str, float]:
    """Seconds per call, keyed ``"M/n/method"``: the least of ``repeats`` calls after a warm-up."""
    costs = {}
    for m in COST_WORKERS:
        config = ClusterConfig(m)
        for n in COST_SIZES:
            for method in ("simpy", "fast"):
                timed(config, n, 0, method)
                costs[f"{m}/{n}/{method}"] = min(
                    timed(config, n, seed, method)[0] for seed in range(repeats)
                )
    return costs


def baseline_costs(commit: str, repeats: int) -> dict[str, float]:
    """:func:`call_costs` of ``commit``'s asyncsim, exported into a temporary folder."""
    with tempfile.TemporaryDirectory() as folder:
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", commit, "asyncsim"],
            check=True,
            capture_output=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", folder], input=archive, check=True)
        env = dict(os.environ, PYTHONPATH=folder)
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--costs-json",
                "--repeats",
                str(repeats),
                "--expect",
                folder,
            ],
            check=True,
            capture_output=True,
            text=True,
            env=env,
            cwd=folder,
        ).stdout
    return json.loads(out)


def fixed_cost(baseline: str | None, repeats: int) -> None:
    after = call_costs(repeats)
    before = None if baseline is None else baseline_costs(baseline, repeats)
    print(f"ms per simulate call (least of {repeats}), asynchronous, Exp(1) compute")
    head = f"{'M':>4} {'n':>6} {'method':>6}"
    if before is not None:
        head += f" {'before ' + baseline:>16} {'after':>9} {'before/after':>13}"
    else:
        head += f" {'ms':>9}"
    print(head)
    for key, seconds in after.items():
        m, n, method = key.split("/")
        row = f"{m:>4} {n:>6} {method:>6}"
        if before is not None:
            row += (
                f" {1e3 * before[key]:>16.2f} {1e3 * seconds:>9.2f} {before[key] / seconds:>12.1f}x"
            )
        else:
            row += f" {1e3 * seconds:>9.2f}"
        print(row)
    print("fast path / SimPy time at n >= 1,000 (below 1: the fast path wins):")
    for m in COST_WORKERS:
        ratios = [after[f"{m}/{n}/fast"] / after[f"{m}/{n}/simpy"] for n in COST_SIZES if n >= 1000]
        print(f"  M = {m:>3}: " + ", ".join(f"{r:.2f}" for r in ratios))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--fixed-cost", action="store_true", help="time single simulate calls")
    parser.add_argument("--baseline", help="a commit to time the fixed cost of, beside this tree")
    parser.add_argument("--costs-json", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--expect", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.costs_json:  # the child process of --baseline
        import asyncsim

        if args.expect and not Path(asyncsim.__file__).resolve().is_relative_to(
            Path(args.expect).resolve()
        ):
            raise AssertionError(f"imported {asyncsim.__file__}, not the code in {args.expect}")
        print(json.dumps(call_costs(args.repeats)))
    elif args.fixed_cost:
        fixed_cost(args.baseline, args.repeats)
    else:
        throughput(args.updates, args.repeats)


if __name__ == "__main__":
    main()
