"""Per-stop memoization of kernel state that is not a model function.

One store: the model context's per-stop store (gdbkd/model/kernel.py,
emptied with the reader's block cache on every resume, stop, memory or
register write and symbol-file change; see gdbkd/kernel/memory.py). Model
functions use the :func:`gdbkd.model.kernel.per_stop` decorator; gdb-bound
helpers (the thread list, gdb registers) use :func:`memo` with a key.
"""

__all__ = ["memo", "generation", "invalidate"]


def invalidate(_event=None):
    from .memory import invalidate as inv
    inv()


def generation() -> int:
    from .memory import kernel
    return kernel().reader.generation


def memo(key, fn):
    """``fn()`` computed once per stop under ``key``."""
    from .memory import kernel
    store = kernel().stop_store()
    k = ("memo", key)
    try:
        return store[k]
    except KeyError:
        v = store[k] = fn()
        return v
