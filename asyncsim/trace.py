"""Every representation of staleness: the realized :class:`Trace` (what a cluster run produced, update by
update, as columns of NumPy arrays) and the :class:`StalenessLaw` the expected-dynamics mode averages over."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from asyncsim._rng import RngLike, SeedRecord, record, root
from asyncsim._validate import check_int, check_real, read_npz

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["ORIGINS", "StalenessLaw", "Trace"]

ORIGINS = ("simulated", "iid", "measured", "replayed")
"""The values of :attr:`Trace.origin` (besides None, unknown)."""


@dataclass(frozen=True, eq=False)
class Trace:
    """Per-update record of a parameter-server run, shape ``(n,)`` for every column.

    Update ``t`` (0-based) is the ``t``-th apply at the server; it produces parameter version ``t + 1``.
    Construction checks the columns: integer columns hold integral values, ``apply_time`` is finite or
    NaN, and ``read_version[t] == max(t - staleness[t], 0)`` for every update.

    Attributes
    ----------
    staleness : int64 array
        Writes by others between this update's read and its write; ``t - read_version[t]`` for cluster
        traces.
    writer : int64 array
        Worker id (asynchronous mode) or group id (synchronous and group modes); -1 where unknown
        (traces built from a bare staleness sequence).
    read_version : int64 array
        Number of applies completed when the server served the pull this update's gradient was computed
        at. Traces from a bare sequence store ``max(t - staleness, 0)``: reads before the start see w_0.
    apply_time : float64 array
        Simulated time at which the apply completed (NaN where unknown).
    n_aggregated : int64 array
        Gradients aggregated in this update (1 asynchronous, M synchronous, M/g in group mode).
    config : object or None
        The :class:`~asyncsim.cluster.ClusterConfig` that made the trace, if any.
    seed : SeedRecord or None
        The root seed sequence the trace's random streams derive from (``seed.sequence()`` makes it
        again), if known; see :mod:`asyncsim._rng`.
    origin : str or None
        Where the staleness came from, one of :data:`ORIGINS`: ``"simulated"`` (the cluster model),
        ``"iid"`` (:meth:`geometric`), ``"measured"`` (a run on real hardware), ``"replayed"`` (a
        logged delay sequence, :meth:`from_delays`); None when not known.
    """

    staleness: np.ndarray
    writer: np.ndarray
    read_version: np.ndarray
    apply_time: np.ndarray
    n_aggregated: np.ndarray
    config: Any = None
    seed: SeedRecord | None = None
    origin: str | None = None

    def __post_init__(self) -> None:
        if self.origin is not None and self.origin not in ORIGINS:
            raise ValueError(
                f"Trace.origin must be None or one of {', '.join(map(repr, ORIGINS))}; "
                f"got {self.origin!r}"
            )
        if self.seed is not None and not isinstance(self.seed, SeedRecord):
            raise TypeError(
                f"Trace.seed must be a SeedRecord (asyncsim._rng.record of the root) or None, got "
                f"{self.seed!r} ({type(self.seed).__name__})"
            )
        n = np.shape(self.staleness)[0] if np.ndim(self.staleness) == 1 else -1
        for name, dtype in _COLUMNS.items():
            arr = _column(name, getattr(self, name), dtype)
            if arr.ndim != 1 or arr.shape[0] != n:
                raise ValueError(
                    f"Trace.{name} must be 1-D with the length of staleness ({n}), got shape {arr.shape}"
                )
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)
        if n < 1:
            raise ValueError(f"Trace.staleness must be a non-empty 1-D array, got length {n}")
        if (self.staleness < 0).any():
            raise ValueError(f"Trace.staleness must be >= 0, got min {self.staleness.min()}")
        if (self.n_aggregated < 1).any():
            raise ValueError(f"Trace.n_aggregated must be >= 1, got min {self.n_aggregated.min()}")
        if (self.read_version < 0).any() or (self.read_version > np.arange(n)).any():
            raise ValueError("Trace.read_version must lie in [0, t] for update t")
        implied = np.maximum(np.arange(n) - self.staleness, 0)
        wrong = np.flatnonzero(self.read_version != implied)
        if wrong.size:
            t = int(wrong[0])
            raise ValueError(
                f"Trace.staleness and Trace.read_version disagree at {wrong.size} update(s), first at "
                f"update {t}: read_version[t] must equal max(t - staleness[t], 0) = {implied[t]} "
                f"(staleness {self.staleness[t]}), got read_version {self.read_version[t]}"
            )
        if np.isinf(self.apply_time).any():
            t = int(np.flatnonzero(np.isinf(self.apply_time))[0])
            raise ValueError(
                f"Trace.apply_time must be finite (or NaN where unknown), got {self.apply_time[t]} "
                f"at update {t}"
            )

    # ---------------------------------------------------------------- constructors
    @classmethod
    def from_staleness(cls, staleness: Any, *, n_aggregated: int = 1) -> Trace:
        """Build a trace from a bare staleness sequence (writer unknown, no clock).

        >>> Trace.from_staleness([0, 1, 3, 0]).read_version
        array([0, 0, 0, 3])
        """
        tau = np.asarray(staleness)
        if tau.ndim != 1 or not np.issubdtype(tau.dtype, np.integer):
            raise ValueError(
                f"staleness must be a 1-D integer sequence, got dtype {tau.dtype} shape {tau.shape}"
            )
        n = tau.shape[0]
        check_int("n_aggregated", n_aggregated, low=1)
        return cls(
            staleness=tau,
            writer=np.full(n, -1),
            read_version=np.maximum(np.arange(n) - tau, 0),
            apply_time=np.full(n, np.nan),
            n_aggregated=np.full(n, n_aggregated),
        )

    @classmethod
    def geometric(cls, n_workers: int, n_updates: int, *, rng: RngLike = None) -> Trace:
        """I.i.d. staleness with the law of the exponential queueing model, ``P(τ = l) = (1/M)(1-1/M)^l``.

        No warm-up and no correlation between updates: exactly the law of theory/README.md §1. The
        draws come from the root seed sequence of ``rng`` (:func:`asyncsim._rng.root`), which the
        trace records as ``seed``.

        >>> trace = Trace.geometric(4, 5, rng=3)
        >>> str(trace.seed), trace.seed.sequence().entropy
        ('3', 3)
        """
        m = check_int("n_workers", n_workers, low=1)
        n = check_int("n_updates", n_updates, low=1)
        seq = root(rng)
        tau = np.random.default_rng(seq).geometric(1.0 / m, size=n) - 1
        trace = cls.from_staleness(tau)
        object.__setattr__(trace, "seed", record(seq))
        object.__setattr__(trace, "origin", "iid")
        return trace

    @classmethod
    def from_delays(cls, source: Any, *, workers: Any = None) -> Trace:
        """Replay a measured delay sequence: update t's staleness is delay t (``origin`` "replayed").

        Parameters
        ----------
        source : 1-D sequence of ints, or str or Path
            The delays (integers ``>= 0``), or the path of a text file holding them, one per line
            (a CSV file, one row per update): in order, the delay, then optionally the worker id and
            the time of the update. A header line is optional; when there is one, it names the columns
            (any order; case does not matter): ``delay`` (or ``staleness``, ``tau``), ``worker`` (or
            ``writer``, ``worker_id``), ``time`` (or ``apply_time``, ``timestamp``); other columns
            are ignored. Blank lines and lines starting with ``#`` are skipped. A delay larger than
            its update's index reads the starting point (``read_version = max(t - τ, 0)``).
        workers : 1-D sequence of ints, optional
            The worker id (``>= 0``) of each update, where the source gives none.

        Returns
        -------
        Trace
            ``writer`` from the worker ids (-1 without them), ``apply_time`` from the times (NaN
            without them; they must not decrease), ``n_aggregated`` 1, ``origin`` "replayed".

        Raises
        ------
        ValueError
            For a bad delay, worker id or time, naming its position (for a file: the file, the line
            and the value), a ragged row, a header without a delay column, an empty file, or worker ids
            given twice. FileNotFoundError for a missing file.

        Examples
        --------
        >>> trace = Trace.from_delays([0, 1, 1, 2], workers=[0, 1, 0, 1])
        >>> trace.read_version, trace.origin
        (array([0, 0, 1, 1]), 'replayed')
        """
        if isinstance(source, str | Path):
            path = Path(source)
            delays, ids, times = _read_delays(path)
            if ids is not None and workers is not None:
                raise ValueError(
                    f"worker ids given twice: {path} has a worker column and workers= was given"
                )
        else:
            delays, ids, times = _integers("delays", source), None, None
        if workers is not None:
            ids = _integers("workers", workers)
            if ids.shape != delays.shape:
                raise ValueError(
                    f"workers must hold one id per delay ({delays.size}), got {ids.size}"
                )
        n = delays.size
        return cls(
            staleness=delays,
            writer=np.full(n, -1) if ids is None else ids,
            read_version=np.maximum(np.arange(n) - delays, 0),
            apply_time=np.full(n, np.nan) if times is None else times,
            n_aggregated=np.ones(n, dtype=np.int64),
            origin="replayed",
        )

    # ---------------------------------------------------------------- summaries
    def __len__(self) -> int:
        return int(self.staleness.shape[0])

    @property
    def mean(self) -> float:
        """Mean staleness (updates)."""
        return float(self.staleness.mean())

    @property
    def variance(self) -> float:
        """Variance of the staleness (updates²)."""
        return float(self.staleness.var())

    def pmf(self, max_lag: int | None = None, *, skip: int = 0) -> np.ndarray:
        """Empirical probability of each staleness value 0..max_lag, shape ``(max_lag + 1,)``.

        ``skip`` drops the first updates (warm-up). Mass above ``max_lag`` is not folded in.
        """
        tau = self.staleness[check_int("skip", skip, low=0, high=len(self) - 1) :]
        top = int(tau.max()) if max_lag is None else check_int("max_lag", max_lag, low=0)
        return np.bincount(tau[tau <= top], minlength=top + 1) / tau.size

    @property
    def throughput(self) -> float:
        """Updates per unit time over the whole run (NaN without a clock)."""
        return float(len(self) / self.apply_time[-1])

    @property
    def time_per_update(self) -> float:
        """Mean time between applies (time units per update; NaN without a clock)."""
        return 1.0 / self.throughput

    @property
    def previous_read(self) -> np.ndarray:
        """Read version of the same writer's previous update, -1 for its first (or an unknown writer)."""
        prev = np.full(len(self), -1, dtype=np.int64)
        known = np.flatnonzero(self.writer >= 0)
        order = known[np.argsort(self.writer[known], kind="stable")]
        same = self.writer[order[1:]] == self.writer[order[:-1]]
        prev[order[1:][same]] = self.read_version[order[:-1][same]]
        return prev

    def autocorrelation(self, lag: int = 1, *, skip: int = 0) -> float:
        """Sample autocorrelation of the staleness sequence at ``lag`` updates (NaN if constant).

        ``skip`` drops the first updates (warm-up). In the event-driven model consecutive values are
        slightly anti-correlated, about -1/(2M) at lag 1 with M exponential workers.

        >>> round(Trace.from_staleness([0, 2, 0, 2, 0, 2]).autocorrelation(), 3)
        -0.833
        """
        tau = self.staleness[check_int("skip", skip, low=0, high=len(self) - 1) :]
        tau = tau.astype(np.float64)
        lag = check_int("lag", lag, low=1, high=tau.size - 1)
        centred = tau - tau.mean()
        denominator = float(centred @ centred)
        if denominator == 0.0:
            return float("nan")
        return float(centred[lag:] @ centred[:-lag]) / denominator

    def to_frame(self) -> pd.DataFrame:
        """The columns as a pandas DataFrame indexed by update."""
        import pandas as pd  # imported here: it costs half a second that most runs don't need

        frame = pd.DataFrame({name: getattr(self, name) for name in _COLUMNS})
        frame.index.name = "update"
        return frame

    # ---------------------------------------------------------------- files
    def save(self, path: str | Path) -> Path:
        """Write the columns to ``path``, format by suffix; return the path.

        ``.csv``: a header line and one row per update (``update`` then the five columns; times with
        17 significant digits, so they read back exactly); it holds no seed. ``.npz``: the five arrays,
        the seed record as text (``str(seed)``, empty when unknown) and the origin (empty when
        unknown). Neither holds the config.
        """
        path = Path(path)
        suffix = _check_suffix(path)
        if suffix == ".npz":
            seed = "" if self.seed is None else str(self.seed)
            origin = np.array(self.origin or "")
            columns = {name: getattr(self, name) for name in _COLUMNS}
            np.savez(path, seed=np.array(seed), origin=origin, **columns)
        else:
            table = np.column_stack([np.arange(len(self)), *(getattr(self, c) for c in _COLUMNS)])
            formats = ["%d", *("%.17g" if dt is np.float64 else "%d" for dt in _COLUMNS.values())]
            header = ",".join(["update", *_COLUMNS])
            np.savetxt(path, table, fmt=formats, delimiter=",", header=header, comments="")
        return path

    @classmethod
    def load(cls, path: str | Path) -> Trace:
        """Read a trace written by :meth:`save` (``.csv`` or ``.npz``); ``config`` is None, and so are
        ``seed`` and ``origin`` for a CSV (an npz file gives back the recorded
        :class:`~asyncsim._rng.SeedRecord` and origin). A logged delay sequence is read by
        :meth:`from_delays` instead.

        Raises FileNotFoundError for a missing file, and ValueError naming the path and the fault for
        a file that is not a trace: not an npz archive or not a comma-separated table, no rows, a
        missing column, or columns that break the trace's rules (see :class:`Trace`).

        >>> import tempfile, pathlib
        >>> trace = Trace.from_staleness([0, 1, 3, 0])
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     again = Trace.load(trace.save(pathlib.Path(tmp) / "trace.csv"))
        >>> again.read_version
        array([0, 0, 0, 3])
        """
        path = Path(path)
        origin = None
        if _check_suffix(path) == ".npz":
            columns, seed, origin = _read_npz(path)
        else:
            columns, seed = _read_csv(path), None
        missing = [name for name in _COLUMNS if name not in columns]
        if missing:
            raise ValueError(f"{path} lacks the trace column(s) {', '.join(missing)}")
        try:
            return cls(**columns, seed=seed, origin=origin)
        except ValueError as err:
            raise ValueError(f"{path} is not a valid trace: {err}") from None


