"""Throughput of the batched engine against a per-configuration loop, measured side by side in one run.

Prints configuration-steps per second (recording off) for B configurations of heavy-ball momentum under
geometric staleness (M = 4) on

- the diagonal quadratic, d = 10, 100, 1000, noiseless and with Gaussian gradient noise (σ = 0.03),
  each against a per-configuration loop in plain NumPy;
- a dense (rotated) quadratic, d = 1000, as a fraction of the rate of a single-thread
  (B x d) @ (d x d) multiply timed in the same run (the one product each step must do);
- ``digits-mlp`` against a per-configuration loop.

With ``--jax`` (the ``bench`` extra; skipped with a message when JAX is absent), the same cases against
a JAX reference timed after compilation: ``jax.jit`` of a ``lax.scan`` over the steps with ``jax.vmap``
over the B configurations, float64, one thread, the same trace and the same ring-buffer gather, Gaussian
noise of the same law. In the same run it measures the triad memory bandwidth and the single-thread
float64 GEMM rate, and prints the bytes each update must read and write, so that the fraction of the
bandwidth bound (diagonal, noiseless) and of the GEMM floor (digits-mlp) is explicit.

With ``--baseline COMMIT``, it times an nq50 sweep chunk (B = 256, common random numbers, recording
every 2 steps) and a digits-mlp chunk at that commit (``git archive`` into a temporary folder, imported
from there, which the child process asserts) and at the working tree, alternating, in fresh processes;
each as a sweep chunk runs at that commit (stopping each configuration on its own where the engine
has ``stop_each``).

One BLAS thread throughout (threadpoolctl); the second core is for a second process (a sweep runs one
process per core). Medians over ``--repeats`` runs; ratios are what to read, absolute rates vary with the
machine's load.

    python benchmarks/engine.py [--batch 256] [--steps 1000] [--repeats 5] [--jax] [--loops]
    python benchmarks/engine.py --baseline 0b9a3fc [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

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


# ------------------------------------------------------------------------------- hardware
def triad_bandwidth(repeats: int) -> float:
    """Bytes per second of ``a = b + s c`` over 8M float64 (3 x 64 MB, well past the caches), counted
    as 24 bytes per element (STREAM's convention): one fused pass with numba where it is installed,
    else NumPy's two passes (40 bytes per element moved)."""
    n = 1 << 23
    b, c, a = np.ones(n), np.full(n, 2.0), np.empty(n)
    try:
        import numba

        @numba.njit(cache=False)
        def triad(a, b, c, s):
            for i in range(a.size):
                a[i] = b[i] + s * c[i]

        seconds = median_seconds(lambda: triad(a, b, c, 3.0), repeats)
        return 24 * n / seconds
    except ImportError:

        def two_passes() -> None:
            np.multiply(c, 3.0, out=a)
            np.add(a, b, out=a)

        return 40 * n / median_seconds(two_passes, repeats)


def gemm_rate(repeats: int, b: int = 256, d: int = 1000) -> float:
    """Float64 multiply-adds x 2 per second of one (b x d) @ (d x d) product (one BLAS thread)."""
    x, y = np.ones((b, d)), np.ones((d, d))
    return 2.0 * b * d * d / median_seconds(lambda: x @ y, repeats)


def mlp_flops(mlp: DigitsMLP) -> float:
    """Floating-point operations of one minibatch gradient of the MLP: forward (x W1, h W2) and
    backward (dlogits W2^T, x^T dhidden, h^T dlogits), 2 per multiply-add."""
    m, h = mlp.batch_size, mlp.hidden
    return 2.0 * m * (64 * h + h * 10 + 10 * h + 64 * h + h * 10)


def mlp_products_rate(mlp: DigitsMLP, batch: int, repeats: int) -> float:
    """Float64 FLOP/s of the MLP's five matrix products alone (forward and backward, one minibatch
    per configuration, B configurations, each a BLAS call of the shapes a gradient has): the ceiling
    the GEMM floor cannot see, since these products are small."""
    m, h = mlp.batch_size, mlp.hidden
    rng = np.random.default_rng(0)
    x, w1 = rng.random((batch, m, 64)), rng.random((batch, 64, h))
    hid, w2, dl = rng.random((batch, m, h)), rng.random((batch, h, 10)), rng.random((batch, m, 10))

    def products() -> None:
        for b in range(batch):
            np.dot(x[b], w1[b])
            np.dot(hid[b], w2[b])
            np.dot(dl[b], w2[b].T)
            np.dot(x[b].T, hid[b])
            np.dot(hid[b].T, dl[b])

    return mlp_flops(mlp) * batch / median_seconds(products, repeats)


# ------------------------------------------------------------------------------- JAX reference
def jax_reference(problem, trace: Trace, steps: int, batch: int, sigma: float):
    """A compiled JAX run of the same stale heavy ball (B configurations, lr per configuration, the
    trace's reads from a ring of past iterates); returns a function that runs it to completion."""
    import jax
    import jax.numpy as jnp

    reads = np.asarray(trace.read_version[:steps])
    ring_size = int(np.max(np.arange(steps) - reads)) + 2
    read_slot = jnp.asarray(reads % ring_size)
    t_slot = jnp.asarray(np.arange(steps) % ring_size)
    lrs = jnp.full(batch, LR)
    is_mlp = isinstance(problem, DigitsMLP)
    if is_mlp:
        feats, onehot = jnp.asarray(problem.features), jnp.asarray(problem.onehot)
        shapes = problem.shapes
        cuts = np.cumsum([int(np.prod(sh)) for sh in shapes])[:-1].tolist()

        def grad_fn(w, key):
            idx = jax.random.randint(key, (problem.batch_size,), 0, problem.n_samples)
            x, y = feats[idx], onehot[idx]
            w1, b1, w2, b2 = jnp.split(w, cuts)
            w1, w2 = w1.reshape(shapes[0]), w2.reshape(shapes[2])
            hidden = jnp.tanh(x @ w1 + b1)
            logits = hidden @ w2 + b2
            p = jax.nn.softmax(logits, axis=-1)
            dlogits = (p - y) / problem.batch_size
            dhidden = (dlogits @ w2.T) * (1 - hidden * hidden)
            return jnp.concatenate(
                [
                    (x.T @ dhidden).ravel(),
                    dhidden.sum(0),
                    (hidden.T @ dlogits).ravel(),
                    dlogits.sum(0),
                ]
            )
    else:
        hess = None if problem.hessian is None else jnp.asarray(problem.hessian)
        curv = jnp.asarray(problem.curvatures)

        def grad_fn(w, key):
            g = w * curv if hess is None else w @ hess
            if sigma:
                g = g + sigma * jax.random.normal(key, w.shape)
            return g

    w0 = jnp.asarray(problem.init_params(1)[0])

    def one(lr, key):
        ring = jnp.zeros((ring_size, w0.size)).at[0].set(w0)

        def step(carry, xs):
            ring, v = carry
            t, r, s = xs
            g = grad_fn(ring[r], jax.random.fold_in(key, t))
            v = MU * v - lr * g
            ring = ring.at[(s + 1) % ring_size].set(ring[s] + v)
            return (ring, v), None

        (ring, _), _ = jax.lax.scan(
            step, (ring, jnp.zeros_like(w0)), (jnp.arange(steps), read_slot, t_slot)
        )
        return ring[steps % ring_size]

    keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(0), i))(jnp.arange(batch))
    fn = jax.jit(jax.vmap(one))
    fn(lrs, keys).block_until_ready()  # compile
    return lambda: fn(lrs, keys).block_until_ready()


