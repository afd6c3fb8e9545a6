"""The ``asyncsim`` command.

Each subcommand is registered by one ``_add_<name>(subparsers)`` function listed in
:data:`_COMMANDS`; it builds its parser and sets ``handler``, a function ``(args, parser) -> int``.
To add a command, write such a pair and list it. Range checks live in
argparse ``type=`` functions, so a malformed argument is a usage error (exit code 2) naming the
argument, the value and the allowed range. The library never prints; this module does.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from asyncsim import __version__
from asyncsim.cluster import MODES, ClusterConfig, simulate
from asyncsim.distributions import (
    Deterministic,
    Distribution,
    Exponential,
    Gamma,
    LogNormal,
    Uniform,
)
from asyncsim.problems import REFERENCE_PROBLEMS
from asyncsim.sweep import OPTIMIZERS
from asyncsim.trace import Trace

__all__ = ["main"]

PMF_LAGS = 8
"""Lags of the staleness law printed by ``asyncsim staleness``."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``asyncsim`` command with ``argv`` (default ``sys.argv[1:]``); return the exit code.

    Usage errors print the usage and the message on stderr and return 2.
    """
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
        return int(args.handler(args, args.command_parser))
    except SystemExit as exit_:  # argparse's usage errors and --help
        return exit_.code if isinstance(exit_.code, int) else 2


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="asyncsim",
        description="Asynchrony begets momentum: staleness traces, stale-gradient SGD, figures.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in _COMMANDS:
        add(subparsers)
    return parser


# ------------------------------------------------------------------------- argument types
def _integer(low: int) -> Callable[[str], int]:
    """An argparse type: an integer ``>= low``, also written as a whole number like ``1e5``."""

    def parse(text: str) -> int:
        try:
            value: int | None = int(text)
        except ValueError:
            try:
                number = float(text)
            except ValueError:
                number = float("nan")
            value = int(number) if number.is_integer() else None
        if value is None or value < low:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {text}")
        return value

    return parse


def _real(allowed: str, accept: Callable[[float], bool]) -> Callable[[str], float]:
    """An argparse type: a finite number that ``accept`` takes, described by ``allowed``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not (np.isfinite(value) and accept(value)):
            raise argparse.ArgumentTypeError(f"must be {allowed}, got {text}")
        return value

    return parse


_positive = _real("a finite number > 0", lambda x: x > 0)
_fraction = _real("a number in [0, 1]", lambda x: 0 <= x <= 1)


def _positive_list(text: str) -> tuple[float, ...]:
    """An argparse type: comma-separated finite numbers ``> 0``."""
    try:
        return tuple(_positive(item) for item in text.split(","))
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"must be comma-separated finite numbers > 0, got {text}"
        ) from None


def _output_file(*suffixes: str) -> Callable[[str], Path]:
    """An argparse type: a file to write, ending in one of ``suffixes`` (the format), in an existing
    writable folder, and not itself a folder."""

    def parse(text: str) -> Path:
        path = Path(text)
        if path.suffix.lower() not in suffixes:
            raise argparse.ArgumentTypeError(
                f"must be a file name ending in {' or '.join(suffixes)}, got {text}"
            )
        if path.is_dir():
            raise argparse.ArgumentTypeError(f"must be a file to write, got the folder {text}")
        if not path.parent.is_dir():
            raise argparse.ArgumentTypeError(
                f"must be in an existing folder, got {text} ({path.parent} is not a folder)"
            )
        _check_writable(path.parent, f"must be in a writable folder, got {text}")
        return path

    return parse


