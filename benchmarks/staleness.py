"""Updates per second of the SimPy model and of the fast path, side by side in one run.

Asynchronous mode, Exp(1) compute times, M in {4, 16, 64}; each figure is the median over
``--repeats`` runs (seeds 0, 1, ...), and every fast trace is checked equal to the SimPy one.

    python benchmarks/staleness.py [--updates 1000000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from asyncsim import ClusterConfig, simulate

WORKERS = (4, 16, 64)
COLUMNS = ("staleness", "writer", "read_version", "apply_time", "n_aggregated")


def timed(config: ClusterConfig, n: int, seed: int, method: str):
    start = time.perf_counter()
    trace = simulate(config, n, rng=seed, method=method)
    return time.perf_counter() - start, trace


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    simulate(ClusterConfig(4), 10_000, rng=0, method="fast")  # warm up imports and allocators
    print(f"{args.updates} updates, asynchronous, Exp(1) compute; median of {args.repeats} runs")
    print(f"{'M':>4} {'SimPy (updates/s)':>18} {'fast (updates/s)':>18} {'ratio':>8}")
    for m in WORKERS:
        config = ClusterConfig(m)
        slow, fast = [], []
        for seed in range(args.repeats):
            seconds_simpy, reference = timed(config, args.updates, seed, "simpy")
            seconds_fast, trace = timed(config, args.updates, seed, "fast")
            if not all(np.array_equal(getattr(trace, c), getattr(reference, c)) for c in COLUMNS):
                raise AssertionError(f"fast path differs from SimPy at M = {m}, seed {seed}")
            slow.append(seconds_simpy)
            fast.append(seconds_fast)
        rate_simpy = args.updates / np.median(slow)
        rate_fast = args.updates / np.median(fast)
        print(f"{m:>4} {rate_simpy:>18,.0f} {rate_fast:>18,.0f} {rate_fast / rate_simpy:>7.1f}x")


if __name__ == "__main__":
    main()
