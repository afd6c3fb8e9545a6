"""The digits CNN as a PyTorch module, for real lock-free runs: :class:`TorchDigitsCNN` and
:class:`TorchCNNModel`, and :func:`meter_total_momentum`, the torch momentum meter read off a run.

:class:`TorchDigitsCNN` is :class:`asyncsim.problems.DigitsCNN` as a ``torch.nn.Module``:
``Conv2d(1, c, 3, padding=1)``, tanh, ``AvgPool2d(2)``, flattening channel by channel,
``Linear(16 c, 10)``, softmax cross-entropy. Its flat parameter vector, in the order of
``parameters_to_vector``, is the problem's: ``[conv weight (c, 1, 3, 3), conv bias (c), dense weight
(10, 16 c), dense bias (10)]``; it starts at the problem's initial weights and trains on the same
images, minibatch size and evaluation subset, so the two agree on a forward and backward pass to
rounding (tests/test_torch_cnn.py).

:class:`TorchCNNModel` plugs it into :func:`asyncsim.hogwild.hogwild` (the
:class:`~asyncsim.hogwild.HogwildModel` protocol): each worker process builds its own module (one
torch thread) and draws its minibatches from its own seed sequence as the problem does.

Needs the ``torch`` extra: ``pip install 'asyncsim[torch]'``.
"""

from __future__ import annotations

import datetime
import json
import multiprocessing
import os
import platform
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

try:
    import torch
except ImportError as error:
    raise ImportError(
        "asyncsim.torch_cnn needs PyTorch: pip install 'asyncsim[torch]' (torch==2.13.0)"
    ) from error

from asyncsim._rng import record, root, stream
from asyncsim._validate import check_choice, check_int, check_real
from asyncsim.hogwild import HogwildRun, SharedHeavyBall, available_cores, hogwild
from asyncsim.problems import DigitsCNN
from asyncsim.torch import MomentumMeter

__all__ = [
    "DTYPES",
    "RECORDING",
    "TorchCNNModel",
    "TorchDigitsCNN",
    "cnn_run_summary",
    "meter_total_momentum",
    "record_cnn_measurements",
]

DTYPES = {"float64": torch.float64, "float32": torch.float32}
"""The element types a :class:`TorchCNNModel` runs in, by name."""


class TorchDigitsCNN(torch.nn.Module):
    """:class:`~asyncsim.problems.DigitsCNN` as a torch module (module docstring).

    Parameters
    ----------
    problem : DigitsCNN
        Gives the channels, the images (1797, 1, 8, 8) and labels, the evaluation subset and the
        initial weights.
    dtype : torch.dtype
        float64 or float32.
    """

    def __init__(self, problem: DigitsCNN, dtype: torch.dtype = torch.float64) -> None:
        super().__init__()
        if not isinstance(problem, DigitsCNN):
            raise TypeError(f"problem must be a DigitsCNN, got {type(problem).__name__}")
        c = problem.channels
        self.conv = torch.nn.Conv2d(1, c, 3, padding=1, dtype=dtype)
        self.pool = torch.nn.AvgPool2d(2)
        self.dense = torch.nn.Linear(16 * c, 10, dtype=dtype)
        self.register_buffer(
            "images", torch.tensor(problem.features.reshape(-1, 1, 8, 8), dtype=dtype)
        )
        self.register_buffer("labels", torch.tensor(problem.labels, dtype=torch.int64))
        self.register_buffer("eval_idx", torch.tensor(problem.eval_idx, dtype=torch.int64))
        self.set_flat(problem.w0)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits (m, 10) of images (m, 1, 8, 8)."""
        pooled = self.pool(torch.tanh(self.conv(images)))
        return self.dense(pooled.flatten(1))  # (m, c, 4, 4): channel by channel

    def minibatch_loss(self, idx: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Mean cross-entropy over the images ``idx`` (m,), with the graph for backward."""
        idx = torch.as_tensor(idx, dtype=torch.int64)
        return torch.nn.functional.cross_entropy(self(self.images[idx]), self.labels[idx])

    @torch.no_grad()
    def evaluation_loss(self) -> float:
        """Mean cross-entropy on the evaluation subset (the problem's ``loss``)."""
        return float(self.minibatch_loss(self.eval_idx))

    @torch.no_grad()
    def set_flat(self, params: np.ndarray) -> None:
        """Load the flat parameter vector ``params (d,)``."""
        flat = torch.as_tensor(np.asarray(params), dtype=self.images.dtype)
        torch.nn.utils.vector_to_parameters(flat, self.parameters())

    def flat(self) -> np.ndarray:
        """The flat parameter vector (d,), a copy."""
        return torch.nn.utils.parameters_to_vector(self.parameters()).detach().numpy().copy()

    def flat_gradient(self, params: np.ndarray, idx: torch.Tensor | np.ndarray) -> np.ndarray:
        """The gradient (d,) of :meth:`minibatch_loss` over ``idx`` at ``params (d,)`` (loaded)."""
        self.set_flat(params)
        grads = torch.autograd.grad(self.minibatch_loss(idx), list(self.parameters()))
        return torch.cat([g.reshape(-1) for g in grads]).numpy()


