"""BUG()/WARN() sites without gdb: the ``struct bug_entry`` of a ``brk`` instruction.

``struct bug_entry`` (include/asm-generic/bug.h, CONFIG_GENERIC_BUG) sits in the
vmlinux's ``__bug_table`` (``__start___bug_table`` … ``__stop___bug_table``) and in each
module's ``bug_table`` (``num_bugs`` entries, gdbkd/model/modules.py). With
CONFIG_GENERIC_BUG_RELATIVE_POINTERS (arm64, every version 4.x–6.12) its addresses are
32-bit offsets relative to the field holding them: ``bug_addr_disp`` (the ``brk``) and
``file_disp`` (the file name, only with CONFIG_DEBUG_BUGVERBOSE, as is ``line``).
``flags`` bit 0 is BUGFLAG_WARNING (a WARN, not a BUG).
"""

import struct

from .modules import module_bug_tables
from .reader import MemoryFault

__all__ = ["bug_tables", "bug_entry", "BUGFLAG_WARNING"]

M64 = (1 << 64) - 1
BUGFLAG_WARNING = 1 << 0
_MEMBERS = ("bug_addr_disp", "file_disp", "line", "flags")
_CHUNK = 4096           # bytes of a table read at once


def bug_tables(k) -> list:
    """[(table name, start, count)]: the vmlinux's ``__bug_table`` and every module's
    ``bug_table`` (a module's unreadable struct or an implausible count left out)."""
    size = k.sizeof("struct bug_entry")
    if not size:
        return []
    out = []
    s, e = k.sym("__start___bug_table"), k.sym("__stop___bug_table")
    if s is not None and e is not None and e > s:
        out.append(("vmlinux __bug_table", s, (e - s) // size))
    try:
        tables = module_bug_tables(k)
    except MemoryFault:
        tables = []
    for mod, t, n in tables:
        if t and 0 < n < 1 << 16:
            out.append((f"{mod.name} bug_table", t, n))
    return out


def bug_entry(k, pc: int):
    """The bug_entry of the BUG()/WARN() ``brk`` at PC: {entry, table, file, line, flags,
    warning} (file and line None without CONFIG_DEBUG_BUGVERBOSE, file None when its name
    cannot be read), or None: no table holds PC, or this kernel's entries are not relative."""
    lay = k.layout("struct bug_entry", _MEMBERS)
    if "bug_addr_disp" not in lay:
        return None
    size = k.sizeof("struct bug_entry")
    at = lay.offset("bug_addr_disp")
    per = max(1, _CHUNK // size)
    for name, start, n in bug_tables(k):
        # a piece at a time, up to the entry (the vmlinux's table is 80-115 KB on 5.0-6.12);
        # an unreadable piece is passed over, not the rest of its table
        for first in range(0, n, per):
            base, cnt = start + first * size, min(per, n - first)
            try:
                raw = k.reader.read(base, cnt * size)
            except MemoryFault:
                continue
            for i in range(cnt):
                o = i * size
                (disp,) = struct.unpack_from("<i", raw, o + at)
                if (base + o + at + disp) & M64 == pc:
                    return _entry(k, lay, name, base + o, raw, o)
    return None


def _entry(k, lay, name, entry, raw, o) -> dict:
    f = lay.decode(raw, o)
    out = {"entry": entry, "table": name, "file": None, "line": f.get("line")}
    if "file_disp" in lay:
        fo = lay.offset("file_disp")
        (fd,) = struct.unpack_from("<i", raw, o + fo)
        try:
            out["file"] = k.reader.cstring((entry + fo + fd) & M64, 200).decode("utf-8", "replace")
        except MemoryFault:
            pass
    out["flags"] = f.get("flags", 0)
    out["warning"] = bool(out["flags"] & BUGFLAG_WARNING)
    return out
