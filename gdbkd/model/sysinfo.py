"""Machine facts without gdb (``kd sys``, ``kd ps``'s %MEM): the kernel's own VMCOREINFO in
memory, page size, utsname, load average, memory, the taint.

``vmcoreinfo_data`` (a ``char *``, kernel/crash_core.c; ``vmcoreinfo_size``
bytes of ``KEY=VALUE`` lines) is filled at boot on every kernel with
CONFIG_CRASH_CORE (Debian's 5.10–6.12 cloud kernels): live and on any dump it
gives ``PAGESIZE``, ``OSRELEASE``, ``KERNELOFFSET``, ``NUMBER(VA_BITS)`` …
without a macro or a gdb expression (``PAGE_SHIFT`` is a macro gdb cannot see
without -g3 debug info).

Total RAM: ``_totalram_pages`` (``atomic_long_t``, v5.0+, commit ca79b0c211af)
or ``totalram_pages`` (``unsigned long``, before). Memory size: ``memblock.memory.total_size``
(arm64 keeps memblock after boot, ARCH_KEEP_MEMBLOCK), else total RAM in pages.

utsname: ``init_uts_ns.name`` (``struct new_utsname``, six ``char[65]``; 2.6.19+; the
namespace starts with a kref before v5.11, so the offset comes from the debug info).
Load average: ``avenrun[3]``, fixed point with FSHIFT = 11 (unchanged since 2.x).

Taint: ``tainted_mask`` (``unsigned long``, bit numbers as in include/linux/panic.h)
and the letters of the kernel's own table, kernel/panic.c ``taint_flags[TAINT_FLAGS_COUNT]``
of ``struct taint_flag {char c_true; char c_false; ...}`` indexed by bit (v4.10+, commit
7fd8329ba502, which made one table serve the kernel's and the modules' taint; before it
``tnts[]`` held the bit number in each entry). The letters are read, not hard-coded: the
table grows with the kernel (TAINT_TEST, 'N', is newer than 5.10), and the struct's size
and members come from the debug info.
"""

from .kernel import per_stop
from .reader import MemoryFault
from ..dump.vmcoreinfo import parse_vmcoreinfo

__all__ = ["vmcoreinfo", "vmcoreinfo_text", "page_size", "totalram_pages", "taint_table",
           "taint_letters", "tainted", "utsname", "load_average", "memory_bytes", "UTS_FIELDS"]

#: the members of struct new_utsname, in order
UTS_FIELDS = ("sysname", "nodename", "release", "version", "machine", "domainname")
FSHIFT = 11


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


@per_stop
def taint_table(k):
    """The ``c_true`` letter of each bit of ``taint_flags[]`` (a str, bit i at [i]), or None
    when the kernel has no such table (before v4.10) or it cannot be read."""
    a = k.sym("taint_flags")
    size = k.sizeof("struct taint_flag")
    total = k.sizeof("taint_flags")
    c_true = k.offset("struct taint_flag", "c_true")
    if a is None or not size or not total or c_true is None:
        return None
    try:
        raw = k.reader.read(a, total)
    except MemoryFault:
        return None
    return "".join(chr(raw[i * size + c_true]) for i in range(total // size))


def taint_letters(k, mask: int):
    """The letters of the bits set in MASK, lowest bit first, as /proc/modules and the
    Oops's "Tainted:" print them but without the bits that are clear; None when the
    kernel's table cannot be read."""
    table = taint_table(k)
    if table is None:
        return None
    return "".join(c for i, c in enumerate(table) if mask >> i & 1)


def tainted(k):
    """(mask, letters or None) of the kernel's ``tainted_mask``, or None when unreadable."""
    mask = k.sym_u64("tainted_mask")
    return None if mask is None else (mask, taint_letters(k, mask))


def utsname(k) -> dict:
    """{field: bytes up to the NUL} of ``init_uts_ns.name`` ({} when unreadable)."""
    a = k.sym("init_uts_ns")
    off = k.offset("struct uts_namespace", "name")
    if a is None or off is None:
        return {}
    try:
        f = k.layout("struct new_utsname").read(k.reader, a + off)
    except MemoryFault:
        return {}
    return {n: f[n].split(b"\0", 1)[0] for n in UTS_FIELDS if n in f}


def load_average(k):
    """[1, 5, 15 minute] load averages rounded to hundredths as ``uptime`` prints them, or
    None when ``avenrun`` cannot be read."""
    a = k.sym("avenrun")
    if a is None:
        return None
    try:
        raw = k.reader.read(a, 24)
    except MemoryFault:
        return None
    vals = [int.from_bytes(raw[i * 8:i * 8 + 8], "little") for i in range(3)]
    return [round((v >> FSHIFT) + ((v & ((1 << FSHIFT) - 1)) * 100 >> FSHIFT) / 100, 2)
            for v in vals]


def memory_bytes(k):
    """Bytes of memory: ``memblock.memory.total_size``, else total RAM pages times the page
    size; None when neither can be read."""
    a = k.sym("memblock")
    off = k.offset("struct memblock", "memory")
    tot = k.offset("struct memblock_type", "total_size")
    if a is not None and off is not None and tot is not None:
        try:
            v = k.reader.u64(a + off + tot)
        except MemoryFault:
            v = 0
        if v:
            return v
    n = totalram_pages(k)
    return None if n is None else n * page_size(k)
