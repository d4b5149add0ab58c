"""Per-stop memoization of kernel state read through gdb.

Values computed from guest memory (the task list, per-CPU offsets, module
ranges) stay valid while the target is stopped and no one writes memory. A
generation counter bumps on every resume, stop, memory write or symbol-file
change; :func:`memo` recomputes when the generation moved on.
"""

import gdb

__all__ = ["memo", "generation", "invalidate"]

_gen = 0
_cache = {}


def invalidate(_event=None):
    global _gen
    _gen += 1
    _cache.clear()


for _name in ("cont", "stop", "memory_changed", "register_changed", "new_objfile",
              "clear_objfiles", "inferior_call", "exited", "new_inferior", "new_thread"):
    _ev = getattr(gdb.events, _name, None)
    if _ev is not None:
        _ev.connect(invalidate)


def generation() -> int:
    return _gen


def memo(key, fn):
    """``fn()`` computed once per generation under ``key``."""
    try:
        return _cache[key]
    except KeyError:
        v = _cache[key] = fn()
        return v
