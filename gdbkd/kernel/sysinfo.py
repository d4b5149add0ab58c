"""The panic message for ``kd sys``; the kernel's own facts (utsname, uptime, load,
memory, taint) are the gdb-free model's (gdbkd/model/sysinfo.py, timekeeping.py).

* Panic: the last "Kernel panic - not syncing" line of the log, else the
  first Oops header ("Internal error:", "Unable to handle kernel"); when the
  log has neither but the selected thread is inside ``panic()`` (stopped at
  its breakpoint before it printed anything), panic's ``fmt`` argument.
"""

import re

import gdb

from .memory import read_cstring
from ..textutil import escape

__all__ = ["panic_message", "panic_from_frames"]


_PANIC_RE = re.compile(rb"^\s*Kernel panic - not syncing: ?(.*)")
_OOPS_RE = re.compile(rb"(Internal error: .*|Unable to handle kernel .*|kernel BUG at .*)")


def panic_message(records):
    """(kind, text) from the log records: the last panic line, else the first Oops line."""
    oops = None
    panic = None
    for r in records:
        for line in r.text.split(b"\n"):
            m = _PANIC_RE.search(line)
            if m:
                panic = line[m.start():]
            elif oops is None:
                m = _OOPS_RE.search(line)
                if m:
                    oops = m.group(1)
    if panic is not None:
        return ("panic", escape(panic))
    if oops is not None:
        return ("oops", escape(oops))
    return None


def panic_from_frames(thread=None):
    """panic()'s format string if ``thread`` (default: selected) is stopped inside panic."""
    from .percpu import on_thread
    thread = thread or gdb.selected_thread()
    if thread is None:
        return None

    def look(fr):
        n = 0
        while fr is not None and n < 32:
            if fr.name() in ("panic", "vpanic"):
                try:
                    try:
                        fmt = int(fr.read_var("fmt"))
                    except (gdb.error, ValueError):
                        if n:
                            return None
                        # at the ELF entry (before DWARF low_pc) the argument is still in x0
                        fmt = int(fr.read_register("x0")) & 0xFFFFFFFFFFFFFFFF
                    return escape(read_cstring(fmt, 256))
                except (gdb.error, ValueError, gdb.MemoryError):
                    return None
            try:
                fr = fr.older()
            except gdb.error:
                return None
            n += 1
        return None
    try:
        return on_thread(thread, look)
    except gdb.error:
        return None
