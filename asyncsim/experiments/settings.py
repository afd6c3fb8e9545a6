"""The grids and budgets of every experiment, per scale: the one place they are written.

``"quick"`` is the committed ``figures/`` folder and the claims table (about a minute or two on two
cores); ``"full"`` the grids of theory/README.md §5. ``settings(name, scale)`` gives an experiment's
dictionary; an experiment function's keyword arguments override its entries.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from asyncsim._validate import check_choice
from asyncsim.cluster import ClusterConfig
from asyncsim.distributions import Deterministic

__all__ = [
    "GROUP_SETTINGS",
    "MU_GRID",
    "NEAR_OPTIMAL",
    "RUN_OPTIONS",
    "SCALES",
    "TUNER_VARIANTS",
    "settings",
    "settings_from",
]

SCALES = ("quick", "full")
"""Scales of every experiment."""

MU_GRID = (-0.9, -0.675, -0.45, -0.225, 0.0, 0.225, 0.45, 0.675, 0.9)
"""The explicit momenta of theory/README.md §5."""

NEAR_OPTIMAL = 0.05
"""Tolerance of the near-optimal band: momenta whose best median iterations are within 5% of the best."""


def lr_grid(low: float, high: float) -> tuple[float, ...]:
    """Step sizes 2^low ... 2^high by factors √2 (theory/README.md §5)."""
    return tuple(float(a) for a in 2.0 ** np.arange(low, high + 0.01, 0.5))


def _scales(quick: dict[str, Any], **full: Any) -> dict[str, dict[str, Any]]:
    """The settings of both scales: ``full`` is ``quick`` with the given changes."""
    return {"quick": quick, "full": quick | full}


_SINGLE_RUN = {  # the single-run optimum of theory/README.md §3: noiseless nq50, relative distance 1e-6
    "lrs": lr_grid(-4, 1),
    "seeds": 8,
    "budget": {1: 500, 2: 1300, 4: 2300, 8: 4000, 16: 5500},  # updates per M: ~2x the best
    "record_every": 5,
    "target": 1e-6,
}
DIGITS = {
    "workers": (1, 4, 16),
    "lrs": tuple(2.0 ** np.arange(-2, 2.01, 1.0)),
    "momenta": MU_GRID[::2],
    "seeds": 3,
    "steps": 1600,
    "record_every": 10,
}
"""The digits-mlp grid of the best-momentum experiment at the quick scale."""

# "quick" keeps the claims' resolution where they need it (128 seeds and record_every 2 for nq50) and
# trims what they do not (α outside the useful range, long budgets).
_SETTINGS: dict[str, dict[str, dict[str, Any]]] = {
    "staleness": _scales({"updates": 20_000, "max_workers": 16}, updates=400_000),
    "nq50": _scales(  # the noisy-quadratic sweep shared by "momentum" and "penalty"
        {
            "workers": (1, 2, 4, 8, 16),
            "lrs": lr_grid(-6.5, -0.5),
            "momenta": MU_GRID,
            # 128 seeds, not the 32 of theory/README.md §5: the landscape is flat at high M (every μ in
            # [-0.225, 0.675] within 3% at M = 4), and with 32 seeds the grid's argmin jumps by
            # two grid steps between root seeds; with 128 it is non-increasing within one grid
            # step in 97% of bootstrap resamples and negative at M = 16 in 99%
            "seeds": 128,
            "steps": 1200,
            "record_every": 2,
        },
        workers=(1, 2, 4, 8, 16, 32),
        lrs=lr_grid(-13, 1),
        steps=3000,  # the best runs need 300-700 updates; slower ones count as not reaching it
        record_every=1,
    ),
    "single_run": _scales(
        _SINGLE_RUN,
        lrs=lr_grid(-8, 1),
        seeds=32,
        budget={1: 800, 2: 2000, 4: 3500, 8: 6000, 16: 9000, 32: 15000},
        record_every=1,
    ),
    "digits": _scales(
        DIGITS,
        workers=(1, 2, 4, 8, 16),
        # up to 2^1.5, the first α that never reaches the target: in a run of 2^-4 ... 2^3 at M = 1
        # and 16, no α above 2 reached it at any μ (four α that ran every step, 27% of the work)
        lrs=lr_grid(-4, 1.5),
        momenta=MU_GRID,
        seeds=8,
        steps=4000,
        record_every=5,
    ),
    "robust_region": _scales(
        {"momenta": (0.36, 0.64, 0.81), "inside": 6, "steps": 1500, "grid": (80, 50)},
        momenta=(0.25, 0.36, 0.49, 0.64, 0.81),
        inside=10,
        steps=3000,
    ),
    "total_momentum": _scales(
        {
            "workers": (1, 2, 4, 8, 16),
            "momenta": (-0.5, -0.25, 0.0, 0.25, 0.5, 0.75),
            "lr": 0.05,
            "seeds": 2,
            "steps": 6000,
            "record_every": 10,
        },
        workers=(1, 2, 4, 8, 16, 32),
        seeds=8,
        steps=20_000,
    ),
    "closed_loop": _scales(
        {
            "workers": 16,
            "target": 0.9,
            "gains": (0.01, 0.05),
            "shown_gain": 0.05,
            "lr_init": 1e-4,
            "seeds": 4,
            "steps": 6000,
            "record_every": 10,
            "band": 0.1,
        },
        gains=(0.01, 0.05, 0.1),
        seeds=16,
        steps=20_000,
    ),
    "tuners": _scales(
        {
            "workers": (1, 16),
            "seeds": 4,
            "steps": 2500,
            "record_every": 5,
            "lrs": lr_grid(-6, 0.5),
            "adam_lrs": lr_grid(-9, -2),
        },
        workers=(1, 4, 16),
        seeds=32,
        steps=6000,
        record_every=2,
        lrs=lr_grid(-13, 1),
        adam_lrs=lr_grid(-13, -1),
    ),
    "groups": _scales(
        {
            "groups": (1, 2, 4, 8, 16),
            "lrs": lr_grid(-5, 1.5),
            "seeds": 8,
            "steps": 1500,
            "record_every": 2,
        },
        lrs=lr_grid(-8, 2),
        seeds=32,
        steps=4000,
        record_every=1,
    ),
    "adam_beta1": _scales(  # Adam's α grid per β1, asynchronous cluster traces (nq50)
        {
            "workers": (1, 16),
            "betas": (0.0, 0.5, 0.9),
            "lrs": lr_grid(-9, -2),
            "seeds": 8,
            "steps": 2500,
            "record_every": 5,
        },
        workers=(1, 4, 16),
        betas=(0.0, 0.25, 0.5, 0.75, 0.9),
        lrs=lr_grid(-13, -1),
        seeds=32,
        steps=6000,
        record_every=2,
    ),
    # digits-cnn: a step costs about 15x the MLP's, so the claims' CNN grids are small
    "cnn_total_momentum": _scales(
        {
            "workers": (1, 4, 16),
            "momenta": (0.0, 0.5),
            "lr": 0.05,
            "seeds": 2,
            "steps": 1200,
            "record_every": 25,
        },
        workers=(1, 2, 4, 8, 16),
        momenta=(-0.5, 0.0, 0.5),
        seeds=4,
        steps=4000,
    ),
    "cnn_momentum": _scales(
        {
            "workers": (1, 4, 16),
            "lrs": tuple(2.0 ** np.arange(-3, 0.01, 1.0)),
            "momenta": MU_GRID[::2],
            "seeds": 2,
            "steps": 1000,
            "record_every": 20,
        },
        workers=(1, 2, 4, 8, 16),
        lrs=lr_grid(-4, 1),
        momenta=MU_GRID,
        seeds=4,
        steps=3000,
        record_every=10,
    ),
    "cnn_tuners": _scales(
        {
            "workers": (1,),
            "seeds": 2,
            "steps": 1000,
            "record_every": 20,
            "lrs": tuple(2.0 ** np.arange(-4, 0.01)),
            "adam_lrs": tuple(2.0 ** np.arange(-9, -4.99)),
        },
        seeds=8,
        steps=3000,
        record_every=10,
        lrs=lr_grid(-8, 1),
        adam_lrs=lr_grid(-11, -2),
    ),
    "implicit_momentum": _scales(  # expected-dynamics mode on noiseless q10: deterministic runs
        {
            "workers": (1, 2, 4, 8, 16),
            "momenta": (-0.5, 0.0, 0.5),
            "effective_steps": (0.25, 0.75),  # α h_max / M
            "steps": 1500,
            "skip": 0.1,
            "tail": 1e-30,  # the law's truncation: its modes stay below the rate's floor 1e-27
        },
        workers=(1, 2, 4, 8, 16, 32),
        momenta=(-0.5, -0.25, 0.0, 0.25, 0.5),
        effective_steps=(0.25, 0.5, 0.75),
        steps=4000,
    ),
    "mean_iterate": _scales(  # AbM Fig. 6: (α, fine μ) grid per M in the expected-dynamics mode
        {
            "budget": {1: 100, 2: 150, 4: 250, 8: 400, 16: 600},  # updates per M: ~4x the best
            "momenta": tuple(float(v) for v in np.round(np.arange(-0.6, 0.601, 0.025), 3)),
            "effective_steps": tuple(float(v) for v in 2.0 ** np.arange(-1.0, 2.01, 0.25)),
            "target": 1e-6,
            "skip": 0.2,  # of each run's points above the rate's floor: the transient
            "tail": 1e-12,  # the law's truncation (rates are fit down to 1e-9)
        },
        budget={1: 100, 2: 150, 4: 250, 8: 400, 16: 600, 32: 800},
        momenta=tuple(float(v) for v in np.round(np.arange(-0.8, 0.801, 0.01), 3)),
        effective_steps=tuple(float(v) for v in 2.0 ** np.arange(-2.0, 2.01, 0.125)),
    ),
    "group_conventions": _scales(  # 16 workers in g groups, a group splitting one minibatch
        {
            "groups": (1, 2, 4, 8, 16),
            "sync": 0.1,  # a group update's synchronization, in mean compute times
            "conventions": ("papers",),  # "aggregate", today's convention, is compute_groups
            "lrs": lr_grid(-5, 1.5),
            "momenta": MU_GRID,
            "seeds": 8,
            "steps": 1500,
            "record_every": 2,
        },
        conventions=("papers", "aggregate"),
        lrs=lr_grid(-8, 2),
        seeds=32,
        steps=4000,
        record_every=1,
    ),
    "robust_nonconvex": _scales(  # deterministic 1-D runs of LogPeriodicCurvature
        {"momenta": (0.36, 0.64, 0.81), "inside": 6, "steps": 800, "floor": 1e-8},
        momenta=(0.3, 0.36, 0.49, 0.64, 0.81),
        inside=10,
        steps=2000,
        floor=1e-10,
    ),
}

TUNER_VARIANTS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("YellowFin (paper, α₀ = 1)", {"lr_init": 1.0}),
    ("YellowFin (paper, α₀ = 1e-4)", {"lr_init": 1e-4}),
)
"""YellowFin settings of the tuners experiment: (label, options of
:func:`~asyncsim.yellowfin.yellowfin_tuner`)."""

GROUP_SETTINGS: tuple[tuple[str, ClusterConfig], ...] = (
    ("Exp(1) compute, no server cost", ClusterConfig(16)),
    (
        "Exp(1) compute, server busy 0.2 per apply",
        ClusterConfig(16, server_time=Deterministic(0.2)),
    ),
)
"""Hardware settings of the compute-groups experiment: (label, cluster of 16 workers)."""


def settings(name: str, scale: str, **overrides: Any) -> dict[str, Any]:
    """Experiment ``name``'s settings at ``scale``, with the ``overrides`` that are not None."""
    check_choice("scale", scale, SCALES)
    return _SETTINGS[name][scale] | {k: v for k, v in overrides.items() if v is not None}


RUN_OPTIONS = ("scale", "rng", "jobs", "executor", "progress")
"""The arguments every experiment function takes to say where and how it runs."""


def settings_from(
    name: str, arguments: dict[str, Any], *, skip: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Experiment ``name``'s settings at ``arguments["scale"]``, overridden by an experiment
    function's arguments (its ``locals()`` on entry) that are not None, leaving out the run options
    and the names in ``skip`` (its inputs: problem, optimizer, ...)."""
    overrides = {k: v for k, v in arguments.items() if k not in RUN_OPTIONS and k not in skip}
    return settings(name, arguments["scale"], **overrides)
