"""asyncsim.torch: YellowFin as a torch optimizer (parameter groups, dtypes, the state_dict round trip,
the closed loop against the NumPy tuner, the failure flags) and the momentum meter (against the
engine's estimator, in a synchronous loop, in torch.multiprocessing workers), and the README example.

The official traces and the 1e-10 agreement with the NumPy tuner are in test_yellowfin.py, with the
NumPy and optax versions. Skipped where the torch extra is missing, outside CI only.
"""

from __future__ import annotations

import copy
import importlib
import io
import math
import os
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest


def _extra(module: str, extra: str):
    """The module, or a skip where its extra is not installed, outside CI only (CI installs every
    extra: there a missing one fails)."""
    if os.environ.get("CI"):
        return importlib.import_module(module)
    return pytest.importorskip(
        module, reason=f"needs the {extra} extra: pip install -e '.[{extra}]'"
    )


torch = _extra("torch", "torch")

from asyncsim.measure import (  # noqa: E402 (after the extra's check)
    momentum_estimate,
    momentum_estimator_init,
    momentum_estimator_update,
)
from asyncsim.optim import record_of  # noqa: E402
from asyncsim.torch import MomentumMeter, YellowFin  # noqa: E402
from asyncsim.yellowfin import yellowfin_tuner  # noqa: E402

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One torch thread: the tests' tensors are small, and the CI machine's cores are shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _regression(dtype=torch.float64, n: int = 256, seed: int = 0):
    """A least-squares problem ``(x, y)`` with 8 features and noise 0.1 (drawn in float64)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=gen, dtype=torch.float64)
    w = torch.randn(8, 1, generator=gen, dtype=torch.float64)
    y = x @ w + 0.1 * torch.randn(n, 1, generator=gen, dtype=torch.float64)
    return x.to(dtype), y.to(dtype)


def _train(model, optimizer, data, steps: int, *, batch: int = 32, seed: int = 1, closure=False):
    """Minibatch SGD steps on the squared error; the batches depend on ``seed`` only."""
    x, y = data
    gen = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(steps):
        rows = torch.randint(0, x.shape[0], (batch,), generator=gen)

        def loss_of(rows=rows):
            optimizer.zero_grad()
            loss = torch.nn.functional.mse_loss(model(x[rows]), y[rows])
            loss.backward()
            return loss

        if closure:
            losses.append(float(optimizer.step(loss_of)))
        else:
            losses.append(float(loss_of().detach()))
            optimizer.step()
    return losses


def _linear(dtype=torch.float64, seed: int = 2):
    torch.manual_seed(seed)
    return torch.nn.Linear(8, 1).double().to(dtype)  # the same initial values in either dtype


# ------------------------------------------------------------------------------------------ optimizer
def test_parameter_groups_are_independent_tuners() -> None:
    """Two groups with their own options in one optimizer step exactly as two optimizers, one per
    group; each group's record is its own."""
    options = [{"variant": "official", "beta": 0.99}, {"variant": "paper", "lr": 1e-3, "window": 5}]
    model = _linear()
    twin = copy.deepcopy(model)
    together = YellowFin(
        [{"params": [model.weight], **options[0]}, {"params": [model.bias], **options[1]}]
    )
    separate = [
        YellowFin([twin.weight], **options[0]),
        YellowFin([twin.bias], **options[1]),
    ]

    class Both:
        def zero_grad(self):
            for opt in separate:
                opt.zero_grad()

        def step(self):
            for opt in separate:
                opt.step()

    data = _regression()
    _train(model, together, data, 60)
    _train(twin, Both(), data, 60)
    for p, q in zip(model.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    records = together.record()
    np.testing.assert_equal(records, [separate[0].record()[0], separate[1].record()[0]])
    assert records[0]["lr"] != records[1]["lr"]
    assert together.param_groups[1]["lr"] == records[1]["lr"]  # the applied pair, torch-style


@pytest.mark.parametrize("variant", ["paper", "official"])
def test_float32_and_float64(variant) -> None:
    """The state keeps the parameters' dtype; the tuner's scalars are float64 in both, so the float32
    run follows the float64 one to float32 rounding (measured: 9e-6 relative after 200 steps)."""
    runs = {}
    for dtype in (torch.float32, torch.float64):
        model = _linear(dtype)
        optimizer = YellowFin(model.parameters(), variant=variant)
        _train(model, optimizer, _regression(dtype), 200)
        state = optimizer.state[model.weight]
        assert state["grad_sum"].dtype == dtype
        assert (
            state["velocity"] if variant == "paper" else state["momentum_buffer"]
        ).dtype == dtype
        runs[dtype] = (torch.cat([p.detach().reshape(-1) for p in model.parameters()]), optimizer)
    (w32, opt32), (w64, opt64) = runs[torch.float32], runs[torch.float64]
    torch.testing.assert_close(w32.double(), w64, rtol=1e-4, atol=1e-6)
    assert math.isclose(opt32.record()[0]["lr"], opt64.record()[0]["lr"], rel_tol=1e-3)


OPTIONS = {
    "paper": {},
    "official": {"variant": "official"},
    "closed loop": {"closed_loop": True, "target_momentum": 0.9, "gain": 0.1},
}


@pytest.mark.parametrize("name", list(OPTIONS))
def test_state_dict_round_trip_mid_training(name) -> None:
    """Saved after 40 steps (torch.save, read back with weights_only=True) and loaded into a fresh
    model and optimizer, training goes on exactly as the uninterrupted run: parameters and every
    recorded value equal, bit for bit, 40 steps later."""
    data = _regression()
    model = _linear()
    optimizer = YellowFin(model.parameters(), **OPTIONS[name])
    _train(model, optimizer, data, 40)
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    resumed_model = _linear(seed=99)  # other initial values, overwritten by the load
    resumed = YellowFin(resumed_model.parameters(), **OPTIONS[name])
    resumed_model.load_state_dict(saved["model"])
    resumed.load_state_dict(saved["optimizer"])
    _train(model, optimizer, data, 40, seed=7)
    _train(resumed_model, resumed, data, 40, seed=7)
    for p, q in zip(model.parameters(), resumed_model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    np.testing.assert_equal(resumed.record(), optimizer.record())  # NaN equal to NaN
    assert resumed.state[resumed_model.weight]["tuner"]["step"] == 80


class _SyncContext(SimpleNamespace):
    """The engine's step context for one synchronous writer (every read is the current version)."""

    def previous_read_params(self):
        return self.previous

    def has_previous_read(self):
        return np.array([self.step > 0])


def test_closed_loop_equals_the_numpy_tuner() -> None:
    """The torch closed loop (its meter, the feedback μ ← clip(μ + γ (μ* - μ̂_T))) equals the NumPy
    tuner's driven with the same synchronous reads, to 1e-10 over 200 steps in float64 (the target is
    tuned, so μ moves)."""
    h = np.logspace(0, -2, 6)
    noise = 0.1 * np.random.default_rng(3).standard_normal((200, 6))
    options = {"closed_loop": True, "gain": 0.1, "lr_init": 0.01}
    transform = yellowfin_tuner(**options)
    w = np.ones((1, 6))
    state, previous = transform.init(w), w
    weight = torch.nn.Parameter(torch.ones(6, dtype=torch.float64))
    optimizer = YellowFin([weight], lr=0.01, closed_loop=True, gain=0.1)
    for t in range(200):
        context = _SyncContext(step=t, writer=np.array([0]), read_params=w, previous=previous)
        updates, state = transform.update(h * w + noise[t], state, w, context)
        previous, w = w, w + updates
        weight.grad = torch.from_numpy(h * weight.detach().numpy() + noise[t])
        optimizer.step()
    np.testing.assert_allclose(weight.detach().numpy(), w[0], rtol=1e-10)
    mine, theirs = optimizer.record()[0], record_of(state)
    for key in ("momentum", "mu_hat", "mu_star", "lr"):
        np.testing.assert_allclose(mine[key], theirs[key][0], rtol=1e-10, err_msg=key)
    assert mine["momentum"] != mine["mu_star"]  # the loop acts: μ is not the tuner's μ*


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"lr": 0.0}, r"lr must be a finite number in \(0, inf\)"),
        ({"momentum": 1.0}, r"momentum must be a finite number in \[0, 1\)"),
        ({"variant": "adam"}, "variant"),
        ({"window": 0}, "window"),
        ({"beta": 1.0}, "beta"),
        ({"beta": [0.9, 0.99]}, "beta of a parameter group must be a scalar"),
        ({"closed_loop": True, "update_form": "framework"}, "closed_loop needs"),
        ({"blowup_factor": 1.0}, "blowup_factor"),
    ],
)
def test_bad_options_name_the_parameter(options, match) -> None:
    with pytest.raises(ValueError, match=match):
        YellowFin([torch.zeros(2, requires_grad=True)], **options)