@dataclass(frozen=True, eq=False)
class TorchCNNModel:
    """:class:`TorchDigitsCNN` as a :class:`~asyncsim.hogwild.HogwildModel`.

    Each worker builds its module in :meth:`open` (one torch thread) and draws its minibatch
    indices from its own seed sequence, ``block`` updates at a time, as the problem's ``draw``
    does. The parent's :meth:`loss` is the problem's evaluation loss (the NumPy path, equal to the
    module's to rounding).

    Parameters
    ----------
    problem : DigitsCNN
    dtype : {"float64", "float32"}
        Element type of the shared parameters and the module.
    block : int
        Minibatches drawn at a time.
    """

    problem: DigitsCNN
    dtype_name: str = "float64"
    block: int = 256
    dim: int = field(init=False)
    dtype: np.dtype = field(init=False)

    def __post_init__(self) -> None:
        if not isinstance(self.problem, DigitsCNN):
            raise TypeError(f"problem must be a DigitsCNN, got {type(self.problem).__name__}")
        check_choice("dtype_name", self.dtype_name, tuple(DTYPES))
        object.__setattr__(self, "block", check_int("block", self.block, low=1))
        object.__setattr__(self, "dim", int(self.problem.dim))
        object.__setattr__(self, "dtype", np.dtype(self.dtype_name))

    @property
    def name(self) -> str:
        return f"torch-{self.problem.name}-{self.dtype_name}"

    def initial_parameters(self) -> np.ndarray:
        return self.problem.w0.astype(self.dtype)

    def open(self, worker: int, seed: np.random.SeedSequence) -> Callable[[np.ndarray], np.ndarray]:
        torch.set_num_threads(1)
        module = TorchDigitsCNN(self.problem, DTYPES[self.dtype_name])
        return _TorchGradient(self.problem, module, np.random.default_rng(seed), self.block)

    def loss(self, params: np.ndarray) -> float:
        return float(self.problem.loss(np.asarray(params, dtype=np.float64)[None, :])[0])


class _TorchGradient:
    """One worker's stochastic gradient: the module's at each read, on the next drawn minibatch."""

    def __init__(
        self, problem: DigitsCNN, module: TorchDigitsCNN, rng: np.random.Generator, block: int
    ) -> None:
        self.problem, self.module, self.rng, self.block = problem, module, rng, block
        self.drawn = torch.empty((0, problem.batch_size), dtype=torch.int64)
        self.used = 0

    def __call__(self, params: np.ndarray) -> np.ndarray:
        if self.used == len(self.drawn):
            self.drawn = torch.as_tensor(self.problem.draw([self.rng], self.block, 1)[0])
            self.used = 0
        idx = self.drawn[self.used]
        self.used += 1
        return self.module.flat_gradient(params, idx)


