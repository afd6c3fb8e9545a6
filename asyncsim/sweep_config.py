"""A sweep described in TOML: the grid of ``asyncsim sweep CONFIG.toml --out DIR``.

The file names a reference problem, an optimizer, the staleness points and the grid; every key is
checked before anything runs, and a bad one is a :class:`ConfigError` (a ValueError) that names the
key, the value and what is allowed. Example (``examples/sweep.toml`` in the repository)::

    problem = "nq50"  # nq50, q10 or digits-mlp
    optimizer = "heavy_ball"  # heavy_ball, nesterov, adam or yellowfin
    staleness = "geometric"  # geometric (i.i.d. queueing law) or cluster (event traces)
    workers = [1, 4, 16]
    lrs = [0.05, 0.1, 0.2]
    momenta = [-0.45, 0.0, 0.45, 0.9]
    seeds = 4
    steps = 1000
    record_every = 10
    seed = 0

    [problem_options]  # options of the reference problem
    noise = 0.03

    [options]  # optimizer options: a value, or a list of values (a grid axis)

    [cluster]  # staleness = "cluster" only
    compute = "exponential"  # exponential, deterministic, uniform, gamma or lognormal
    mean = 1.0

Keys left out take the defaults of :class:`~asyncsim.sweep.Sweep` (and of
:class:`~asyncsim.cluster.ClusterConfig`).
"""

from __future__ import annotations

import inspect
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from asyncsim._validate import check_array, check_choice, check_int, check_real
from asyncsim.cluster import ClusterConfig
from asyncsim.distributions import (
    Deterministic,
    Distribution,
    Exponential,
    Gamma,
    LogNormal,
    Uniform,
)
from asyncsim.optim import MOMENTUM, STEP_SIZE
from asyncsim.problems import REFERENCE_PROBLEMS, make_problem
from asyncsim.sweep import OPTIMIZERS, Sweep

__all__ = ["COMPUTE_LAWS", "KEYS", "ConfigError", "read_sweep_config", "sweep_from_config"]

PROBLEMS = REFERENCE_PROBLEMS
"""Reference problems a config may name."""

KEYS: dict[str, str] = {
    "problem": f"one of {', '.join(PROBLEMS)} (default nq50)",
    "optimizer": f"one of {', '.join(OPTIMIZERS)} (default heavy_ball)",
    "staleness": "geometric or cluster (default geometric)",
    "workers": "a list of integers >= 1 (default [1])",
    "groups": "a list of integers >= 1, each dividing the one value of workers (cluster only)",
    "lrs": "a non-empty list of numbers > 0",
    "momenta": "a non-empty list of numbers in (-1, 1) (default [0.0])",
    "seeds": "an integer >= 1 (default 1)",
    "steps": "an integer >= 1 (default 1000)",
    "record_every": "an integer >= 1 (default 10)",
    "target": "a number > 0: the loss target (default the problem's)",
    "seed": "an integer >= 0: the root seed (default 0)",
    "problem_options": "a table of the reference problem's options",
    "options": "a table of optimizer options: numbers, booleans, strings or lists of them",
    "cluster": "a table: compute, mean, spread, shape, sigma, server_time, pull_latency, "
    "push_latency (staleness = cluster only)",
}
"""The top-level keys of a config and what each takes."""

COMPUTE_LAWS: dict[str, Callable[[dict[str, float]], Distribution]] = {
    "exponential": lambda p: Exponential(p["mean"]),
    "deterministic": lambda p: Deterministic(p["mean"]),
    "uniform": lambda p: Uniform(p["mean"] * (1 - p["spread"]), p["mean"] * (1 + p["spread"])),
    "gamma": lambda p: Gamma(p["shape"], p["mean"]),
    "lognormal": lambda p: LogNormal(p["sigma"], p["mean"]),
}
"""Compute-time laws of ``[cluster] compute``, from the parameters ``mean``, ``spread`` (uniform:
half-width relative to the mean), ``shape`` (gamma) and ``sigma`` (lognormal: log-sd)."""

_LAW_PARAMETERS = {"mean": 1.0, "spread": 0.5, "shape": 2.0, "sigma": 0.5}
_LATENCIES = ("server_time", "pull_latency", "push_latency")


class ConfigError(ValueError):
    """A key of a sweep config with a value outside what it allows."""


