"""Throughput of the batched engine against a per-configuration loop, measured side by side in one run.

Prints configuration-steps per second (recording off) for B configurations of heavy-ball momentum under
geometric staleness (M = 4) on

- the diagonal quadratic, d = 10, 100, 1000, noiseless and with Gaussian gradient noise (σ = 0.03),
  each against a per-configuration loop in plain NumPy;
- a dense (rotated) quadratic, d = 1000, as a fraction of the rate of a single-thread
  (B x d) @ (d x d) multiply timed in the same run (the one product each step must do);
- ``digits-mlp`` against a per-configuration loop.

One BLAS thread throughout (threadpoolctl); the second core is for a second process (a sweep runs one
process per core). Medians over ``--repeats`` runs; ratios are what to read, absolute rates vary with the
machine's load.

    python benchmarks/engine.py [--batch 256] [--steps 1000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
from threadpoolctl import threadpool_limits

from asyncsim.engine import run
from asyncsim.optim import heavy_ball
from asyncsim.problems import DigitsMLP, NoisyQuadratic, spectrum
from asyncsim.trace import Trace

LR, MU, M = 0.01, 0.5, 4


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up: caches, first-touch pages
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def quadratic_loop(
    h: np.ndarray, sigma: float, reads: list[int], steps: int, seed: int
) -> np.ndarray:
    """One configuration, as a competent NumPy user writes it: a list of past iterates."""
    rng = np.random.default_rng(seed)
    past = [np.ones(h.size)]
    w, v = past[0], np.zeros(h.size)
    for t in range(steps):
        g = h * past[reads[t]]
        if sigma:
            g = g + sigma * rng.standard_normal(h.size)
        v = MU * v - LR * g
        w = w + v
        past.append(w)
    return w


def dense_loop(
    hess: np.ndarray, sigma: float, reads: list[int], steps: int, seed: int
) -> np.ndarray:
    rng = np.random.default_rng(seed)
    past = [np.ones(hess.shape[0])]
    w, v = past[0], np.zeros(hess.shape[0])
    for t in range(steps):
        g = hess @ past[reads[t]]
        if sigma:
            g = g + sigma * rng.standard_normal(hess.shape[0])
        v = MU * v - LR * g
        w = w + v
        past.append(w)
    return w


def mlp_loop(mlp: DigitsMLP, reads: list[int], steps: int, seed: int) -> np.ndarray:
    """One configuration of the 64-32-10 tanh MLP, plain 2-D NumPy forward and backward."""
    rng = np.random.default_rng(seed)
    sizes = [int(np.prod(s)) for s in mlp.shapes]
    cuts = np.cumsum(sizes)[:-1]
    past = [mlp.w0.copy()]
    w, v = past[0], np.zeros(mlp.dim)
    for t in range(steps):
        w1, b1, w2, b2 = np.split(past[reads[t]], cuts)
        w1, w2 = w1.reshape(mlp.shapes[0]), w2.reshape(mlp.shapes[2])
        idx = rng.integers(0, mlp.n_samples, size=mlp.batch_size)
        x, y = mlp.features[idx], mlp.onehot[idx]
        hidden = np.tanh(x @ w1 + b1)
        logits = hidden @ w2 + b2
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        dlogits = (p - y) / mlp.batch_size
        dhidden = (dlogits @ w2.T) * (1 - hidden**2)
        g = np.concatenate(
            [(x.T @ dhidden).ravel(), dhidden.sum(0), (hidden.T @ dlogits).ravel(), dlogits.sum(0)]
        )
        v = MU * v - LR * g
        w = w + v
        past.append(w)
    return w


def compare(label: str, problem, loop_one, batch: int, steps: int, loop_configs: int, repeats: int):
    trace = Trace.geometric(M, steps, rng=0)
    reads = trace.read_version.tolist()
    transform = heavy_ball(np.full(batch, LR), MU)

    def batched() -> None:
        run(problem, transform, trace, steps, rng=0, record_every=None, estimate_momentum=False)

    def looped() -> None:
        for seed in range(loop_configs):
            loop_one(reads, steps, seed)

    rate_batched = batch * steps / median_seconds(batched, repeats)
    rate_loop = loop_configs * steps / median_seconds(looped, repeats)
    print(
        f"{label:<34} batched {rate_batched:>12,.0f}   loop {rate_loop:>10,.0f}   "
        f"ratio {rate_batched / rate_loop:6.1f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    b, steps, reps = args.batch, args.steps, args.repeats
    loop_configs = min(b, 16)  # the loop's rate per configuration does not depend on B
    print(f"configuration-steps per second, B = {b}, {steps} steps, geometric staleness M = {M}")
    with threadpool_limits(1):
        for sigma in (0.0, 0.03):
            for d in (10, 100, 1000):
                h = spectrum(d, 100.0)
                compare(
                    f"diagonal d={d:<5} sigma={sigma}",
                    NoisyQuadratic(h, noise=sigma),
                    lambda reads, n, seed, h=h, s=sigma: quadratic_loop(h, s, reads, n, seed),
                    b, steps, loop_configs, reps,
                )  # fmt: skip
        w = np.ones((b, 1000))
        dense_steps = steps // 4
        trace = Trace.geometric(M, dense_steps, rng=0)
        transform = heavy_ball(np.full(b, LR), MU)
        for sigma in (0.0, 0.03):
            dense = NoisyQuadratic(spectrum(1000, 100.0), noise=sigma, rotation=0)
            compare(
                f"dense d=1000 sigma={sigma}",
                dense,
                lambda reads, n, seed, q=dense, s=sigma: dense_loop(q.hessian, s, reads, n, seed),
                b, dense_steps, 4, reps,
            )  # fmt: skip
            matmul = median_seconds(lambda q=dense: w @ q.hessian, reps)
            engine = median_seconds(
                lambda q=dense: run(q, transform, trace, dense_steps, rng=0, record_every=None),
                reps,
            )
            print(
                f"  dense d=1000 sigma={sigma}: engine step {engine / dense_steps * 1e3:.2f} ms, bare "
                f"({b} x 1000) @ (1000 x 1000) {matmul * 1e3:.2f} ms: "
                f"{matmul * dense_steps / engine:.0%} of the multiply rate"
            )
        mlp = DigitsMLP()
        compare(
            "digits-mlp (64-32-10, minibatch 32)",
            mlp,
            lambda reads, n, seed: mlp_loop(mlp, reads, n, seed),
            b, steps // 4, loop_configs, reps,
        )  # fmt: skip


if __name__ == "__main__":
    main()
