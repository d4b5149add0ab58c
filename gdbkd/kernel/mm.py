"""Per-process memory counters (``kd ps`` VSZ / RSS / %MEM).

``mm->total_vm`` counts pages of the address space. Resident pages are
``MM_FILEPAGES + MM_ANONPAGES + MM_SHMEMPAGES`` (indices 0, 1, 3; SHMEM since
4.5) of ``mm->rss_stat``: a ``struct mm_rss_stat { atomic_long_t count[]; }`` up
to 6.1, an array of ``struct percpu_counter`` from 6.2 (commit f1a7941243c1,
"mm: convert mm's rss stats into percpu_counter"), whose ``count`` is read
without folding the per-CPU deltas (crash does the same; the error is at most
a batch per CPU). Up to 6.1 with SPLIT_RSS_COUNTING each thread also caches
unsynced deltas in ``task->rss_stat.count[]`` (ints); :func:`task_rss_delta`
returns them so callers add them per mm, as crash does.
"""

import gdb

from .types import field_offset, member
from .structs import layout
from .snapshot import memo

__all__ = ["mm_counters", "task_rss_delta"]

MM_FILEPAGES, MM_ANONPAGES, MM_SWAPENTS, MM_SHMEMPAGES = 0, 1, 2, 3


def _rss_decoder():
    def f():
        try:   # members sit in an anonymous struct since 4.x: ask for the member's type
            ft = member("struct mm_struct", "rss_stat")[1].strip_typedefs()
        except gdb.error:
            return None
        if ft.code == gdb.TYPE_CODE_ARRAY:          # percpu_counter[] (6.2+)
            el = ft.target().strip_typedefs()
            return ("pcpu", el.sizeof, field_offset("struct percpu_counter", "count"),
                    ft.range()[1] + 1)
        arr = ft["count"].type.strip_typedefs()
        return ("atomic", arr.target().sizeof, 0, arr.range()[1] + 1)
    return memo("rss_decoder", f)


def mm_counters(mm: int):
    """(total_vm pages, rss pages) of an mm_struct, or None if unreadable."""
    lay = layout("struct mm_struct", ["total_vm", "rss_stat"])
    dec = _rss_decoder()
    try:
        f = lay.read(mm)
    except gdb.MemoryError:
        return None
    rss = 0
    if dec is not None and "rss_stat" in f:
        kind, stride, off, n = dec
        raw = f["rss_stat"]
        for i in (MM_FILEPAGES, MM_ANONPAGES, MM_SHMEMPAGES):
            if i < n:
                v = int.from_bytes(raw[i * stride + off: i * stride + off + 8], "little", signed=True)
                rss += max(v, 0)
    return f.get("total_vm", 0), rss


def task_rss_delta(task) -> int:
    """Resident pages a thread counted but has not folded into its mm yet (≤ 6.1)."""
    raw = task.f.get("rss_stat")
    if not raw:
        return 0

    def f():
        try:
            return field_offset("struct task_rss_stat", "count")
        except gdb.error:
            return None
    off = memo("task_rss_count_off", f)
    if off is None:
        return 0
    total = 0
    for i in (MM_FILEPAGES, MM_ANONPAGES, MM_SHMEMPAGES):
        o = off + 4 * i
        if o + 4 <= len(raw):
            total += int.from_bytes(raw[o:o + 4], "little", signed=True)
    return total