def test_a_bad_option_in_one_group_is_caught_when_the_group_is_added() -> None:
    optimizer = YellowFin([torch.zeros(2, requires_grad=True)])
    with pytest.raises(ValueError, match="envelope"):
        optimizer.add_param_group({"params": [torch.zeros(1, requires_grad=True)], "envelope": "x"})


# ------------------------------------------------------------------------------------------ failures
@pytest.mark.parametrize("variant", ["paper", "official"])
@pytest.mark.parametrize("size", [0.0, 1e-30])
def test_zero_gradients_give_a_defined_step_and_the_no_signal_flag(variant, size) -> None:
    """Where the shipped optimizer applies μ = 1.0000017 and the shipped formula in float64 μ = 94,
    α = 5.7e6 (asyncsim.yellowfin's docstring): here μ in [0, 1), α tiny, the parameters
    unchanged and finite, no_signal set, diverged not; ordinary gradients then clear the flag."""
    weight = torch.nn.Parameter(torch.ones(3))
    optimizer = YellowFin([weight], variant=variant)
    for _ in range(30):
        weight.grad = torch.full((3,), size)
        optimizer.step()
        record = optimizer.record()[0]
        assert record["no_signal"] and not record["diverged"]
        assert 0 <= record["momentum"] < 1 and 0 < record["lr"] <= 1e-4
    torch.testing.assert_close(weight.detach(), torch.ones(3), rtol=0, atol=1e-20)
    for _ in range(30):
        weight.grad = weight.detach().clone()
        optimizer.step()
    assert not optimizer.record()[0]["no_signal"]


