"""Where "asynchrony begets momentum" holds as compute times grow regular: implicit momentum and the
best explicit momentum against the coefficient of variation (CV) of compute times.

The papers' result is exact for exponential compute times (CV 1), whose staleness is geometric with
implicit momentum ``μ_S = 1 - 1/M`` (theory/README.md §1-2). Real clusters are more regular: logged
delays of 8 shared-memory workers have mean about M - 1 but a standard deviation near 1.5 instead of
7.5. Gamma compute times with CV from 1 down to 0.1 (:meth:`asyncsim.distributions.Gamma.from_cv`)
move the cluster model from the one to the other at the same mean staleness M - 1; this experiment
measures what the optimizer then sees, beside the geometric prediction:

- **implicit momentum**: the worker-local total-momentum estimate (theory/README.md §9) of plain SGD
  (explicit μ = 0, so total = implicit) at a probe step size, on the noise floor of ``problem``: the
  median over the second half of the run's records, then over seeds;
- **best explicit momentum**: the argmin over a (α, μ) grid of the median over seeds of the iterations
  to the problem's target (a :class:`~asyncsim.sweep.Sweep` over one cluster config per (M, CV)),
  with the range of μ whose best-over-α iterations are within ``tolerance`` of the best;
- **the geometric prediction**: ``1 - 1/M`` (:func:`theory.staleness.implicit_momentum`) and the
  mean-iterate optimum of theory/README.md §3 (:func:`theory.asynchrony.optimal_explicit_momentum`);
  the CV 1 row is the measured geometric case.

Random streams
--------------
``rng`` becomes one root (:mod:`asyncsim._rng`), recorded as ``seed``. Seed s of the implicit-momentum
runs at M workers and CV c draws its trace from ``stream(root, "workers", M, "cv", f"{c:g}", "seed",
s, "trace")`` and its gradient noise from the same key ending in ``"noise"``. The sweep's root seed
(an int) is drawn from ``stream(root, "grids")``; the sweep keys its chunks by (M, seed), so every CV
at one M sees the same worker streams (common random numbers across CVs).

References
----------
Wu, Magnússon, Feyzmahdavian, Johansson, "Delay-Adaptive Step-sizes for Asynchronous Learning",
ICML 2022 (logged delays of asynchronous runs).
"""

from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from asyncsim._rng import SeedRecord, record, root, stream
from asyncsim._validate import check_array, check_int, check_real
from asyncsim.cluster import ClusterConfig, simulate
from asyncsim.distributions import Gamma
from asyncsim.engine import run
from asyncsim.experiments.momentum import curvatures_of
from asyncsim.optim import sgd
from asyncsim.problems import make_problem
from asyncsim.sweep import Sweep, run_sweep
from theory.asynchrony import optimal_explicit_momentum
from theory.staleness import implicit_momentum

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["CVS", "MOMENTA", "VariabilityResult", "momentum_against_variability"]

CVS = (1.0, 0.5, 0.3, 0.2, 0.1)
"""Coefficients of variation of compute times: exponential (1) to near-deterministic (0.1)."""

MOMENTA = (-0.9, -0.675, -0.45, -0.225, 0.0, 0.225, 0.45, 0.675, 0.9)
"""The explicit momentum grid of theory/README.md §5."""

LRS = tuple(float(x) for x in 2.0 ** np.arange(-9.0, 0.25, 0.5))
"""Step sizes 2^-9 ... 1 by factors √2: the part of nq50's grid (theory/README.md §5) that reaches the
target within the default steps at M = 8 and 16."""


