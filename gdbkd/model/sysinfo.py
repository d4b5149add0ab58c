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

__all__ = ["vmcoreinfo", "vmcoreinfo_text", "page_size", "totalram_pages"]


def vmcoreinfo_text(reader, symbol) -> bytes:
    """The raw VMCOREINFO text of the running kernel through READER, ``symbol(name)``
    giving run-time addresses (b"" when the kernel has none)."""
    a, n = symbol("vmcoreinfo_data"), symbol("vmcoreinfo_size")
    if a is None:
        return b""
    try:
        ptr = reader.u64(a)
        size = reader.u64(n) if n is not None else 4096
        if not ptr or not 0 < size <= 1 << 16:
            return b""
        return reader.read(ptr, size)
    except MemoryFault:
        return b""


@per_stop
def vmcoreinfo(k) -> dict:
    """The running kernel's VMCOREINFO as a dict ({} when it has none)."""
    return parse_vmcoreinfo(vmcoreinfo_text(k.reader, k.sym))


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
