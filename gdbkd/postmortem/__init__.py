"""Postmortem debugging: open a kernel dump as memory + tasks, serve or convert it.

:func:`open_dump` is what the CLI calls; :mod:`.convert` writes an ELF core any
gdb opens; :mod:`gdbkd.stub` serves a dump to gdb over the remote protocol.
"""

from .dump import Dump, Task, Thread, IDLE_TID_BASE

__all__ = ["open_dump", "Dump", "Task", "Thread", "IDLE_TID_BASE"]


def open_dump(path, vmlinux=None) -> Dump:
    """Open ``path`` read-only; with ``vmlinux``, check it matches and learn tasks.

    ``path`` is one dump file, or a list of files: the parts of a
    ``makedumpfile --split`` dump (all of them, in any order), read as one dump.

    Raises GdbkdError (one line) for an unreadable, truncated or non-arm64 dump,
    unknown compression, a missing, foreign or repeated part of a split dump, or
    a vmlinux whose build-id/banner differs from the dump's.
    """
    return Dump(path, vmlinux)