def meter_total_momentum(
    run: HogwildRun, *, beta: float = 0.99, every: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    """The total momentum of a real run by :class:`asyncsim.torch.MomentumMeter`: one meter per
    worker, fed after the run with that worker's reads and gradients in its order of write (the
    meter sees nothing else, so this equals feeding it inside the worker; it needs
    ``record_reads``).

    Returns the worker's update counts ``(K,)`` at which each meter is read (every ``every`` of its
    updates) and the estimates ``(M, K)`` (NaN before a meter's first complete term, and where a
    worker made fewer updates)."""
    if run.reads is None or run.gradients is None:
        raise ValueError("meter_total_momentum needs a run made with record_reads=True")
    beta = check_real("beta", beta, low=0.0, high=1.0, high_open=True)
    every = check_int("every", every, low=1)
    lr = float(run.config["optimizer"]["lr"])
    writers = run.trace.writer
    rows = [np.flatnonzero(writers == i) for i in range(run.n_workers)]
    counts = np.arange(every, max(len(r) for r in rows) + 1, every)
    estimates = np.full((run.n_workers, counts.size), np.nan)
    for i, mine in enumerate(rows):
        weights = torch.zeros(run.reads.shape[1], dtype=torch.float64)
        meter = MomentumMeter([weights], beta)
        for k, t in enumerate(mine, start=1):
            weights.copy_(torch.from_numpy(run.reads[t].astype(np.float64)))
            meter.read()
            meter.sent(lr, [torch.from_numpy(run.gradients[t].astype(np.float64))])
            if k % every == 0:
                estimates[i, k // every - 1] = meter.estimate()
    return counts, estimates


# ------------------------------------------------------------------------------------------ recording
RECORDING: dict[str, Any] = {
    "lr": 0.05,
    "momenta": (0.0, 0.5),
    "workers": (1, 2, 4),
    "runs": 6,
    "updates": 2000,
    "record_every": 100,
    "dtype": "float64",
    "timeout": 300.0,
    "start_method": "forkserver",
}
"""How the committed CNN measurements were made: the defaults of :func:`record_cnn_measurements`
(heavy ball with step ``lr`` on digits-cnn, each momentum and worker count ``runs`` times, the runs
interleaved, ``updates`` writes each)."""


def cnn_run_summary(run: HogwildRun, target: float, *, late: float = 1 / 3) -> dict[str, Any]:
    """One real CNN run as a row: :func:`~asyncsim.experiments.real_asynchrony.run_summary`'s
    columns (``total_momentum`` there is the pooled estimator of
    :meth:`~asyncsim.hogwild.HogwildRun.total_momentum`), ``meter_total_momentum`` (per worker, the
    median of its :func:`meter_total_momentum` estimates past ``late`` of its updates; the mean over
    workers) and ``final_loss``."""
    # imported here: worker processes import this module to unpickle the model, and need none of
    # the experiments
    from asyncsim.experiments.real_asynchrony import run_summary

    counts, estimates = meter_total_momentum(run, every=10)
    made = np.bincount(run.trace.writer, minlength=run.n_workers)
    per_worker = []
    for i in range(run.n_workers):
        shown = estimates[i, (counts >= late * made[i]) & (counts <= made[i])]
        if np.isfinite(shown).any():
            per_worker.append(float(np.nanmedian(shown)))
    return run_summary(run, target, late=late) | {
        "meter_total_momentum": float(np.mean(per_worker)) if per_worker else np.nan,
        "final_loss": float(run.loss[-1]),
    }


def record_cnn_measurements(
    folder: str | Path,
    *,
    workers: Sequence[int] = RECORDING["workers"],
    runs: int = RECORDING["runs"],
    updates: int = RECORDING["updates"],
    lr: float = RECORDING["lr"],
    momenta: Sequence[float] = RECORDING["momenta"],
    record_every: int = RECORDING["record_every"],
    dtype: str = RECORDING["dtype"],
    timeout: float = RECORDING["timeout"],
    start_method: str = RECORDING["start_method"],
    rng: Any = None,
    note: str = "",
    report: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """Run real lock-free heavy ball on the digits CNN in torch (:class:`TorchCNNModel`) and write
    what :func:`asyncsim.experiments.cnn_real_asynchrony.cnn_real_asynchrony` replays into
    ``folder``: ``cnn_runs.csv`` (one row per run, :func:`cnn_run_summary`) and
    ``cnn_measured.json`` (machine, cores, settings, date, ``note``). Runs go round robin (run k of
    every μ and M, then run k + 1) so the machine's load falls on every case alike. Not
    reproducible: ``rng`` fixes the minibatches (run k at M workers and momentum index j draws from
    ``stream(root, M, j, k)``), not the interleaving. ``report`` receives a line per run. Returns
    the runs table.

    With ``start_method`` "forkserver" (where the platform has it) the fork server imports this
    module, and torch, once: each run's workers then start in a fraction of a second instead of
    importing torch again (seconds each)."""
    folder = Path(folder)
    if start_method == "forkserver":
        multiprocessing.get_context("forkserver").set_forkserver_preload([__name__])
    folder.mkdir(parents=True, exist_ok=True)
    problem = DigitsCNN()
    model = TorchCNNModel(problem, dtype)
    seq = root(rng)
    rows = []
    for k in range(check_int("runs", runs, low=1)):
        for j, mu in enumerate(momenta):
            for m in workers:
                result = hogwild(
                    model,
                    SharedHeavyBall(lr, mu),
                    m,
                    updates,
                    rng=stream(seq, m, j, k),
                    record_every=record_every,
                    record_reads=True,
                    timeout=timeout,
                    start_method=start_method,
                )
                rows.append(cnn_run_summary(result, problem.target) | {"run": k})
                if report is not None:
                    row = rows[-1]
                    report(
                        f"M = {m} μ = {mu:g} run {k}: meter {row['meter_total_momentum']:.3f}, "
                        f"pooled {row['total_momentum']:.3f}, mean τ {row['mean']:.2f}, "
                        f"loss {row['final_loss']:.3f}, load {row['load']:.2f}"
                    )
    table = pd.DataFrame(rows)
    table.to_csv(folder / "cnn_runs.csv", index=False, float_format="%.6g")
    metadata = {
        "machine": platform.platform(),
        "cores": available_cores(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "recorded": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "workers": list(workers),
        "settings": {
            "problem": problem.name,
            "model": model.name,
            "lr": lr,
            "momenta": list(momenta),
            "runs": runs,
            "updates": updates,
            "record_every": record_every,
            "dtype": dtype,
            "start_method": start_method,
            "seed": str(record(seq)),
        },
        "load_average": [float(x) for x in os.getloadavg()],
        "note": note,
    }
    (folder / "cnn_measured.json").write_text(json.dumps(metadata, indent=2) + "\n")
    return table
