"""Per-process memory counters without gdb (``kd ps`` VSZ / RSS / %MEM).

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

from .kernel import per_stop
from .reader import MemoryFault

__all__ = ["mm_counters", "task_rss_delta", "mm_pgd"]

MM_FILEPAGES, MM_ANONPAGES, MM_SWAPENTS, MM_SHMEMPAGES = 0, 1, 2, 3
_COUNTERS = (MM_FILEPAGES, MM_ANONPAGES, MM_SHMEMPAGES)


@per_stop
def _rss_decoder(k):
    """(stride, offset of the count in an element, elements) of mm->rss_stat, or None."""
    lay = k.layout("struct mm_struct")
    if "rss_stat" not in lay:
        return None
    size = lay.members["rss_stat"].size
    if k.offset("struct mm_struct", "rss_stat.count") is not None:      # mm_rss_stat (<= 6.1)
        return 8, 0, size // 8
    stride = k.sizeof("struct percpu_counter")                         # percpu_counter[] (6.2+)
    off = k.offset("struct percpu_counter", "count")
    if not stride or off is None:
        return None
    return stride, off, size // stride


def mm_counters(k, mm: int):
    """(total_vm pages, rss pages) of an mm_struct, or None if unreadable."""
    lay = k.layout("struct mm_struct")
    try:
        f = lay.read(k.reader, mm)
    except MemoryFault:
        return None
    rss = 0
    dec = _rss_decoder(k)
    if dec is not None:
        stride, off, n = dec
        raw = f["rss_stat"]
        for i in _COUNTERS:
            if i < n:
                v = int.from_bytes(raw[i * stride + off: i * stride + off + 8], "little", signed=True)
                rss += max(v, 0)
    return f.get("total_vm", 0), rss


def task_rss_delta(k, task) -> int:
    """Resident pages a thread counted but has not folded into its mm yet (<= 6.1)."""
    raw = task.fields.get("rss_stat")
    off = k.offset("struct task_rss_stat", "count")
    if not raw or off is None:
        return 0
    total = 0
    for i in _COUNTERS:
        o = off + 4 * i
        if o + 4 <= len(raw):
            total += int.from_bytes(raw[o:o + 4], "little", signed=True)
    return total


def mm_pgd(k, mm: int) -> int:
    """The page table root (``mm->pgd``, a virtual address) of the mm_struct at MM."""
    return k.layout("struct mm_struct", ["pgd"]).read(k.reader, mm)["pgd"]
