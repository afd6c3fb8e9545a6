"""The one rule for randomness: ``rng`` in, streams keyed by value from labels, one seed record out.

Every stochastic function of asyncsim takes ``rng`` and turns it into a root
:class:`numpy.random.SeedSequence` with :func:`root`:

- ``None``: fresh entropy from the operating system (recorded, so the run can be made again);
- an ``int >= 0``: ``SeedSequence(rng)``;
- a ``SeedSequence``: itself (its ``spawn_key`` included);
- a ``Generator``: a source of roots: each call draws a new 128-bit entropy from it, so two calls with
  one generator differ, and each records the root it drew.

Independent streams come from :func:`stream`, keyed **by value** from labels, never by position in a
grid or in a dict: ``stream(root, "worker", 3)`` is worker 3's stream whatever else the run holds, so
adding a grid point, a worker or a figure changes no other result. A label is an int in ``[0, 2**31)``
(a worker id, a worker count, a seed index) or a string (a name), and labels extend the root's
``spawn_key``: ``SeedSequence(entropy, spawn_key=key + labels)``. Integer labels enter as they are,
so ``stream(root, b)`` is exactly ``root.spawn(n)[b]`` of a root that has not spawned; a string enters
as ``2**31 + (BLAKE2b-64 of its UTF-8 bytes mod 2**31)``, a range no integer label reaches, so a name
and a number never share a stream.

:class:`SeedRecord` is the one record every result carries (``Trace.seed``, ``History.seed``, sweep
and figure results): the root's entropy and spawn key, which :meth:`SeedRecord.sequence` makes into the
same root again, written as text by ``str`` (``"12345"`` or ``"12345/7/2147483913"``) and read back by
:meth:`SeedRecord.parse`.
"""

from __future__ import annotations

import hashlib
from numbers import Integral
from typing import NamedTuple

import numpy as np

from asyncsim._validate import check_rng

__all__ = ["RngLike", "SeedRecord", "record", "root", "stream"]

RngLike = None | int | np.random.SeedSequence | np.random.Generator
"""What ``rng`` may be."""

_LABEL_LIMIT = 2**31


class SeedRecord(NamedTuple):
    """The root seed of a result: ``SeedSequence(entropy, spawn_key=spawn_key)`` makes it again.

    >>> rec = SeedRecord(12345, (7,))
    >>> str(rec), SeedRecord.parse(str(rec)) == rec
    ('12345/7', True)
    """

    entropy: int | tuple[int, ...]
    spawn_key: tuple[int, ...] = ()

    def sequence(self) -> np.random.SeedSequence:
        """The root seed sequence this record stands for."""
        return np.random.SeedSequence(self.entropy, spawn_key=self.spawn_key)

    def __str__(self) -> str:
        words = self.entropy
        entropy = (
            words if isinstance(words, int) else ",".join(map(str, words)) + "," * (len(words) == 1)
        )
        return "/".join(str(part) for part in (entropy, *self.spawn_key))

    @classmethod
    def parse(cls, text: str) -> SeedRecord:
        """The record written by ``str(record)``."""
        try:
            first, *rest = str(text).split("/")
            words = tuple(int(word) for word in first.rstrip(",").split(","))
            key = tuple(int(part) for part in rest)
        except ValueError:
            raise ValueError(
                f"seed record must be 'entropy' or 'entropy/key/...' with integers >= 0, got {text!r}"
            ) from None
        if min(words + key) < 0:
            raise ValueError(f"seed record must hold integers >= 0, got {text!r}")
        return cls(words[0] if len(words) == 1 and "," not in first else words, key)


def root(rng: object, name: str = "rng") -> np.random.SeedSequence:
    """The root seed sequence of ``rng`` (the rules are in the module docstring); anything else is a
    TypeError or ValueError naming ``name``.

    >>> root(7).entropy, root(np.random.SeedSequence(7, spawn_key=(1,))).spawn_key
    (7, (1,))
    """
    rng = check_rng(name, rng)
    if rng is None:
        return np.random.SeedSequence()
    if isinstance(rng, int):
        return np.random.SeedSequence(rng)
    if isinstance(rng, np.random.SeedSequence):
        return rng
    return np.random.SeedSequence(int.from_bytes(rng.bytes(16), "little"))


def stream(parent: np.random.SeedSequence | int, *labels: int | str) -> np.random.SeedSequence:
    """The child of ``parent`` (a seed sequence, or an int seed standing for ``SeedSequence(seed)``)
    keyed by ``labels`` (ints in ``[0, 2**31)`` or strings), by value.

    Pass the result as ``rng`` anywhere: ``simulate(config, n, rng=stream(seed, "workers", m))``.

    >>> seq = np.random.SeedSequence(0)
    >>> stream(seq, 3).generate_state(2).tolist() == seq.spawn(4)[3].generate_state(2).tolist()
    True
    >>> stream(seq, "noise").spawn_key == stream(np.random.SeedSequence(1), "noise").spawn_key
    True
    """
    if not isinstance(parent, np.random.SeedSequence):
        parent = np.random.SeedSequence(check_rng("parent", parent, none=False, generator=False))
    key = tuple(_label(label) for label in labels)
    return np.random.SeedSequence(
        parent.entropy, spawn_key=(*parent.spawn_key, *key), pool_size=parent.pool_size
    )


def record(seq: np.random.SeedSequence) -> SeedRecord:
    """The record of a root seed sequence.

    >>> record(stream(np.random.SeedSequence([1, 2]), 5))
    SeedRecord(entropy=(1, 2), spawn_key=(5,))
    """
    entropy = seq.entropy
    if isinstance(entropy, Integral):
        entropy = int(entropy)
    else:
        entropy = tuple(int(word) for word in np.atleast_1d(entropy))
    return SeedRecord(entropy, tuple(int(k) for k in seq.spawn_key))


def _label(label: int | str) -> int:
    if isinstance(label, str):
        digest = hashlib.blake2b(label.encode(), digest_size=8).digest()
        return _LABEL_LIMIT + int.from_bytes(digest, "little") % _LABEL_LIMIT
    if isinstance(label, bool) or not isinstance(label, Integral) or not 0 <= label < _LABEL_LIMIT:
        raise ValueError(f"a stream label must be a str or an int in [0, 2**31), got {label!r}")
    return int(label)
