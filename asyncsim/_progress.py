"""Progress bars that are a flag: tqdm (notebook-aware) when on, nothing at all when off."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any

__all__ = ["progress_bar"]


@contextlib.contextmanager
def progress_bar(
    total: int, enabled: bool | None, desc: str, unit: str, **options: Any
) -> Iterator[Any]:
    """A tqdm bar over ``total`` ``unit``s when ``enabled``, else None (tqdm is then not imported).
    ``enabled=None``: on at a terminal, off in CI (``CI`` set) and when stderr is not a terminal."""
    if enabled is None:
        enabled = sys.stderr.isatty() and not os.environ.get("CI")
    if not enabled:
        yield None
        return
    from tqdm.auto import tqdm

    with tqdm(total=total, desc=desc, unit=unit, **options) as bar:
        yield bar
