"""Per-process memory counters inside gdb: the model's (gdbkd/model/mm.py) over kd's reader."""

from .memory import kernel
from ..model import mm as _mm

__all__ = ["mm_counters", "task_rss_delta"]


def mm_counters(mm: int):
    """(total_vm pages, rss pages) of an mm_struct, or None if unreadable."""
    return _mm.mm_counters(kernel(), mm)


def task_rss_delta(task) -> int:
    """Resident pages a thread counted but has not folded into its mm yet (<= 6.1)."""
    return _mm.task_rss_delta(kernel(), task)
