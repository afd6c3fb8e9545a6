"""Collection across the repository: the modules that need an optional extra (``asyncsim/torch.py``,
``asyncsim/optax.py``) are collected for their doctests only where the extra is installed, and always
in CI, which installs every extra (there a missing one must fail, never skip). Their tests in
``tests/`` skip by the same rule."""

from __future__ import annotations

import importlib.util
import os

#: Module file -> the import names it needs.
_NEEDS_EXTRA = {"asyncsim/torch.py": ("torch",), "asyncsim/optax.py": ("jax", "optax")}

collect_ignore = [
    path
    for path, names in _NEEDS_EXTRA.items()
    if not os.environ.get("CI") and any(importlib.util.find_spec(n) is None for n in names)
]
