"""Per-stop memoization of kernel state that is not a model function.

One store: the model context's per-stop store (gdbkd/model/kernel.py,
emptied with the reader's block cache on every resume, stop, memory or
register write and symbol-file change; see gdbkd/kernel/memory.py). Model
functions use the :func:`gdbkd.model.kernel.per_stop` decorator; gdb-bound
helpers (the thread list, gdb's registers and types) use :func:`stop_cached`.
"""

from . import memory

__all__ = ["memo", "stop_cached", "generation", "invalidate"]


def invalidate(_event=None):
    memory.invalidate()


def generation() -> int:
    return memory.kernel().reader.generation


def memo(key, fn):
    """``fn()`` computed once per stop under ``key``."""
    store = memory.kernel().stop_store()
    k = ("memo", key)
    try:
        return store[k]
    except KeyError:
        v = store[k] = fn()
        return v


def stop_cached(fn):
    """``fn()`` (no arguments) computed once per stop: the gdb-bound twin of the model's
    :func:`gdbkd.model.kernel.per_stop`, in the same store."""
    import functools
    key = f"{fn.__module__}.{fn.__qualname__}"

    @functools.wraps(fn)
    def wrapper():
        return memo(key, fn)
    return wrapper