def read_sweep_config(path: str | Path) -> Sweep:
    """The :class:`~asyncsim.sweep.Sweep` a TOML file describes (:func:`sweep_from_config`); a file
    that is missing or not TOML is a ConfigError too."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            config = tomllib.load(handle)
    except OSError as err:
        raise ConfigError(f"{path}: cannot read it ({err.strerror})") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML ({err})") from None
    return sweep_from_config(config, source=str(path))


def sweep_from_config(config: Mapping[str, Any], *, source: str = "config") -> Sweep:
    """The sweep of a parsed config (a mapping as :mod:`tomllib` gives it).

    Raises
    ------
    ConfigError
        ``"<source>: key <key>: <what is wrong>"`` for the first bad key: an unknown key (the allowed
        keys listed), a value of the wrong type or outside its range.
    """
    unknown = sorted(set(config) - set(KEYS))
    if unknown:
        raise ConfigError(f"{source}: unknown key {unknown[0]!r}; allowed keys: {', '.join(KEYS)}")
    fields: dict[str, Any] = {}
    for key, value in config.items():
        try:
            fields[key] = _FIELDS[key](value)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"{source}: key {key}: {err} (allowed: {KEYS[key]})") from None
    if "lrs" not in fields:
        raise ConfigError(f"{source}: key lrs: required ({KEYS['lrs']})")
    staleness = fields.get("staleness", "geometric")
    if "cluster" in fields and staleness != "cluster":
        raise ConfigError(
            f"{source}: key cluster: only with staleness = 'cluster', got {staleness!r}"
        )
    if staleness == "cluster":
        fields["cluster"] = fields.get("cluster", ClusterConfig(1))
    problem = fields.get("problem", "nq50")
    options = fields.pop("problem_options", {})
    unknown = sorted(set(options) - set(_problem_options(problem)))
    if unknown:
        raise ConfigError(
            f"{source}: key problem_options: unknown option {unknown[0]!r} of problem {problem}; "
            f"allowed: {', '.join(_problem_options(problem))}"
        )
    try:
        make_problem(problem, **options)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{source}: key problem_options: {err}") from None
    try:
        return Sweep(
            problem=problem,
            problem_options=tuple(options.items()),
            **{key: value for key, value in fields.items() if key != "problem"},
        )
    except (TypeError, ValueError) as err:  # a rule across keys (groups must divide workers ...)
        raise ConfigError(f"{source}: {err}") from None


def _problem_options(problem: str) -> tuple[str, ...]:
    """The options of a reference problem: its class's keyword arguments (and ``kappa`` of q10)."""
    parameters = inspect.signature(type(make_problem(problem))).parameters
    names = [
        name
        for name, p in parameters.items()
        if p.kind is p.KEYWORD_ONLY or p.default is not p.empty
    ]
    return tuple(sorted({*names, *(("kappa",) if problem == "q10" else ())} - {"name"}))


def _int_list(name: str, low: int) -> Callable[[Any], tuple[int, ...]]:
    def parse(value: Any) -> tuple[int, ...]:
        if not isinstance(value, list) or not value:
            raise TypeError(f"must be a non-empty list of integers >= {low}, got {value!r}")
        return tuple(check_int(name, v, low=low) for v in value)

    return parse


def _real_list(name: str, bounds: dict[str, Any]) -> Callable[[Any], tuple[float, ...]]:
    def parse(value: Any) -> tuple[float, ...]:
        if not isinstance(value, list) or not value:
            raise TypeError(f"must be a non-empty list of numbers, got {value!r}")
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
            raise TypeError(f"must be a list of numbers, got {value!r}")
        return tuple(float(v) for v in check_array(name, value, **bounds))

    return parse


def _table(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError(f"must be a table ([name] with key = value lines), got {value!r}")
    return dict(value)


def _options(value: Any) -> dict[str, Any]:
    table = _table(value)
    for name, item in table.items():
        items = item if isinstance(item, list) else [item]
        if not items or not all(isinstance(v, bool | int | float | str) for v in items):
            raise TypeError(
                f"option {name} must be a number, boolean or string, or a list of them, "
                f"got {item!r}"
            )
        table[name] = tuple(items) if isinstance(item, list) else item
    return table


def _cluster(value: Any) -> ClusterConfig:
    table = _table(value)
    allowed = ("compute", *_LAW_PARAMETERS, *_LATENCIES)
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r}; allowed: {', '.join(allowed)}")
    law = check_choice("compute", table.get("compute", "exponential"), tuple(COMPUTE_LAWS))
    parameters = {
        name: check_real(name, table.get(name, default), low=0.0, low_open=True)
        for name, default in _LAW_PARAMETERS.items()
    }
    parameters["spread"] = check_real("spread", parameters["spread"], low=0.0, high=1.0)
    latency = {
        name: Exponential(check_real(name, table[name], low=0.0, low_open=True))
        for name in _LATENCIES
        if name in table
    }
    return ClusterConfig(1, compute=COMPUTE_LAWS[law](parameters), **latency)


def _positive(name: str) -> Callable[[Any], float]:
    return lambda value: check_real(name, value, low=0.0, low_open=True)


_FIELDS: dict[str, Callable[[Any], Any]] = {
    "problem": lambda v: check_choice("problem", v, PROBLEMS),
    "optimizer": lambda v: check_choice("optimizer", v, tuple(OPTIMIZERS)),
    "staleness": lambda v: check_choice("staleness", v, ("geometric", "cluster")),
    "workers": _int_list("workers", 1),
    "groups": _int_list("groups", 1),
    "lrs": _real_list("lrs", STEP_SIZE),
    "momenta": _real_list("momenta", MOMENTUM),
    "seeds": lambda v: check_int("seeds", v, low=1),
    "steps": lambda v: check_int("steps", v, low=1),
    "record_every": lambda v: check_int("record_every", v, low=1),
    "target": _positive("target"),
    "seed": lambda v: check_int("seed", v, low=0),
    "problem_options": _table,
    "options": _options,
    "cluster": _cluster,
}
