"""Postmortem debugging: open a kernel dump as memory + tasks, serve or convert it.

:func:`open_dump` is what the CLI calls; :mod:`.convert` writes an ELF core any
gdb opens; :mod:`gdbkd.stub` serves a dump to gdb over the remote protocol.
``Dump``, ``Task``, ``Thread`` and ``IDLE_TID_BASE`` come from :mod:`.dump`,
imported on first use: the dump readers and the model are imports ``gdbkd core``
wants to make while gdb starts, not before.
"""

__all__ = ["open_dump", "Dump", "Task", "Thread", "IDLE_TID_BASE"]


def __getattr__(name):
    if name in ("Dump", "Task", "Thread", "IDLE_TID_BASE"):
        from . import dump
        return getattr(dump, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def open_dump(path, vmlinux=None):
    """Open ``path`` read-only; with ``vmlinux``, check it matches and learn tasks.

    ``path`` is one dump file, or a list of files: the parts of a
    ``makedumpfile --split`` dump (all of them, in any order), read as one dump.

    Raises GdbkdError (one line) for an unreadable, truncated or non-arm64 dump,
    unknown compression, a missing, foreign or repeated part of a split dump, or
    a vmlinux whose build-id/banner differs from the dump's.
    """
    from .dump import Dump
    return Dump(path, vmlinux)