def test_non_finite_gradient_sets_diverged_and_leaves_the_parameters() -> None:
    """A NaN gradient in one group: that group is flagged (sticky) and its parameters stay as they
    were, without a warning; the other group goes on."""
    a, b = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2))
    optimizer = YellowFin([{"params": [a]}, {"params": [b]}], lr=0.1)
    for t in range(5):
        a.grad = torch.tensor([1.0, math.nan]) if t == 2 else torch.ones(2)
        b.grad = torch.ones(2)
        before = a.detach().clone()
        optimizer.step()
    records = optimizer.record()
    assert records[0]["diverged"] and not records[1]["diverged"]
    assert torch.isfinite(a).all() and torch.equal(a.detach(), before)
    assert (b.detach() < 1).all()


def test_a_loss_blow_up_is_flagged_from_the_closure() -> None:
    """From α₀ = 3 on a quadratic of curvature 1 the paper variant's smoothed α stays near 3 and the
    loss grows 4x a step: ``blew_up`` once it passes 10x its first value (step 2), long before
    anything is non-finite; from the default α₀ the loss falls and nothing is flagged."""
    for lr, expected in ((3.0, True), (1e-4, False)):
        weight = torch.nn.Parameter(torch.ones(4))
        optimizer = YellowFin([weight], lr=lr)

        def closure(optimizer=optimizer, weight=weight):
            optimizer.zero_grad()
            loss = 0.5 * (weight**2).sum()
            loss.backward()
            return loss

        flags = []
        for _ in range(6):
            optimizer.step(closure)
            flags.append(optimizer.record()[0]["blew_up"])
        assert flags[-1] is expected and not optimizer.record()[0]["diverged"]
        if expected:
            assert flags == [False, False, True, True, True, True]