def _output_folder(text: str) -> Path:
    """An argparse type: a folder to write into, existing or creatable (its nearest existing
    ancestor is a writable folder)."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"must be a folder, got the existing file {text}")
    existing = next(p for p in (path, *path.absolute().parents) if p.exists())
    if not existing.is_dir():
        raise argparse.ArgumentTypeError(
            f"must be a folder that can be created, got {text} ({existing} is a file)"
        )
    _check_writable(existing, f"must be a writable folder, got {text}")
    return path


def _check_writable(folder: Path, message: str) -> None:
    if not os.access(folder, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(message)


# --------------------------------------------------------------------------- staleness
_COMPUTE_LAWS: dict[str, Callable[[argparse.Namespace], Distribution]] = {
    "exponential": lambda a: Exponential(a.mean),
    "deterministic": lambda a: Deterministic(a.mean),
    "uniform": lambda a: Uniform(a.mean * (1 - a.spread), a.mean * (1 + a.spread)),
    "gamma": lambda a: Gamma(a.shape, a.mean),
    "lognormal": lambda a: LogNormal(a.sigma, a.mean),
}


def _add_staleness(subparsers: argparse._SubParsersAction) -> None:
    sub = subparsers.add_parser(
        "staleness",
        help="simulate a cluster and summarize its staleness",
        description=(
            "Simulate M workers against a parameter server and print the staleness summary: mean, "
            "variance, throughput, and the law's first lags beside the geometric law "
            "(1/g)(1 - 1/g)^l of g asynchronous writers (g = M workers or groups)."
        ),
    )
    sub.add_argument("--workers", type=_integer(1), default=16, help="workers M (default 16)")
    sub.add_argument("--updates", type=_integer(1), default=100_000, help="updates (default 1e5)")
    sub.add_argument("--seed", type=_integer(0), default=None, help="seed (default: fresh)")
    sub.add_argument("--mode", choices=MODES, default="async", help="execution mode")
    sub.add_argument("--groups", type=_integer(1), default=None, help="groups g (mode groups)")
    sub.add_argument(
        "--compute", choices=tuple(_COMPUTE_LAWS), default="exponential", help="compute-time law"
    )
    sub.add_argument("--mean", type=_positive, default=1.0, help="mean compute time (default 1)")
    sub.add_argument(
        "--spread",
        type=_fraction,
        default=0.5,
        help="uniform law: half-width relative to the mean, in [0, 1] (default 0.5: [0.5, 1.5])",
    )
    sub.add_argument("--shape", type=_positive, default=2.0, help="gamma law: shape (default 2)")
    sub.add_argument("--sigma", type=_positive, default=0.5, help="lognormal: log-sd (default 0.5)")
    sub.add_argument(
        "--multipliers",
        type=_positive_list,
        default=None,
        metavar="X,X,...",
        help="per-worker compute-time multipliers, M of them (4 = four times slower)",
    )
    for name, what in (
        ("pull-latency", "pull latency"),
        ("push-latency", "push latency"),
        ("server-time", "server time per apply"),
    ):
        sub.add_argument(f"--{name}", type=_positive, default=None, help=f"mean exponential {what}")
    sub.add_argument("--method", choices=("auto", "simpy", "fast"), default="auto")
    sub.add_argument(
        "--out", type=_output_file(".csv", ".npz"), default=None, help="save the trace (.csv, .npz)"
    )
    sub.add_argument(
        "--plot",
        type=_output_file(".png", ".pdf", ".svg"),
        default=None,
        help="save a plot of the staleness law (.png, .pdf, .svg)",
    )
    sub.set_defaults(handler=_staleness, command_parser=sub)


def _staleness(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.groups is not None and args.mode != "groups":
        parser.error(f"argument --groups: only allowed with --mode groups, got --mode {args.mode}")
    if args.mode == "groups" and args.groups is None:
        parser.error("argument --groups: required with --mode groups (a divisor of --workers)")
    if args.groups is not None and args.workers % args.groups:
        parser.error(f"argument --groups: must divide --workers {args.workers}, got {args.groups}")
    if args.multipliers is not None and len(args.multipliers) != args.workers:
        parser.error(
            f"argument --multipliers: must hold --workers = {args.workers} values, "
            f"got {len(args.multipliers)}"
        )
    latency = {
        name: None if getattr(args, name) is None else Exponential(getattr(args, name))
        for name in ("pull_latency", "push_latency", "server_time")
    }
    try:
        config = ClusterConfig(
            args.workers,
            compute=_COMPUTE_LAWS[args.compute](args),
            time_multipliers=args.multipliers,
            mode=args.mode,
            n_groups=args.groups,
            **latency,
        )
        trace = simulate(config, args.updates, rng=args.seed, method=args.method)
    except ValueError as err:
        parser.error(str(err))
    print(_summary(trace))
    if args.out is not None:
        print(f"trace saved to {trace.save(args.out)}")
    if args.plot is not None:
        _plot_pmf(trace, args.plot)
        print(f"pmf plot saved to {args.plot}")
    return 0


def _geometric(writers: int, lags: int) -> np.ndarray:
    """The geometric law (1/g)(1 - 1/g)^l at l = 0..lags-1, shape ``(lags,)``."""
    return (1.0 / writers) * (1.0 - 1.0 / writers) ** np.arange(lags)


def _summary(trace: Trace) -> str:
    config = trace.config
    g = config.n_groups
    law = _geometric(g, PMF_LAGS)
    pmf = trace.pmf(PMF_LAGS - 1)
    corr = trace.autocorrelation(1) if len(trace) > 1 else float("nan")
    lines = [
        f"asyncsim staleness: {config.n_workers} workers, mode {config.mode}, g = {g} "
        f"asynchronous writer(s) of {config.group_size} gradient(s) each",
        f"compute {config.compute!r}, {len(trace)} updates, seed {trace.seed}",
        f"mean staleness      {trace.mean:12.4f}   (geometric law: g - 1 = {g - 1})",
        f"variance            {trace.variance:12.4f}   (geometric law: g(g - 1) = {g * (g - 1)})",
        f"lag-1 correlation   {corr:12.4f}   (exponential times: about -1/(2g) = {-0.5 / g:.4f})",
        f"throughput          {trace.throughput:12.4f}   updates per unit time "
        f"({trace.time_per_update:.4f} per update)",
        "",
        "  lag   empirical   geometric (1/g)(1-1/g)^l",
        *(
            f"  {lag:3d}   {p:9.5f}   {q:9.5f}"
            for lag, (p, q) in enumerate(zip(pmf, law, strict=True))
        ),
    ]
    return "\n".join(lines)


def _plot_pmf(trace: Trace, path: Path) -> None:
    """Bar plot of the staleness pmf with the geometric law drawn over it (Agg, no pyplot)."""
    from matplotlib.figure import Figure

    g = trace.config.n_groups
    lags = max(PMF_LAGS, int(np.quantile(trace.staleness, 0.995)) + 1)
    fig = Figure(figsize=(6, 3.5), layout="constrained")
    ax = fig.subplots()
    ax.bar(np.arange(lags), trace.pmf(lags - 1), width=0.8, color="0.7", label="simulated")
    ax.plot(
        np.arange(lags), _geometric(g, lags), "o-", color="C3", ms=3, label=f"geometric, g = {g}"
    )
    ax.set(xlabel="staleness τ (updates)", ylabel="P(τ = l)", title=f"{len(trace)} updates")
    ax.legend()
    fig.savefig(path)


# --------------------------------------------------------------------------- figures
FIGURE_SCALES = ("quick", "full")
"""Scales of ``asyncsim figures`` and ``claims`` (:data:`asyncsim.experiments.SCALES`; the experiments
and figures are imported only when a command runs, since they bring matplotlib and theory)."""

FIGURE_FORMATS = ("png", "pdf", "svg")
"""Image formats of ``asyncsim figures`` (:data:`asyncsim.figures.FORMATS`)."""


def _add_figures(subparsers: argparse._SubParsersAction) -> None:
    sub = subparsers.add_parser(
        "figures",
        help="compute the teaching figures: PNG and CSV per figure",
        description=(
            "Compute the teaching figures (each claim measured in the simulator, the theory's "
            "prediction beside it) and write <name>.png and the data behind it, <name>.csv, per "
            "figure: staleness, momentum, penalty, robust_region, total_momentum, closed_loop, "
            "tuners, groups, real_asynchrony (the committed measurements of real lock-free SGD)."
        ),
    )
    sub.add_argument(
        "--only",
        action="append",
        default=None,
        metavar="NAME",
        help="make only this figure (repeatable; default: all)",
    )
    _add_run_options(sub, "figures", "about a minute")
    sub.add_argument(
        "--seed", type=_integer(0), default=0, help="root seed (default 0: the committed figures)"
    )
    sub.add_argument(
        "--format",
        choices=FIGURE_FORMATS,
        default="png",
        help="image format (default png)",
    )
    sub.add_argument(
        "--dpi",
        type=_real("a number in [50, 1200]", lambda x: 50 <= x <= 1200),
        default=None,
        help="resolution of a PNG in dots per inch (default: the style's 150)",
    )
    sub.set_defaults(handler=_figures, command_parser=sub)


def _add_run_options(sub: argparse.ArgumentParser, folder: str, quick_time: str) -> None:
    """``--scale``, ``--out`` (default ``folder/``) and ``--jobs`` of the commands that run experiments."""
    sub.add_argument(
        "--scale",
        choices=FIGURE_SCALES,
        default="quick",
        help=f"quick (default: {quick_time} on two cores) or full (the grids of theory/README.md §5)",
    )
    sub.add_argument(
        "--out",
        type=_output_folder,
        default=Path(folder),
        help=f"output folder, created if missing (default: {folder}/ in the current directory)",
    )
    sub.add_argument(
        "--jobs",
        type=_integer(1),
        default=_available_cpus(),
        help="worker processes (default: the CPUs available, here %(default)s)",
    )
    sub.add_argument(
        "--no-cache",
        dest="cache",
        action="store_false",
        help="compute everything anew (default: reuse the sweeps and experiment results kept in "
        "OUT/.cache by an earlier figures or claims run of the same code and seed)",
    )


def _available_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _figures(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from asyncsim.figures import FIGURES, make_figures

    names = args.only
    for name in names or ():
        if name not in FIGURES:
            parser.error(f"argument --only: must be one of {', '.join(FIGURES)}; got {name}")
    print(
        f"asyncsim figures: {', '.join(names) if names else 'all'} at scale {args.scale}, "
        f"seed {args.seed}, {args.jobs} job(s), into {args.out}/",
        flush=True,
    )
    elapsed = 0.0
    with _cache(args):
        for _name, result, elapsed in make_figures(
            names, scale=args.scale, rng=args.seed, jobs=args.jobs
        ):
            image, csv = result.save(args.out, format=args.format, dpi=args.dpi)
            print(f"  {elapsed:7.1f} s  {image}  {csv}", flush=True)
    print(f"done in {elapsed:.1f} s")
    return 0


def _cache(args: argparse.Namespace) -> contextlib.AbstractContextManager:
    """The experiments' cache in ``OUT/.cache`` (none with ``--no-cache``)."""
    from asyncsim.experiments import cache

    return cache(args.out / ".cache" if args.cache else None)