@dataclass(frozen=True, eq=False)
class VariabilityResult:
    """Implicit and best explicit momentum against the CV of compute times, per worker count.

    Arrays are indexed ``[worker count, CV]`` unless stated.

    Attributes
    ----------
    workers : int64 (n_m,)
    cvs : float64 (n_cv,)
    staleness_mean, staleness_std, zero_fraction : float64 (n_m, n_cv)
        Of the implicit-momentum runs' traces (warm-up of 20 M updates dropped), median over seeds:
        mean and standard deviation of the staleness and the fraction of updates with staleness 0.
    implicit : float64 (n_m, n_cv, n_probe)
        Measured implicit momentum at each probe step size.
    implicit_geometric : float64 (n_m,)
        The geometric prediction ``1 - 1/M``.
    best_momentum, best_lr, best_iterations : float64 (n_m, n_cv)
        The grid point with the fewest median iterations to target.
    momentum_low, momentum_high : float64 (n_m, n_cv)
        The smallest and largest μ of the grid whose best-over-α median iterations are within
        ``tolerance`` of ``best_iterations`` (how flat the optimum is).
    iterations : float64 (n_m, n_cv, n_mu)
        Best over α of the median iterations, per explicit μ (inf: no α reached the target).
    best_momentum_geometric : float64 (n_m,)
        The geometric prediction of the best explicit momentum: the mean-iterate optimum of
        theory/README.md §3 at ``μ_S = 1 - 1/M`` (α and μ continuous; it takes steps at which
        single runs diverge, and the single-run optimum lags it).
    problem : str
    probe_lrs : float64 (n_probe,)
    lrs, momenta : float64
        The sweep's grids.
    seeds, steps, probe_steps : int
    tolerance : float
    seed : SeedRecord
        The root (``seed.sequence()`` as ``rng`` makes the same result).
    """

    workers: np.ndarray
    cvs: np.ndarray
    staleness_mean: np.ndarray
    staleness_std: np.ndarray
    zero_fraction: np.ndarray
    implicit: np.ndarray
    implicit_geometric: np.ndarray
    best_momentum: np.ndarray
    best_lr: np.ndarray
    best_iterations: np.ndarray
    momentum_low: np.ndarray
    momentum_high: np.ndarray
    iterations: np.ndarray
    best_momentum_geometric: np.ndarray
    problem: str
    probe_lrs: np.ndarray
    lrs: np.ndarray
    momenta: np.ndarray
    seeds: int
    steps: int
    probe_steps: int
    tolerance: float
    seed: SeedRecord

    def to_frame(self) -> pd.DataFrame:
        """One row per (M, CV): the staleness summary, the implicit momentum at each probe step
        (``implicit@<lr>``) and its departure from ``1 - 1/M`` (``departure@<lr>``), and the best
        explicit momentum beside the geometric prediction."""
        import pandas as pd

        m, c = np.meshgrid(self.workers, self.cvs, indexing="ij")
        columns: dict[str, Any] = {
            "workers": m.ravel(),
            "cv": c.ravel(),
            "staleness_mean": self.staleness_mean.ravel(),
            "staleness_std": self.staleness_std.ravel(),
            "zero_fraction": self.zero_fraction.ravel(),
            "implicit_geometric": np.repeat(self.implicit_geometric, self.cvs.size),
        }
        for k, lr in enumerate(self.probe_lrs):
            implicit = self.implicit[..., k]
            columns[f"implicit@{lr:g}"] = implicit.ravel()
            columns[f"departure@{lr:g}"] = (implicit - self.implicit_geometric[:, None]).ravel()
        columns |= {
            "best_momentum": self.best_momentum.ravel(),
            "momentum_low": self.momentum_low.ravel(),
            "momentum_high": self.momentum_high.ravel(),
            "best_lr": self.best_lr.ravel(),
            "best_iterations": self.best_iterations.ravel(),
            "best_momentum_geometric": np.repeat(self.best_momentum_geometric, self.cvs.size),
        }
        frame = pd.DataFrame(columns)
        frame.attrs["seed"] = str(self.seed)
        return frame


