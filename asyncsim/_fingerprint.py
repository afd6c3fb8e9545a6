"""Fingerprints: a JSON description of what an object *is*, and its SHA-256, stable across processes.

A sweep folder records the fingerprint of everything that defines its sweep (problem, optimizer,
grids, cluster), so that a resumed run can tell its own chunks from another sweep's. The rules:

- ``None``, booleans, integers, floats and strings describe themselves; lists, tuples, dicts and sets
  their items (dict and set items in sorted order);
- a NumPy array by its dtype, shape and the SHA-256 of its bytes; a NumPy scalar by its dtype and value;
- a function by its module, qualified name, code (bytecode, constants and names, recursively), default
  arguments and closure values: editing a function changes its fingerprint, a global it reads does not;
- a class by its module and qualified name;
- an object that defines ``__fingerprint__()`` by what that returns; any other object as pickle would
  rebuild it (``__reduce_ex__``: its class and its state, described by these same rules).

An object that pickle cannot take (a generator, an open file, a lock) has no fingerprint: a
:class:`TypeError` names where in the object it sits.
"""

from __future__ import annotations

import hashlib
import json
import types
from typing import Any

import numpy as np

__all__ = ["describe", "fingerprint"]


def fingerprint(obj: Any, name: str = "object") -> str:
    """SHA-256 (hex) of :func:`describe` ``(obj)``."""
    text = json.dumps(describe(obj, name), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def describe(obj: Any, name: str = "object") -> Any:
    """A JSON-able description of ``obj`` by the rules of this module; ``name`` is how an error
    refers to ``obj`` (its parts are named below it: ``sweep.problem.data[2]``)."""
    return _Describer().describe(obj, name)


_PLAIN = (type(None), bool, int, float, str)


class _Describer:
    def __init__(self) -> None:
        self.path: list[int] = []  # ids of the containers being described (cycles refer back)

    def describe(self, obj: Any, where: str) -> Any:
        if type(obj) in _PLAIN:
            return obj if not isinstance(obj, float) or np.isfinite(obj) else {"float": repr(obj)}
        if id(obj) in self.path:
            return {"cycle": self.path.index(id(obj))}
        self.path.append(id(obj))
        try:
            return self._compound(obj, where)
        finally:
            self.path.pop()

    def _compound(self, obj: Any, where: str) -> Any:
        kind = type(obj)
        if hasattr(kind, "__fingerprint__") and not isinstance(obj, type):
            return {
                "type": _qualified(kind),
                "fingerprint": self.describe(obj.__fingerprint__(), where),
            }
        if kind in (list, tuple):
            items = [self.describe(v, f"{where}[{i}]") for i, v in enumerate(obj)]
            return {kind.__name__: items}
        if kind is dict:
            pairs = [
                [self.describe(k, f"{where} key"), self.describe(v, f"{where}[{k!r}]")]
                for k, v in obj.items()
            ]
            return {"dict": sorted(pairs, key=_sort_key)}
        if kind in (set, frozenset):
            items = [self.describe(v, f"{where} item") for v in obj]
            return {kind.__name__: sorted(items, key=_sort_key)}
        if kind is bytes or kind is bytearray:
            return {"bytes": hashlib.sha256(obj).hexdigest()}
        if isinstance(obj, np.ndarray):
            return self._array(obj, where)
        if isinstance(obj, np.generic):
            return {"numpy": obj.dtype.str, "value": self.describe(obj.item(), where)}
        if isinstance(obj, type):
            return {"class": _qualified(obj)}
        if isinstance(obj, types.FunctionType):
            return self._function(obj, where)
        if isinstance(obj, types.CodeType):
            return self._code(obj, where)
        if isinstance(obj, types.BuiltinFunctionType | types.ModuleType):
            return {"global": f"{getattr(obj, '__module__', None)}.{obj.__name__}"}
        if isinstance(obj, types.MethodType):
            return {
                "method": obj.__func__.__name__,
                "of": self.describe(obj.__self__, f"{where}.__self__"),
                "function": self._function(obj.__func__, where),
            }
        return self._reduced(obj, where)

    def _array(self, obj: np.ndarray, where: str) -> Any:
        if obj.dtype.hasobject:
            return {"object_array": list(obj.shape), "items": self.describe(obj.tolist(), where)}
        data = np.ascontiguousarray(obj).tobytes()
        return {
            "array": obj.dtype.str,
            "shape": list(obj.shape),
            "sha256": hashlib.sha256(data).hexdigest(),
        }

    def _function(self, fn: types.FunctionType, where: str) -> Any:
        closure = [cell.cell_contents for cell in fn.__closure__ or ()]
        return {
            "function": f"{fn.__module__}.{fn.__qualname__}",
            "code": self._code(fn.__code__, where),
            "defaults": self.describe(fn.__defaults__, f"{where} defaults"),
            "kwdefaults": self.describe(fn.__kwdefaults__, f"{where} defaults"),
            "closure": self.describe(closure, f"{where} closure"),
        }

    def _code(self, code: types.CodeType, where: str) -> Any:
        return {
            "bytecode": hashlib.sha256(code.co_code).hexdigest(),
            "consts": [self.describe(c, f"{where} constant") for c in code.co_consts],
            "names": list(code.co_names),
        }

    def _reduced(self, obj: Any, where: str) -> Any:
        try:
            reduced = obj.__reduce_ex__(4)
        except Exception as err:
            raise TypeError(
                f"{where} ({type(obj).__name__}) has no fingerprint: pickle cannot take it ({err}); "
                "give it a __fingerprint__() method, or leave it out of what must be fingerprinted"
            ) from None
        if isinstance(reduced, str):  # a module-level singleton, pickled by name
            return {"global": f"{_qualified(type(obj))}:{reduced}"}
        build, arguments, state, *items = list(reduced) + [None] * (5 - len(reduced))
        if type(state) is dict and all(type(k) is str for k in state):
            state = {k: self.describe(v, f"{where}.{k}") for k, v in sorted(state.items())}
        else:
            state = self.describe(state, f"{where} state")
        return {
            "type": _qualified(type(obj)),
            "build": self.describe(build, where),
            "arguments": self.describe(arguments, where),
            "state": state,
            "items": [
                self.describe(None if i is None else list(i), f"{where} item") for i in items
            ],
        }


def _qualified(kind: type) -> str:
    return f"{kind.__module__}.{kind.__qualname__}"


def _sort_key(item: Any) -> str:
    return json.dumps(item, sort_keys=True)
