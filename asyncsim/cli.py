"""The ``asyncsim`` command.

Each subcommand is registered by one ``_add_<name>(subparsers)`` function listed in
:data:`_COMMANDS`; it builds its parser and sets ``handler``, a function ``(args, parser) -> int``.
To add ``run``, ``sweep`` or ``figures``, write such a pair and list it. Range checks live in
argparse ``type=`` functions, so a malformed argument is a usage error (exit code 2) naming the
argument, the value and the allowed range. The library never prints; this module does.
"""

from __future__ import annotations

import argparse
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
"""Scales of ``asyncsim figures`` (:data:`asyncsim.figures.SCALES`; that module is imported only when
the command runs, since it brings matplotlib and theory)."""


def _add_figures(subparsers: argparse._SubParsersAction) -> None:
    sub = subparsers.add_parser(
        "figures",
        help="compute the teaching figures: PNG and CSV per figure",
        description=(
            "Compute the teaching figures (each claim measured in the simulator, the theory's "
            "prediction beside it) and write <name>.png and the data behind it, <name>.csv, per "
            "figure: staleness, momentum, penalty, robust_region, total_momentum, closed_loop, "
            "tuners, groups."
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
    for name, result, elapsed in make_figures(
        names, scale=args.scale, rng=args.seed, jobs=args.jobs
    ):
        png, csv = result.save(args.out, name)
        print(f"  {elapsed:7.1f} s  {png}  {csv}", flush=True)
    print(f"done in {elapsed:.1f} s")
    return 0


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
    for row in check_claims(scale=args.scale, roots=args.seeds, only=args.only, jobs=args.jobs):
        rows.append(row)
        print(
            f"  {row['verdict']:<10} {row['id']}: {row['measured']} {row['interval']}", flush=True
        )
    args.out.mkdir(parents=True, exist_ok=True)
    to_frame(rows).to_csv(args.out / "claims.csv", index=False)
    (args.out / "claims.md").write_text(to_markdown(rows))
    print(f"wrote {args.out / 'claims.csv'} and {args.out / 'claims.md'}")
    return 0


_COMMANDS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (
    _add_staleness,
    _add_figures,
    _add_claims,
)
"""Subcommand registrars, in the order of ``asyncsim --help``."""


if __name__ == "__main__":
    sys.exit(main())