@dataclass(frozen=True)
class StalenessLaw:
    """A staleness law ``q_l = P(τ = l)``, l = 0..L-1, for the engine's expected-dynamics mode.

    >>> StalenessLaw.geometric(4).pmf[:3].round(6).tolist()
    [0.25, 0.1875, 0.140625]
    """

    pmf: np.ndarray

    def __post_init__(self) -> None:
        q = np.asarray(self.pmf, dtype=np.float64)
        if q.ndim != 1 or q.size == 0 or (q < 0).any() or not np.isfinite(q).all():
            raise ValueError(f"pmf must be a non-empty 1-D array of probabilities, got {q!r}")
        if abs(q.sum() - 1.0) > 1e-9:
            raise ValueError(f"pmf must sum to 1 (within 1e-9), got sum {q.sum()}")
        object.__setattr__(self, "pmf", q)

    @classmethod
    def geometric(cls, n_workers: float, *, tail: float = 1e-12) -> StalenessLaw:
        """The queueing model's law ``q_l = (1/M)(1 - 1/M)^l``, truncated where ``P(τ ≥ L) < tail``
        and renormalized. ``n_workers`` may be any real M ≥ 1 (μ_S = 1 - 1/M)."""
        m = check_real("n_workers", n_workers, low=1.0)
        check_real("tail", tail, low=0.0, high=1.0, low_open=True, high_open=True)
        mu_s = 1.0 - 1.0 / m
        length = 1 if mu_s == 0.0 else int(np.ceil(np.log(tail) / np.log(mu_s)))
        q = (1.0 - mu_s) * mu_s ** np.arange(max(length, 1))
        return cls(q / q.sum())

    @property
    def mean(self) -> float:
        """Mean staleness ``Σ l q_l`` (updates).

        >>> round(StalenessLaw.geometric(4).mean, 9)
        3.0
        """
        return float(self.pmf @ np.arange(self.pmf.size))