def test_sparse_gradients_are_refused() -> None:
    embedding = torch.nn.Embedding(5, 2, sparse=True)
    optimizer = YellowFin(embedding.parameters())
    embedding(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(RuntimeError, match="sparse"):
        optimizer.step()


# ------------------------------------------------------------------------------------------ meter
def test_meter_equals_the_engine_estimator_for_one_writer() -> None:
    """On arbitrary reads, gradients and step sizes (not a training run), the meter's estimate after
    each write equals :mod:`asyncsim.measure`'s estimator for one writer, fed the same sequence."""
    rng = np.random.default_rng(4)
    shapes = [(2, 3), (4,)]
    params = [torch.zeros(s, dtype=torch.float64) for s in shapes]
    meter = MomentumMeter(params, beta=0.9)
    est = momentum_estimator_init(np.zeros((1, 10)), 1, 0.9)
    previous = np.zeros((1, 10))
    for k in range(25):
        read = rng.standard_normal((1, 10))
        grads, lr = rng.standard_normal((1, 10)), float(rng.uniform(0.01, 1.0))
        with torch.no_grad():
            for p, chunk in zip(params, np.split(read[0], [6]), strict=True):
                p.copy_(torch.from_numpy(chunk.reshape(p.shape)))
        meter.read()
        with torch.no_grad():
            for p in params:
                p.add_(1.0)  # another worker writes between this read and this write
        chunks = np.split(grads[0], [6])
        meter.sent(
            lr, [torch.from_numpy(c.reshape(s)) for c, s in zip(chunks, shapes, strict=True)]
        )
        context = _SyncContext(step=k, writer=np.array([0]), read_params=read, previous=previous)
        est = momentum_estimator_update(est, context, grads, np.array([lr]))
        previous = read
        expected = momentum_estimate(est)[0]
        assert (math.isnan(expected) and math.isnan(meter.estimate())) or math.isclose(
            meter.estimate(), expected, rel_tol=1e-12, abs_tol=1e-12
        )
    assert meter.state[params[0]]["meter"]["terms"] == 23  # the first two writes complete no term


class _Metered:
    """An optimizer with a meter beside it: read before each step, the step sent after it."""

    def __init__(self, optimizer, meter: MomentumMeter) -> None:
        self.optimizer, self.meter = optimizer, meter

    def zero_grad(self) -> None:
        self.optimizer.zero_grad()

    def step(self) -> None:
        self.meter.read()
        self.optimizer.step()
        self.meter.sent(self.optimizer.param_groups[0]["lr"])


def test_meter_reads_the_optimizers_momentum_in_a_synchronous_loop() -> None:
    """In a synchronous loop each term is n = μ_k d exactly, so the meter reads the momentum applied:
    to 1e-9 with a fixed μ (YellowFin's target 0.9; torch SGD's momentum 0.9, whose framework form is
    heavy ball at a constant step). YellowFin's tuned μ moves (here 0.02 to 0.19 in 600 steps) and the
    ratio of averages weights each step by its size, which shrinks as training converges, so the
    meter's memory must be short next to μ's drift: with β = 0.9 it reads within 0.01 (measured
    0.004 at most), with the default 0.99 it lags (reading 0.06 for 0.19 at step 600)."""
    data = _regression()
    cases = [
        ("target", lambda m: YellowFin(m.parameters(), lr=0.01, target_momentum=0.9), 0.99, 1e-9),
        ("sgd", lambda m: torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9), 0.99, 1e-9),
        ("tuned", lambda m: YellowFin(m.parameters(), lr=0.01), 0.9, 0.01),
    ]
    for name, make, beta, tolerance in cases:
        model = _linear()
        optimizer = make(model)
        metered = _Metered(optimizer, MomentumMeter(model.parameters(), beta=beta))
        gaps = []
        for _ in range(6):
            _train(model, metered, data, 100, seed=len(gaps))
            gaps.append(abs(metered.meter.estimate() - optimizer.param_groups[0]["momentum"]))
        assert max(gaps[1:]) < tolerance, (name, gaps)
    assert optimizer.param_groups[0]["momentum"] > 0.1  # the tuned μ did move


