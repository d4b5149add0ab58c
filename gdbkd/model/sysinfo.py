"""Machine facts without gdb: the kernel's own VMCOREINFO in memory, page size, total RAM.

``vmcoreinfo_data`` (a ``char *``, kernel/crash_core.c; ``vmcoreinfo_size``
bytes of ``KEY=VALUE`` lines) is filled at boot on every kernel with
CONFIG_CRASH_CORE (Debian's 5.10–6.12 cloud kernels): live and on any dump it
gives ``PAGESIZE``, ``OSRELEASE``, ``KERNELOFFSET``, ``NUMBER(VA_BITS)`` …
without a macro or a gdb expression (``PAGE_SHIFT`` is a macro gdb cannot see
without -g3 debug info).

Total RAM: ``_totalram_pages`` (``atomic_long_t``, v5.0+, commit ca79b0c211af)
or ``totalram_pages`` (``unsigned long``, before).
"""

from .kernel import per_stop
from .reader import MemoryFault
from ..dump.vmcoreinfo import parse_vmcoreinfo

__all__ = ["vmcoreinfo", "page_size", "totalram_pages"]


@per_stop
def vmcoreinfo(k) -> dict:
    """The running kernel's VMCOREINFO as a dict ({} when it has none)."""
    a, n = k.sym("vmcoreinfo_data"), k.sym("vmcoreinfo_size")
    if a is None:
        return {}
    try:
        ptr = k.reader.u64(a)
        size = k.reader.u64(n) if n is not None else 4096
        if not ptr or not 0 < size <= 1 << 16:
            return {}
        return parse_vmcoreinfo(k.reader.read(ptr, size))
    except MemoryFault:
        return {}


def page_size(k) -> int:
    try:
        return int(vmcoreinfo(k).get("PAGESIZE", "4096"))
    except ValueError:
        return 4096


@per_stop
def totalram_pages(k):
    """Pages of RAM the kernel manages, or None when unreadable."""
    for name in ("_totalram_pages", "totalram_pages"):
        a = k.sym(name)
        if a is not None:
            try:
                return k.reader.u64(a)
            except MemoryFault:
                return None
    return None