def _read_npz(path: Path) -> tuple[dict[str, np.ndarray], SeedRecord | None, str | None]:
    """The trace columns found in an ``.npz`` file, its seed record and its origin (None when not
    recorded)."""
    arrays = read_npz(path, "Trace.save")
    columns = {name: arrays[name] for name in _COLUMNS if name in arrays}
    origin = str(arrays["origin"]) if "origin" in arrays else ""
    seed = str(arrays["seed"]) if "seed" in arrays else ""
    if not seed:
        return columns, None, origin or None
    try:
        return columns, SeedRecord.parse(seed), origin or None
    except ValueError as err:
        raise ValueError(f"{path} records a seed that is not a seed record: {err}") from None


def _read_csv(path: Path) -> dict[str, np.ndarray]:
    """The trace columns found in a ``.csv`` file written by :meth:`Trace.save`."""
    try:
        with path.open() as handle:
            header = handle.readline().strip().split(",")
            rows = handle.read()
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} is not a text CSV: {err}") from None
    if header == [""]:
        raise ValueError(f"{path} is empty; a trace CSV has a header line and one row per update")
    if not rows.strip():
        raise ValueError(
            f"{path} has no rows (a header line only); a trace needs at least one update"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a ragged or empty table is an error, not a warning
            table = np.loadtxt(io.StringIO(rows), delimiter=",", ndmin=2, dtype=np.float64)
    except (ValueError, UserWarning) as err:
        raise ValueError(f"{path} is not a comma-separated table of numbers: {err}") from None
    if table.shape[1] != len(header):
        raise ValueError(
            f"{path} is not a trace CSV: the header names {len(header)} columns, "
            f"the rows hold {table.shape[1]}"
        )
    return {name: table[:, header.index(name)] for name in _COLUMNS if name in header}


_DELAY_NAMES = {
    "delay": ("delay", "staleness", "tau"),
    "worker": ("worker", "writer", "worker_id"),
    "time": ("time", "apply_time", "timestamp"),
}
"""Header names of the columns :meth:`Trace.from_delays` reads (lower case)."""


def _read_delays(path: Path) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Delays, worker ids (or None) and times (or None) of a delay file; errors name the file, the
    line and the value."""
    try:
        with path.open(encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} is not a text file of delays: {err}") from None
    rows = [
        (number, [field.strip() for field in line.split(",")])
        for number, line in enumerate(lines, start=1)
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if not rows:
        raise ValueError(f"{path} holds no delays (it is empty); give one delay per line")
    first_line, first = rows[0]
    number = first_line
    if all(_is_number(field) for field in first):
        if len(first) > len(_DELAY_NAMES):
            raise ValueError(
                f"{path}, line {number}: a file without a header holds 1 to 3 columns (delay, "
                f"worker, time), got {len(first)}: {lines[number - 1]!r}"
            )
        where = {name: i for i, name in enumerate(list(_DELAY_NAMES)[: len(first)])}
    else:
        where = _header(path, number, first)
        rows = rows[1:]
        if not rows:
            raise ValueError(f"{path} has a header line and no delays; give one delay per line")
    width = len(first)
    columns: dict[str, list[Any]] = {name: [] for name in where}
    for number, fields in rows:
        if len(fields) != width:
            raise ValueError(
                f"{path}, line {number}: expected {width} comma-separated values (as on line "
                f"{first_line}), got {len(fields)}: {lines[number - 1]!r}"
            )
        for name, i in where.items():
            columns[name].append(_field(path, number, name, fields[i]))
    times = None
    if "time" in columns:
        times = np.array(columns["time"], dtype=np.float64)
        back = np.flatnonzero(np.diff(times) < 0)
        if back.size:
            (_, before), (number, after) = rows[int(back[0])], rows[int(back[0]) + 1]
            at = where["time"]
            raise ValueError(
                f"{path}, line {number}: times must not decrease, got {after[at]!r} after "
                f"{before[at]!r}"
            )
    ids = np.array(columns["worker"], dtype=np.int64) if "worker" in columns else None
    return np.array(columns["delay"], dtype=np.int64), ids, times


def _header(path: Path, number: int, names: list[str]) -> dict[str, int]:
    """Where each known column stands in a header line; the delay column is required."""
    where: dict[str, int] = {}
    for i, name in enumerate(names):
        for column, aliases in _DELAY_NAMES.items():
            if name.lower() in aliases:
                if column in where:
                    raise ValueError(
                        f"{path}, line {number}: the header names the {column} column twice "
                        f"({names[where[column]]!r} and {name!r})"
                    )
                where[column] = i
    if "delay" not in where:
        raise ValueError(
            f"{path}, line {number}: the header {','.join(names)!r} names no delay column (one of "
            f"{', '.join(_DELAY_NAMES['delay'])}); a file without a header starts with a number"
        )
    return where


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _field(path: Path, number: int, column: str, text: str) -> float | int:
    """One value of a delay file: an integer >= 0 for a delay or a worker id, a finite number for
    a time."""
    try:
        value = float(text)
    except ValueError:
        value = None
    if column == "time":
        if value is None or not np.isfinite(value):
            raise ValueError(f"{path}, line {number}: time must be a finite number, got {text!r}")
        return value
    if value is None or not np.isfinite(value) or value != int(value) or value < 0:
        name = "delay" if column == "delay" else "worker id"
        raise ValueError(f"{path}, line {number}: {name} must be an integer >= 0, got {text!r}")
    return int(value)


def _integers(name: str, values: Any) -> np.ndarray:
    """``values`` as a 1-D non-empty int64 array of integers >= 0, else a ValueError naming the
    first bad position."""
    arr = np.asarray(values)
    if arr.ndim != 1 or arr.size == 0 or arr.dtype.kind not in "iuf":
        raise ValueError(
            f"{name} must be a non-empty 1-D sequence of integers >= 0, got dtype {arr.dtype} "
            f"shape {arr.shape}"
        )
    with np.errstate(invalid="ignore"):
        bad = (
            ~np.isfinite(arr) | (arr < 0) | (arr != np.round(arr))
            if arr.dtype.kind == "f"
            else arr < 0
        )
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name}[{i}] must be an integer >= 0, got {arr[i]}")
    return arr.astype(np.int64)


def _column(name: str, value: Any, dtype: type) -> np.ndarray:
    """``value`` as a column of ``dtype``; integer columns must hold integral values."""
    if dtype is not np.int64:
        return np.asarray(value, dtype=dtype)
    arr = np.asarray(value)
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64, copy=False)
    if arr.dtype.kind not in "fb" and arr.size:
        raise ValueError(f"Trace.{name} must hold integers, got dtype {arr.dtype}")
    with np.errstate(invalid="ignore"):
        cast = arr.astype(np.int64)
    bad = np.flatnonzero(cast != arr)
    if bad.size:
        raise ValueError(
            f"Trace.{name} must hold integers (within int64), got {arr.reshape(-1)[bad[0]]} at "
            f"{bad.size} position(s), first at index {bad[0]}"
        )
    return cast


def _check_suffix(path: Path) -> str:
    if path.suffix not in _FORMATS:
        raise ValueError(
            f"path must end in {' or '.join(_FORMATS)} (the format), got {str(path)!r}"
        )
    return path.suffix


_FORMATS = (".csv", ".npz")

_COLUMNS = {
    "staleness": np.int64,
    "writer": np.int64,
    "read_version": np.int64,
    "apply_time": np.float64,
    "n_aggregated": np.int64,
}
