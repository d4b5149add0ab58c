"""System summary for ``kd sys``: release, uptime, load, memory, panic message.

* utsname: ``init_uts_ns.name`` (2.6.19+).
* Uptime and the wall clock: the timekeeper (gdbkd/model/timekeeping.py).
* Load: ``avenrun[3]``, fixed point with FSHIFT = 11 (unchanged since 2.x).
* Memory: ``memblock.memory.total_size`` (arm64 keeps memblock after boot,
  ARCH_KEEP_MEMBLOCK), else ``_totalram_pages`` (5.0+; ``totalram_pages`` before,
  commit ca79b0c211af "mm: convert totalram_pages and totalhigh_pages variables
  to atomic") pages.
* Panic: the last "Kernel panic - not syncing" line of the log, else the
  first Oops header ("Internal error:", "Unable to handle kernel"); when the
  log has neither but the selected thread is inside ``panic()`` (stopped at
  its breakpoint before it printed anything), panic's ``fmt`` argument.
"""

import re

import gdb

from .memory import read_cstring
from ..textutil import escape

__all__ = ["utsname", "load_average", "memory_bytes", "page_size",
           "panic_message", "panic_from_frames"]


def utsname() -> dict:
    out = {}
    try:
        name = gdb.parse_and_eval("init_uts_ns.name")
    except gdb.error:
        return out
    for f in ("sysname", "nodename", "release", "version", "machine", "domainname"):
        try:
            out[f] = escape(read_cstring(int(name[f].address), 65))
        except (gdb.error, gdb.MemoryError):
            pass
    return out


def load_average():
    try:
        av = gdb.parse_and_eval("avenrun")
        vals = [int(av[i]) for i in range(3)]
    except gdb.error:
        return None
    return [round((v >> 11) + ((v & 2047) * 100 >> 11) / 100, 2) for v in vals]


def page_size() -> int:
    """PAGESIZE of the kernel's own VMCOREINFO (gdbkd/model/sysinfo.py)."""
    from .memory import kernel
    from ..model.sysinfo import page_size as ps
    return ps(kernel())


def memory_bytes():
    try:
        v = int(gdb.parse_and_eval("memblock.memory.total_size"))
        if v:
            return v
    except gdb.error:
        pass
    for expr in ("_totalram_pages.counter", "totalram_pages"):
        try:
            return int(gdb.parse_and_eval(expr)) * page_size()
        except gdb.error:
            continue
    return None


def totalram_pages():
    from .memory import kernel
    from ..model.sysinfo import totalram_pages as trp
    return trp(kernel())


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