def _hogwild_worker(rank, model, turns, queue) -> None:
    """A worker of the multiprocessing test: its own YellowFin (closed loop, μ* = 0.9) over the
    shared model, reading just before each forward pass; it writes when ``turns[rank]`` lets it and
    then hands the turn to the other worker."""
    torch.set_num_threads(1)
    data = _regression(n=512, seed=0)
    optimizer = YellowFin(model.parameters(), lr=0.01, closed_loop=True, target_momentum=0.9)
    gen = torch.Generator().manual_seed(rank)
    for _ in range(300):
        if not turns[rank].acquire(timeout=60):  # the other worker failed: fail, never hang
            raise TimeoutError(f"worker {rank} waited 60 s for its turn")
        rows = torch.randint(0, 512, (16,), generator=gen)
        optimizer.read()
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(model(data[0][rows]), data[1][rows]).backward()
        optimizer.step()
        turns[1 - rank].release()
    queue.put((rank, optimizer.record()[0]))


# JAX, where another test imported it, warns at every fork; the workers never touch JAX
@pytest.mark.filterwarnings("ignore:os.fork\\(\\) was called:RuntimeWarning")
def test_meter_in_torch_multiprocessing_workers_sharing_a_model() -> None:
    """Two workers (fork, as torch's Hogwild example) train one shared model, each steering its own
    momentum with its meter: the shared loss falls 10x and each worker's total-momentum estimate
    ends within 0.05 of the target 0.9, with neither diverged.

    The workers take turns (each reads the other's last write: staleness 1), so the run is the same
    on every machine. Left to the scheduler, the run is not reproducible: on an idle machine one
    worker mostly finishes before the other starts (12 repeats read 0.865 to 0.975), while under
    load a worker paused for many of the other's writes has read 1.42 (seen in CI)."""
    context = torch.multiprocessing.get_context("fork")
    model = _linear()
    model.share_memory()
    x, y = _regression(n=512, seed=0)
    with torch.no_grad():
        before = float(torch.nn.functional.mse_loss(model(x), y))
    queue = context.Queue()
    turns = [context.Semaphore(1), context.Semaphore(0)]
    workers = [
        context.Process(target=_hogwild_worker, args=(r, model, turns, queue)) for r in range(2)
    ]
    for w in workers:
        w.start()
    results = dict(queue.get(timeout=300) for _ in workers)
    for w in workers:
        w.join(timeout=60)
        assert w.exitcode == 0
    with torch.no_grad():
        after = float(torch.nn.functional.mse_loss(model(x), y))
    assert after < before / 10
    for record in results.values():
        assert not record["diverged"] and abs(record["mu_hat"] - 0.9) < 0.05


# ------------------------------------------------------------------------------------------ README
def test_the_readme_pytorch_example_runs() -> None:
    """The README's "YellowFin in your PyTorch training loop" block runs as written: the loss falls
    and no flag is set."""
    section = README.read_text().split("YellowFin in your PyTorch training loop", 1)[1]
    (block,) = re.findall(r"```py\n(.*?)```", section, re.DOTALL)[:1]
    namespace: dict = {"__name__": "readme"}
    exec(compile(block, "README.md", "exec"), namespace)
    record = namespace["optimizer"].record()[0]
    assert not (record["no_signal"] or record["diverged"] or record["blew_up"])
    assert namespace["losses"][-1] < namespace["losses"][0] / 2