def versus_jax(label, problem, sigma, batch, steps, repeats, bytes_per_update=None, triad=None,
               flops=None, gemm=None) -> None:  # fmt: skip
    trace = Trace.geometric(M, steps, rng=0)
    transform = heavy_ball(np.full(batch, LR), MU)

    def ours() -> None:
        run(problem, transform, trace, steps, rng=0, record_every=None, estimate_momentum=False)

    ref = jax_reference(problem, trace, steps, batch, sigma)
    # side by side: alternate the two, median of each
    mine, theirs = [], []
    ours(), ref()
    for _ in range(repeats):
        start = time.perf_counter()
        ours()
        mine.append(time.perf_counter() - start)
        start = time.perf_counter()
        ref()
        theirs.append(time.perf_counter() - start)
    t_ours, t_jax = statistics.median(mine), statistics.median(theirs)
    line = (
        f"{label:<30} asyncsim {t_ours / steps * 1e6:9.1f} us/step   jax {t_jax / steps * 1e6:9.1f} "
        f"us/step   asyncsim/jax speed {t_jax / t_ours:5.2f}x"
    )
    if bytes_per_update is not None:
        rate = bytes_per_update * batch * steps / t_ours
        line += f"   {rate / 1e9:6.2f} GB/s = {rate / triad:4.0%} of triad"
    if flops is not None:
        rate = flops * batch * steps / t_ours
        line += f"   {rate / 1e9:6.2f} GFLOP/s = {rate / gemm:4.0%} of GEMM"
    print(line, flush=True)