def momentum_against_variability(
    workers: Any = (8, 16),
    cvs: Any = CVS,
    *,
    problem: Any = "nq50",
    optimizer: Any = "heavy_ball",
    probe_lrs: Any = (0.02, 0.05),
    probe_steps: int = 6000,
    lrs: Any = LRS,
    momenta: Any = MOMENTA,
    seeds: int = 32,
    steps: int = 8000,
    tolerance: float = 0.05,
    rng: Any = 0,
    jobs: int = 1,
    executor: Executor | None = None,
    progress: bool | None = None,
) -> VariabilityResult:
    """Measure implicit momentum and the best explicit momentum for each M and CV of compute times.

    Parameters
    ----------
    workers : sequence of int
        Asynchronous worker counts M.
    cvs : sequence of float
        Coefficients of variation of the gamma compute times (mean 1), in ``(0, 10]``; 1 is
        exponential.
    problem : str or Problem
        A reference problem name (nq50 by default) or any problem instance. The geometric prediction
        of the best explicit momentum needs its ``curvatures`` (a quadratic; NaN otherwise).
    optimizer : str or callable
        The sweep's optimizer: a name or a factory ``(lr, momentum, **options)``
        (:class:`~asyncsim.sweep.Sweep`); the implicit momentum is measured on plain SGD.
    probe_lrs : sequence of float
        Step sizes of the plain-SGD runs that measure implicit momentum (the estimate reads low with
        a large step, theory/README.md §9).
    probe_steps : int
        Updates of each of those runs.
    lrs, momenta : sequence of float
        The sweep's grids (heavy ball).
    seeds : int
        Seeds per configuration, for both measurements.
    steps : int
        Updates per sweep run (a run stops early once every configuration met the target).
    tolerance : float
        Relative slack in iterations that defines ``momentum_low`` and ``momentum_high``.
    rng : None, int >= 0, SeedSequence or Generator
        The root of all randomness (module docstring).
    jobs : int
        Processes for the sweep (when no ``executor`` is given).
    executor : concurrent.futures.Executor or None
        Where the sweep's chunks run.
    progress : bool or None
        The sweep's progress bar (default: at a terminal, not in CI).

    Returns
    -------
    VariabilityResult

    Examples
    --------
    A small run (two seeds, a coarse grid):

    >>> result = momentum_against_variability(
    ...     (4,),
    ...     (1.0, 0.1),
    ...     probe_lrs=(0.05,),
    ...     probe_steps=600,
    ...     lrs=(0.125, 0.25),
    ...     momenta=(0.0, 0.45),
    ...     seeds=2,
    ...     steps=1500,
    ...     progress=False,
    ... )
    >>> result.to_frame()[["workers", "cv", "implicit_geometric"]].values.tolist()
    [[4.0, 1.0, 0.75], [4.0, 0.1, 0.75]]
    """
    ms = check_array("workers", workers, low=2).astype(np.int64)
    cv = check_array("cvs", cvs, low=0.0, high=Gamma.CV_MAX, low_open=True)
    probes = check_array("probe_lrs", probe_lrs, low=0.0, low_open=True)
    for name, arr in (("workers", ms), ("cvs", cv), ("probe_lrs", probes)):
        if arr.ndim != 1 or arr.size == 0:
            raise ValueError(f"{name} must be a non-empty 1-D sequence, got shape {arr.shape}")
    if not np.array_equal(ms, check_array("workers", workers)):
        raise ValueError(f"workers must be integers >= 2, got {workers!r}")
    probe_steps = check_int("probe_steps", probe_steps, low=2)
    seeds = check_int("seeds", seeds, low=1)
    tolerance = check_real("tolerance", tolerance, low=0.0)
    seq = root(rng)
    summary = np.empty((3, ms.size, cv.size))
    implicit = np.empty((ms.size, cv.size, probes.size))
    for i, m in enumerate(ms):
        for j, c in enumerate(cv):
            summary[:, i, j], implicit[i, j] = _implicit(
                problem, int(m), float(c), probes, probe_steps, seeds, seq
            )
    sweep = Sweep(
        problem,
        lrs=tuple(lrs),
        momenta=tuple(momenta),
        staleness="cluster",
        cluster=tuple(
            ClusterConfig(int(m), compute=Gamma.from_cv(float(c))) for m in ms for c in cv
        ),
        seeds=seeds,
        steps=steps,
        optimizer=optimizer,
        seed=int(stream(seq, "grids").generate_state(1)[0]),
    )
    table = run_sweep(sweep, executor=executor, jobs=jobs, progress=progress)
    best = table.best()
    per_mu = np.min(table.median_iterations(), axis=1)  # (points, momenta): best over α
    with np.errstate(invalid="ignore"):
        near = per_mu <= (1.0 + tolerance) * best["iterations"][:, None]
    grid_mu = np.asarray(sweep.momenta)
    low = np.array([grid_mu[row].min() if row.any() else np.nan for row in near])
    high = np.array([grid_mu[row].max() if row.any() else np.nan for row in near])
    shape = (ms.size, cv.size)
    curvatures = curvatures_of(problem)
    geometric = (
        np.full(ms.size, np.nan)
        if curvatures is None
        else optimal_explicit_momentum(implicit_momentum(ms), curvatures).mu_l
    )
    return VariabilityResult(
        workers=ms,
        cvs=cv,
        staleness_mean=summary[0],
        staleness_std=summary[1],
        zero_fraction=summary[2],
        implicit=implicit,
        implicit_geometric=np.asarray(implicit_momentum(ms), dtype=np.float64),
        best_momentum=best["momentum"].reshape(shape),
        best_lr=best["lr"].reshape(shape),
        best_iterations=best["iterations"].reshape(shape),
        momentum_low=low.reshape(shape),
        momentum_high=high.reshape(shape),
        iterations=per_mu.reshape(*shape, -1),
        best_momentum_geometric=np.asarray(geometric, dtype=np.float64).reshape(-1),
        problem=problem if isinstance(problem, str) else str(problem.name),
        probe_lrs=probes,
        lrs=np.asarray(sweep.lrs),
        momenta=grid_mu,
        seeds=seeds,
        steps=steps,
        probe_steps=probe_steps,
        tolerance=tolerance,
        seed=record(seq),
    )