# --------------------------------------------------------------------------- claims
def _add_claims(subparsers: argparse._SubParsersAction) -> None:
    sub = subparsers.add_parser(
        "claims",
        help="measure every claim of the papers and give each its verdict",
        description=(
            "Measure each claim of the papers in the simulator and decide its verdict (reproduced, "
            "partly, refuted) by the rule written for it: a threshold on the measured effect and its "
            "95% bootstrap interval over seeds. Prints the table and writes claims.csv and "
            "claims.md into the output folder."
        ),
    )
    sub.add_argument(
        "--seeds",
        type=_integer(1),
        default=1,
        help="root seeds 0..N-1 (default 1); a claim whose verdict differs between them is 'partly'",
    )
    sub.add_argument(
        "--only",
        action="append",
        default=None,
        metavar="ID",
        help="check only this claim (repeatable)",
    )
    _add_run_options(sub, "claims", "a few minutes")
    sub.set_defaults(handler=_claims, command_parser=sub)


def _claims(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from asyncsim.experiments.claims import CLAIMS, check_claims, to_frame, to_markdown

    ids = [claim.id for claim in CLAIMS]
    for claim_id in args.only or ():
        if claim_id not in ids:
            parser.error(f"argument --only: must be one of {', '.join(ids)}; got {claim_id}")
    print(
        f"asyncsim claims: {len(args.only) if args.only else len(ids)} claim(s) at scale "
        f"{args.scale}, {args.seeds} root seed(s), {args.jobs} job(s), into {args.out}/",
        flush=True,
    )
    rows = []
    with _cache(args):
        for row in check_claims(scale=args.scale, roots=args.seeds, only=args.only, jobs=args.jobs):
            rows.append(row)
            print(
                f"  {row['verdict']:<10} {row['id']}: {row['measured']} {row['interval']}",
                flush=True,
            )
    args.out.mkdir(parents=True, exist_ok=True)
    to_frame(rows).to_csv(args.out / "claims.csv", index=False)
    (args.out / "claims.md").write_text(to_markdown(rows))
    print(f"wrote {args.out / 'claims.csv'} and {args.out / 'claims.md'}")
    return 0


# --------------------------------------------------------------------------- mitigations
def _add_mitigations(subparsers: argparse._SubParsersAction) -> None:
    sub = subparsers.add_parser(
        "mitigations",
        help="the staleness-mitigation bench: every method tuned, on the same traces",
        description=(
            "Run the staleness-mitigation bench (asyncsim.experiments.mitigations): asynchronous "
            "SGD, heavy ball, staleness-aware steps, DC-ASGD, Gap-Aware, delay-adaptive steps, "
            "Ringmaster, FedBuff, FedAsync, DANA, Adam and YellowFin (open and closed loop), each "
            "tuned, on common staleness traces and noise, under exponential and uniform [0.9, 1.1] "
            "compute. Writes mitigations.csv (the table), mitigations.md (the table, each cell's "
            "winner and where the ranking changes between the regimes) and mitigations.png."
        ),
    )
    sub.add_argument(
        "--method",
        action="append",
        default=None,
        metavar="NAME",
        help="bench only this method (repeatable; async SGD, the baseline, is always in)",
    )
    sub.add_argument(
        "--problem",
        action="append",
        default=None,
        metavar="NAME",
        help="only this problem: nq50, digits-mlp or least-squares (repeatable; default: the scale's)",
    )
    _add_run_options(sub, "mitigations", "under ten minutes")
    sub.add_argument(
        "--seed", type=_integer(0), default=0, help="root seed (default 0: the committed bench)"
    )
    sub.set_defaults(handler=_mitigations, command_parser=sub)


def _mitigations(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from asyncsim.experiments.mitigations import mitigations, summary_markdown
    from asyncsim.figures import FigureResult
    from asyncsim.figures.mitigations import make_mitigations
    from asyncsim.mitigations import METHODS

    for name in args.method or ():
        if name not in METHODS:
            parser.error(f"argument --method: must be one of {', '.join(METHODS)}; got {name}")
    for name in args.problem or ():
        if name not in MITIGATION_PROBLEMS:
            parser.error(
                f"argument --problem: must be one of {', '.join(MITIGATION_PROBLEMS)}; got {name}"
            )
    print(
        f"asyncsim mitigations: scale {args.scale}, seed {args.seed}, {args.jobs} job(s), into "
        f"{args.out}/",
        flush=True,
    )
    with _cache(args):
        result = mitigations(
            args.problem,
            methods=args.method,
            scale=args.scale,
            rng=args.seed,
            jobs=args.jobs,
            progress=False,  # thousands of one-step-size sweeps: no bar each
        )
    drawn = FigureResult(make_mitigations(result), result, "mitigations", args.scale)
    image, csv = drawn.save(args.out)
    summary = args.out / "mitigations.md"
    summary.write_text(summary_markdown(result))
    print(f"wrote {csv}, {summary} and {image}")
    return 0


MITIGATION_PROBLEMS = ("nq50", "digits-mlp", "least-squares")
"""Problems ``asyncsim mitigations --problem`` knows."""


# --------------------------------------------------------------------------- run
RUN_PROBLEMS = REFERENCE_PROBLEMS
"""Reference problems of ``asyncsim run``."""

RUN_OPTIMIZERS = tuple(OPTIMIZERS)
"""Optimizers of ``asyncsim run``."""


def _add_run(subparsers: argparse._SubParsersAction) -> None:
    sub = subparsers.add_parser(
        "run",
        help="run one configuration and measure it",
        description=(
            "Run one optimizer on a reference problem with M asynchronous workers (cluster event "
            "traces, exponential compute times) and print the updates to the problem's loss "
            "target, the final loss and the measured total momentum (the worker-local estimate, "
            "median over the last two thirds of the run) beside 1 - (1 - μ)/M."
        ),
    )
    sub.add_argument("--problem", choices=RUN_PROBLEMS, default="nq50", help="default nq50")
    sub.add_argument(
        "--optimizer", choices=RUN_OPTIMIZERS, default="heavy_ball", help="default heavy_ball"
    )
    sub.add_argument("--workers", type=_integer(1), default=8, help="workers M (default 8)")
    sub.add_argument(
        "--mode", choices=("async", "sync"), default="async", help="execution mode (default async)"
    )
    sub.add_argument("--lr", type=_positive, default=0.05, help="step size α > 0 (default 0.05)")
    sub.add_argument(
        "--momentum",
        type=_real("a number in (-1, 1)", lambda x: -1 < x < 1),
        default=0.0,
        help="explicit momentum μ in (-1, 1) (default 0; YellowFin: its starting μ)",
    )
    sub.add_argument("--steps", type=_integer(1), default=3000, help="updates (default 3000)")
    sub.add_argument("--seed", type=_integer(0), default=0, help="root seed (default 0)")
    sub.add_argument(
        "--target",
        type=_positive,
        default=None,
        help="loss target (default: the problem's, 1e-3 of the initial loss for nq50)",
    )
    sub.set_defaults(handler=_run, command_parser=sub)


def _run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    import theory
    from asyncsim._rng import stream
    from asyncsim.engine import run
    from asyncsim.measure import iterations_to_target
    from asyncsim.problems import make_problem
    from asyncsim.sweep import OPTIMIZERS

    problem = make_problem(args.problem)
    target = problem.target if args.target is None else args.target
    config = ClusterConfig(args.workers, mode=args.mode)
    trace = simulate(config, args.steps, rng=stream(args.seed, "trace"))
    transform = OPTIMIZERS[args.optimizer](args.lr, args.momentum)
    every = max(1, args.steps // 500)
    history = run(
        problem, transform, trace, args.steps, rng=stream(args.seed, "noise"), record_every=every
    )
    iterations = float(iterations_to_target(history, target)[0])
    measured = _late_median(history.values.get("total_momentum"))
    writers = 1 if args.mode == "sync" else args.workers
    print(
        f"asyncsim run: {args.problem}, {args.optimizer} (α = {args.lr:g}, μ = {args.momentum:g}), "
        f"{args.workers} worker(s) {args.mode}, {args.steps} updates, seed {args.seed}"
    )
    reached = f"{iterations:.0f}" if np.isfinite(iterations) else "not reached"
    print(f"iterations to target   {reached:>12}   (target loss {target:.4g})")
    print(f"final loss             {float(history.loss[-1, 0]):12.4g}")
    if history.diverged[0]:
        print(f"diverged               at update {int(history.diverged_at[0])}")
    applied = _late_median(history.values.get("momentum"))
    note = "measured"
    if np.isfinite(applied):
        predicted = float(theory.total_momentum(applied, writers))
        note += f"; 1 - (1 - μ)/M with μ = {applied:.4g} applied, M = {writers}: {predicted:.4f}"
    print(f"total momentum         {measured:12.4f}   ({note})")
    return 0


def _late_median(values: np.ndarray | None) -> float:
    """Median of a recorded column (R, 1) over its last two thirds, NaN ignored (NaN if none)."""
    if values is None:
        return float("nan")
    late = values[len(values) // 3 :, 0]
    late = late[np.isfinite(late)]
    return float(np.median(late)) if late.size else float("nan")


# --------------------------------------------------------------------------- sweep
def _add_sweep(subparsers: argparse._SubParsersAction) -> None:
    sub = subparsers.add_parser(
        "sweep",
        help="run a grid described in a TOML file; resumable",
        description=(
            "Run the grid a TOML file describes (problem, optimizer, workers, step sizes, momenta, "
            "seeds; see examples/sweep.toml) and write the tidy table, one row per configuration "
            "and seed, to OUT/results.csv. Each finished chunk is saved in OUT at once: run the "
            "same command again after an interruption and it resumes where it stopped."
        ),
    )
    sub.add_argument("config", type=Path, metavar="CONFIG.toml", help="the grid, in TOML")
    sub.add_argument(
        "--out", type=_output_folder, required=True, help="folder of the chunks and results.csv"
    )
    sub.add_argument(
        "--jobs",
        type=_integer(1),
        default=_available_cpus(),
        help="worker processes (default: the CPUs available, here %(default)s)",
    )
    sub.set_defaults(handler=_sweep, command_parser=sub)


def _sweep(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from asyncsim.sweep import run_sweep
    from asyncsim.sweep_config import ConfigError, read_sweep_config

    try:
        sweep = read_sweep_config(args.config)
    except ConfigError as err:
        parser.error(f"argument CONFIG.toml: {err}")
    spec = args.out / "sweep.json"
    if spec.exists() and spec.read_text() != sweep.to_json():
        parser.error(f"argument --out: {args.out} holds another sweep's chunks; use another folder")
    chunks = len(sweep.chunks())
    print(f"asyncsim sweep: {args.config}: {chunks} chunk(s), {args.jobs} job(s), into {args.out}/")
    try:
        result = run_sweep(sweep, args.out, jobs=args.jobs)
    except KeyboardInterrupt:
        saved = len(list(args.out.glob("chunk-*.npz")))
        print(f"interrupted: {saved} of {chunks} chunks saved; run the same command to resume")
        return 130
    table = result.to_frame()
    table.insert(0, "optimizer", sweep.optimizer_name)
    table.insert(0, "problem", sweep.problem_name)
    path = args.out / "results.csv"
    table.to_csv(path, index=False, float_format="%.10g")
    best = result.best()
    for p, (m, g) in enumerate(sweep.points()):
        print(
            f"  M = {m:3d}, g = {g:3d}: best α = {best['lr'][p]:g}, μ = {best['momentum'][p]:g}, "
            f"median updates to target {best['iterations'][p]:g}"
        )
    print(f"wrote {path} ({len(table)} rows)")
    return 0


# --------------------------------------------------------------------------- hogwild
def _add_hogwild(subparsers: argparse._SubParsersAction) -> None:
    sub = subparsers.add_parser(
        "hogwild",
        help="run real lock-free SGD on this machine and hold the queueing model against it",
        description=(
            "Run lock-free asynchronous SGD (Hogwild!) with M worker processes over shared memory "
            "on a reference problem (heavy ball), and print the measured staleness beside the "
            "cluster model fitted to the measured times and the geometric law (1/M)(1 - 1/M)^l: "
            "mean, variance, P(τ = 0), total-variation distance. Says how many cores the run had; "
            "with more workers than cores the scheduler shapes the staleness. Not reproducible: "
            "--seed fixes the gradient noise, not the interleaving."
        ),
    )
    sub.add_argument(
        "--workers", type=_integer(1), default=4, help="worker processes M (default 4)"
    )
    sub.add_argument("--updates", type=_integer(1), default=5000, help="writes (default 5000)")
    sub.add_argument("--problem", choices=RUN_PROBLEMS, default="nq50", help="default nq50")
    sub.add_argument("--lr", type=_positive, default=0.1, help="step size α > 0 (default 0.1)")
    sub.add_argument(
        "--momentum",
        type=_real("a number in (-1, 1)", lambda x: -1 < x < 1),
        default=0.0,
        help="explicit momentum μ in (-1, 1) (default 0)",
    )
    sub.add_argument(
        "--seed", type=_integer(0), default=None, help="gradient noise (default: fresh)"
    )
    sub.add_argument(
        "--timeout", type=_positive, default=120.0, help="seconds the run may take (default 120)"
    )
    sub.add_argument("--out", type=_output_file(".csv"), default=None, help="save the trace (.csv)")
    sub.add_argument(
        "--plot",
        type=_output_file(".png", ".pdf", ".svg"),
        default=None,
        help="save the measured pmf beside the fitted model's and the geometric law",
    )
    sub.set_defaults(handler=_hogwild, command_parser=sub)


def _hogwild(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from asyncsim.experiments.real_asynchrony import NOT_REPRODUCIBLE, measured_staleness
    from asyncsim.hogwild import HogwildError, SharedHeavyBall, available_cores, hogwild
    from asyncsim.problems import make_problem

    cores = available_cores()
    shared = (
        "oversubscribed: the scheduler time-slices them" if args.workers > cores else "one each"
    )
    print(
        f"asyncsim hogwild: {args.workers} worker process(es) on {cores} core(s) ({shared}); "
        f"{args.problem}, heavy ball α = {args.lr:g}, μ = {args.momentum:g}, {args.updates} updates",
        flush=True,
    )
    try:
        result = hogwild(
            make_problem(args.problem),
            SharedHeavyBall(args.lr, args.momentum),
            args.workers,
            args.updates,
            rng=args.seed,
            timeout=args.timeout,
        )
    except KeyboardInterrupt:
        print("interrupted: the workers are stopped and the shared memory released")
        return 130
    except HogwildError as err:
        print(f"asyncsim hogwild: {err}", file=sys.stderr)
        return 1
    trace = result.trace
    print(
        f"{len(trace)} updates in {result.elapsed:.3f} s ({len(trace) / result.elapsed:.0f} per s)"
        f"{', stopped at the timeout' if result.timed_out else ''}"
        f"{', diverged' if result.diverged else ''}; loss {result.loss[0]:.4g} -> "
        f"{result.loss[-1]:.4g}; seed {trace.seed}"
    )
    print(f"note: {NOT_REPRODUCIBLE.split(';')[0]}")
    if args.out is not None:
        print(f"trace saved to {result.save(args.out)}")
    try:
        laws = measured_staleness(trace, cores=cores, rng=args.seed)
    except ValueError as err:  # a worker that never wrote: no model to fit
        print(f"no fitted model: {err}")
        return 0
    print("\n  law          mean    variance   P(τ = 0)   TV distance to measured / geometric")
    for row in laws.data[laws.data["part"] == "staleness"].itertuples():
        print(
            f"  {row.source:<9} {row.mean:7.3f} {row.variance:11.3f} {row.p_zero:10.4f}"
            f"   {row.tv_measured:.4f} / {row.tv_geometric:.4f}"
        )
    if args.plot is not None:
        from asyncsim.figures.real_asynchrony import make_measured_staleness

        make_measured_staleness(laws).savefig(args.plot)
        print(f"pmf plot saved to {args.plot}")
    return 0


_COMMANDS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (
    _add_staleness,
    _add_run,
    _add_sweep,
    _add_figures,
    _add_claims,
    _add_mitigations,
    _add_hogwild,
)
"""Subcommand registrars, in the order of ``asyncsim --help``."""


if __name__ == "__main__":
    sys.exit(main())
