"""Per-step cost of YellowFin relative to heavy-ball momentum SGD in the same batched engine.

Both transformations run side by side in one process, alternating repeat by repeat, on the diagonal
quadratic (curvatures logspace(0, -2, d), no staleness, recording only the first and last step) with
one BLAS thread, with gradient noise σ = 0.03 (as nq50) and without (σ = 0: no noise draws, the
harder case for the ratio). Each repeat times ``steps`` updates of each; the script prints the
medians over repeats and their ratio against the goals: under 2x at d = 10^5 with B = 1, and under
1.5x (per configuration, the same as per step) with B = 256 at d = 1000.

Run: ``python benchmarks/yellowfin.py [--repeats N] [--steps N]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from threadpoolctl import threadpool_limits

from asyncsim.engine import run
from asyncsim.optim import heavy_ball
from asyncsim.problems import NoisyQuadratic, spectrum
from asyncsim.yellowfin import yellowfin_tuner

CASES = (  # (d, B, goal ratio)
    (100_000, 1, 2.0),
    (1000, 256, 1.5),
)
NOISE = (0.03, 0.0)


def seconds_per_step(problem, transform, batch: int, steps: int) -> float:
    start = time.perf_counter()
    run(problem, transform, None, steps, rng=0, batch=batch, record_every=None)
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    with threadpool_limits(1):
        print(f"{args.steps} steps per repeat, median of {args.repeats} repeats, one BLAS thread")
        print(
            f"{'σ':>5} {'d':>7} {'B':>4} {'heavy_ball µs':>14} {'yellowfin µs':>13} {'ratio':>6} goal"
        )
        for noise in NOISE:
            for d, batch, goal in CASES:
                problem = NoisyQuadratic(spectrum(d, 100.0), noise=noise)
                transforms = {"heavy_ball": heavy_ball(0.1, 0.9), "yellowfin": yellowfin_tuner()}
                for transform in transforms.values():  # warm up
                    seconds_per_step(problem, transform, batch, 10)
                times: dict[str, list[float]] = {name: [] for name in transforms}
                for _ in range(args.repeats):
                    for name, transform in transforms.items():
                        times[name].append(seconds_per_step(problem, transform, batch, args.steps))
                hb, yf = (1e6 * float(np.median(times[name])) for name in transforms)
                verdict = "ok" if yf / hb < goal else "OVER"
                print(
                    f"{noise:>5} {d:>7} {batch:>4} {hb:>14.0f} {yf:>13.0f} {yf / hb:>6.2f} "
                    f"< {goal} {verdict}"
                )


if __name__ == "__main__":
    main()
