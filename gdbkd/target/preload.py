"""What `gdbkd core`'s gdb can do in a second thread while it loads the vmlinux.

gdb's main thread spends ~0.12 s in ``add-symbol-file`` and the connect (C code,
with Python's GIL released). Meanwhile this thread opens the dump in gdb's own
Python, as ``kd reader --dump`` would, sets the image range, makes the reader and
walks the task list with the recorded layouts — all gdb-free (gdbkd/model):

    start(paths, layouts_file, kaslr_offset)    # first thing of gdbkd core's script
    wait()                                      # before kd is loaded (no concurrent imports)
    take(paths) -> (dump, reader, kernel) | None   # kd reader --dump: gdbkd/kernel/memory.py

``take`` hands over the opened dump and its reader; kd's model context then starts
with this kernel's per-stop results (the task list) when computing them asked for
nothing the offsets cache does not hold (a symbol or a member kd would have had to
ask gdb for): the same layouts and addresses kd itself uses, so the same results.
Anything that fails here is left to kd, which then does the work itself and
reports the failure as it always does. Nothing here imports gdb.
"""

import threading

from ..errors import GdbkdError

__all__ = ["start", "wait", "take"]

_job = None        # (paths, thread, result dict)


class _Recorded:
    """The offsets cache's layouts and symbols, noting anything asked that it lacks."""

    def __init__(self, data, offset):
        from ..model.layout import RecordedTypes
        self.types = RecordedTypes.from_offsets(data)
        self.syms = {k: v for k, v in data.get("symbols", {}).items() if v is not None}
        self.offset = offset
        self.missed = []

    # TypeSource
    def member(self, typename, path):
        if not self.types.covers(typename, path):
            self.missed.append(f"{typename}.{path}")
            return None
        return self.types.member(typename, path)

    def sizeof(self, name):
        v = self.types.sizeof(name)
        if v is None and name not in self.types.sizes:
            self.missed.append(f"sizeof({name})")
        return v

    def symbol(self, name):
        link = self.syms.get(name)
        if link is None:
            self.missed.append(name)
            return None
        return (link + self.offset) & 0xFFFFFFFFFFFFFFFF


def _run(paths, layouts, offset, walk, out):
    import signal
    try:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})   # Ctrl-C is gdb's
    except (AttributeError, ValueError, OSError):
        pass
    try:
        import json
        from . import open_dump
        from ..model.kernel import Kernel
        from ..model.reader import DumpReader
        from ..model.tasks import task_list
        from ..arm64.pac import PacStripper
        d = open_dump(list(paths) if len(paths) > 1 else paths[0])
        out["dump"] = d
        rec = _Recorded(json.loads(open(layouts).read()), offset)
        lo, hi = rec.symbol("_text"), rec.symbol("_end")
        if lo is not None and hi is not None:       # as kd reader's _use_image_range
            d.mmu.image_range = (lo, hi)
            d.mmu.verify_image_fastpath()
        reader = DumpReader(d, PacStripper.for_dump(d))
        k = Kernel(reader, rec, rec.symbol)
        out["reader"] = reader
        if walk:
            task_list(k)
        if not rec.missed:
            out["kernel"] = k
    except (GdbkdError, OSError, ValueError):   # kd opens the dump itself and says what is wrong
        pass


def start(paths, layouts, offset, walk=True):
    """Open PATHS and (WALK) walk its task list in a daemon thread (see the module
    docstring)."""
    global _job
    out = {}
    t = threading.Thread(target=_run, args=(list(paths), layouts, offset, walk, out),
                         name="gdbkd-preload", daemon=True)
    t.start()
    _job = (list(paths), t, out)


def wait():
    """Let the thread finish (before kd's modules are imported by the main thread)."""
    if _job is not None:
        _job[1].join()


def take(paths):
    """(dump, reader, kernel or None) opened for exactly PATHS, once; else None."""
    global _job
    if _job is None or _job[0] != list(paths):
        return None
    _, t, out = _job
    _job = None
    t.join()
    d = out.get("dump")
    if d is None or out.get("reader") is None:
        if d is not None:
            d.close()
        return None
    return d, out["reader"], out.get("kernel")