def _implicit(
    problem: Any,
    m: int,
    cv: float,
    probes: np.ndarray,
    steps: int,
    seeds: int,
    seq: np.random.SeedSequence,
) -> tuple[np.ndarray, np.ndarray]:
    """(staleness mean, sd and zero fraction; implicit momentum per probe step) at M = ``m`` workers
    and compute CV ``cv``: medians over seeds, each configuration of one seed sharing its trace and
    noise."""
    config = ClusterConfig(m, compute=Gamma.from_cv(cv))
    keys = [stream(seq, "workers", m, "cv", f"{cv:g}", "seed", s) for s in range(seeds)]
    traces = [simulate(config, steps, rng=stream(key, "trace")) for key in keys]
    warm = min(20 * m, steps // 2)
    tau = np.array([tr.staleness[warm:] for tr in traces], dtype=np.float64)
    summary = np.median([tau.mean(axis=1), tau.std(axis=1), np.mean(tau == 0, axis=1)], axis=1)
    b = probes.size
    history = run(
        make_problem(problem) if isinstance(problem, str) else problem,
        sgd(np.tile(probes, seeds)),
        [tr for tr in traces for _ in range(b)],
        steps,
        rng=[stream(key, "noise") for key in keys for _ in range(b)],
        record_every=max(1, steps // 200),
        estimate_momentum=True,
    )
    reading = history["total_momentum"]
    late = reading[reading.shape[0] // 2 :]
    per_run = np.nanmedian(late, axis=0).reshape(seeds, b)
    return summary, np.median(per_run, axis=0)