def jax_section(batch: int, steps: int, repeats: int) -> None:
    # One thread for XLA: its flags alone still left a second thread busy (CPU time twice the wall
    # time), so the process is pinned to one core, which XLA sizes its thread pool by; the NumPy side
    # runs one BLAS thread on that core as well.
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false")
    try:
        import jax
    except ImportError:
        print("JAX reference skipped: jax is not installed (pip install -e '.[bench]')")
        return
    jax.config.update("jax_enable_x64", True)
    triad = triad_bandwidth(repeats)
    gemm = gemm_rate(repeats)
    print(
        f"triad bandwidth {triad / 1e9:.2f} GB/s (one thread); GEMM {gemm / 1e9:.2f} GFLOP/s (one thread)"
    )
    print(
        "bytes per update, diagonal noiseless heavy ball: 40 d (read the stale and the current "
        "iterate, read and write the velocity, write the new iterate; 8 bytes each)"
    )
    print(
        f"JAX {jax.__version__}, B = {batch}, {steps} steps, geometric staleness M = {M}, float64"
    )
    for sigma in (0.0, 0.03):
        for d in (10, 100, 1000):
            versus_jax(
                f"diagonal d={d:<5} sigma={sigma}", NoisyQuadratic(spectrum(d, 100.0), noise=sigma),
                sigma, batch, steps, repeats,
                bytes_per_update=40 * d if sigma == 0.0 else None, triad=triad,
            )  # fmt: skip
    dense = NoisyQuadratic(spectrum(1000, 100.0), noise=0.0, rotation=0)
    versus_jax("dense d=1000 sigma=0.0", dense, 0.0, batch, steps // 4, repeats)
    mlp = DigitsMLP()
    versus_jax("digits-mlp", mlp, 0.0, batch, steps // 4, repeats, flops=mlp_flops(mlp), gemm=gemm)
    small = mlp_products_rate(mlp, batch, repeats)
    print(
        f"digits-mlp's five products alone, one BLAS call each: {small / 1e9:.2f} GFLOP/s = "
        f"{small / gemm:.0%} of the GEMM rate (the ceiling of a step at these shapes)"
    )


# ------------------------------------------------------------------------------- baseline
CHUNK = """
import inspect, sys, time, statistics
import numpy as np
from threadpoolctl import threadpool_limits
import asyncsim
assert asyncsim.__file__.startswith(sys.argv[1]), f"imported {asyncsim.__file__}, not {sys.argv[1]}"
from asyncsim.engine import run
from asyncsim.optim import heavy_ball
from asyncsim.problems import make_problem
from asyncsim.trace import Trace

# as a sweep chunk runs at each commit: each configuration stops on its own where the engine can
EACH = {"stop_each": True} if "stop_each" in inspect.signature(run).parameters else {}

def chunk(name, lrs, steps, every):
    lr, mu = (a.ravel()[:256] for a in np.meshgrid(lrs, np.linspace(-0.9, 0.9, 9), indexing="ij"))
    problem = make_problem(name)
    trace = Trace.geometric(8, steps, rng=1)
    seq = np.random.SeedSequence(3)  # common random numbers, as a sweep chunk
    return lambda: run(problem, heavy_ball(lr, mu), trace, steps, rng=[seq] * lr.size,
                       record_every=every, estimate_momentum=False, stop_at=problem.target, **EACH)

cases = {"nq50": chunk("nq50", 2.0 ** np.linspace(-6.5, -0.5, 29), 1200, 2),
         "digits-mlp": chunk("digits-mlp", 2.0 ** np.arange(-4, 3.01, 0.5), 400, 10)}
with threadpool_limits(1):
    for name, fn in cases.items():
        fn()
        times = []
        for _ in range(int(sys.argv[2])):
            start = time.perf_counter(); fn(); times.append(time.perf_counter() - start)
        print(name, statistics.median(times))
"""


def baseline(commit: str, repeats: int) -> None:
    """Sweep chunks at ``commit`` and at the working tree, alternating fresh processes."""
    here = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory(prefix="asyncsim-baseline-") as tmp:
        archive = subprocess.run(
            ["git", "-C", str(here), "archive", commit], check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        trees = {commit: Path(tmp), "working tree": here}
        results: dict[str, dict[str, list[float]]] = {label: {} for label in trees}
        for _ in range(3):
            for label, tree in trees.items():
                env = dict(os.environ, PYTHONPATH=str(tree))
                out = subprocess.run(
                    [sys.executable, "-c", CHUNK, str(tree), str(repeats)],
                    cwd=tree, env=env, capture_output=True, text=True, check=True,
                ).stdout  # fmt: skip
                for line in out.splitlines():
                    name, seconds = line.split()
                    results[label].setdefault(name, []).append(float(seconds))
    print(
        "sweep chunks (B = 256 nq50 / 135 digits-mlp, common random numbers), medians of 3 processes"
    )
    for name in results[commit]:
        old = statistics.median(results[commit][name])
        new = statistics.median(results["working tree"][name])
        print(
            f"  {name:<11} {commit}: {old * 1e3:8.1f} ms   working tree: {new * 1e3:8.1f} ms   "
            f"speedup {old / new:5.2f}x"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--jax", action="store_true", help="the JAX reference, bandwidth, GEMM")
    parser.add_argument("--loops", action="store_true", help="against per-configuration loops")
    parser.add_argument("--baseline", metavar="COMMIT", help="sweep chunks at COMMIT and now")
    args = parser.parse_args()
    if args.baseline:
        baseline(args.baseline, args.repeats)
        return
    with threadpool_limits(1):
        if args.jax:
            jax_section(args.batch, args.steps, args.repeats)
        if args.loops or not args.jax:
            loops(args.batch, args.steps, args.repeats)


def loops(b: int, steps: int, reps: int) -> None:
    loop_configs = min(b, 16)  # the loop's rate per configuration does not depend on B
    print(f"configuration-steps per second, B = {b}, {steps} steps, geometric staleness M = {M}")
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
