"""The target layer: a kernel dump opened as memory, tasks and registers, without gdb.

Below the gdb layer (gdbkd/kernel, the kd commands) and the frontends (``gdbkd core``,
``convert`` and ``check`` in gdbkd/postmortem, the dump server in gdbkd/stub), above
the readers and the model (gdbkd/model, gdbkd/dump, gdbkd/arm64); it imports none of
the layers above it (tests/model/test_layers.py):

- :func:`open_dump` / :mod:`.dump`: a dump (any format, split or not) joined with the
  arm64 page tables and, once a vmlinux is attached, the kernel's tasks as threads;
- :mod:`.offsets`: the per-vmlinux offsets registry (struct layouts and symbol
  addresses asked of a separate gdb-multiarch once per build-id, then cached);
- :mod:`.preload`: ``gdbkd core``'s second thread in gdb's Python, opening the dump
  while gdb loads the vmlinux (it calls nothing in gdb).

The register sets (a dump's notes, a task's cpu_context, as gdb numbers them) are
arm64 facts: :mod:`gdbkd.arm64.regs`.

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
