"""Cached gdb type lookups and small memory helpers (scripts/gdb's CachedType idea).

Type lookups are cached per name and dropped on ``gdb.events.new_objfile``
(a new symbol file, e.g. a module's, may define or change types).
"""

import gdb

from ..model.reader import MemoryFault
from ..errors import GdbkdError

__all__ = ["cache_per_symbols", "lookup_type", "has_field", "container_of", "read_ulong", "read_u32",
           "read_bytes", "read_cstring", "ulong_type", "ptr_size", "symbol_address",
           "try_symbol_address", "vmlinux_symbol_address", "field_offset", "member", "gdb_symbols"]

_types = {}
_offsets = {}


def cache_per_symbols(*caches):
    """Empty these dicts whenever symbol files change (a new objfile — a module's
    symbols, a KASLR reload — may define or move what they cache)."""
    def _clear(_event=None):
        for c in caches:
            c.clear()
    gdb.events.new_objfile.connect(_clear)
    try:
        gdb.events.clear_objfiles.connect(_clear)
    except AttributeError:
        pass
    return _clear


cache_per_symbols(_types, _offsets)


def gdb_symbols():
    """Make sure gdb has the vmlinux's symbols (``gdbkd core`` may have put off loading
    them: gdbkd/kernel/symbols.py ``defer_load``). Every use of gdb's symbols, types,
    blocks or lines by kd goes through here or through :func:`lookup_type`."""
    from .symbols import load_deferred
    load_deferred()


def lookup_type(name: str) -> gdb.Type:
    t = _types.get(name)
    if t is None:
        gdb_symbols()
        t = _types[name] = gdb.lookup_type(name)
    return t


def _find_field(t: gdb.Type, name: str):
    for f in t.fields():
        if f.name == name:
            if f.bitsize:          # like &(...)->bitfield: not addressable
                raise gdb.error(f"{name} is a bit-field")
            return f.bitpos // 8, f.type
        if not f.name and f.type is not None:          # anonymous struct/union member
            ft = f.type.strip_typedefs()
            if ft.code in (gdb.TYPE_CODE_STRUCT, gdb.TYPE_CODE_UNION):
                hit = _find_field(ft, name)
                if hit is not None:
                    return f.bitpos // 8 + hit[0], hit[1]
    return None


def member(typ, path: str):
    """``(byte offset, gdb.Type)`` of a dotted member path ("thread.cpu_context.pc"),
    looking through anonymous structs/unions; raises gdb.error if there is none.

    Walks the cached gdb.Type: gdb's expression parser spends ~15 ms on every
    ``&((struct T *)0)->m`` (a fresh tag lookup each time), this takes microseconds."""
    t = lookup_type(typ) if isinstance(typ, str) else typ
    off = 0
    for name in path.split("."):
        index = None
        if name.endswith("]") and "[" in name:          # "mem[0]": an array element
            name, _, idx = name[:-1].partition("[")
            index = int(idx, 0)
        t = t.strip_typedefs()
        if t.code not in (gdb.TYPE_CODE_STRUCT, gdb.TYPE_CODE_UNION):
            raise gdb.error(f"There is no member named {name}.")
        hit = _find_field(t, name)
        if hit is None:
            raise gdb.error(f"There is no member named {name}.")
        off += hit[0]
        t = hit[1]
        if index is not None:
            at = t.strip_typedefs()
            if at.code != gdb.TYPE_CODE_ARRAY:
                raise gdb.error(f"{name} is not an array")
            t = at.target()
            off += index * t.sizeof
    return off, t


def ulong_type() -> gdb.Type:
    return lookup_type("unsigned long")


def ptr_size() -> int:
    return ulong_type().sizeof


def has_field(t, name: str) -> bool:
    if isinstance(t, str):
        t = lookup_type(t)
    t = t.strip_typedefs()
    return any(f.name == name for f in t.fields())


def field_offset(typename: str, path: str) -> int:
    """Byte offset of a (dotted) member, cached: field_offset("struct task_struct", "thread.cpu_context")."""
    key = (typename, path)
    off = _offsets.get(key)
    if off is None:
        off = _offsets[key] = member(typename, path)[0]
    return off


def container_of(ptr, typename: str, member: str) -> gdb.Value:
    addr = int(ptr) - field_offset(typename, member)
    return gdb.Value(addr).cast(lookup_type(typename).pointer())


def read_bytes(addr: int, n: int) -> bytes:
    """N bytes at ADDR through kd's reader (gdbkd/kernel/memory.py: the dump in-process
    or gdb's inferior, cached per stop); raises gdb.MemoryError."""
    try:
        return _kernel().reader.read(addr, n)
    except MemoryFault as e:
        raise gdb.MemoryError(str(e)) from None


from .memory import kernel as _kernel      # noqa: E402 (memory imports nothing from here)


def read_ulong(addr: int) -> int:
    return int.from_bytes(read_bytes(addr, 8), "little")


def read_u32(addr: int) -> int:
    return int.from_bytes(read_bytes(addr, 4), "little")


def read_cstring(addr: int, maxlen: int = 256) -> bytes:
    data = read_bytes(addr, maxlen)
    return data.split(b"\0", 1)[0]


def symbol_address(name: str) -> int:
    """Run-time address of a kernel symbol: from the vmlinux's .symtab plus the
    KASLR offset when one vmlinux symbol has that name (no gdb name lookup), else
    gdb's (modules, static names defined in several files)."""
    from .symbols import link_address, current_offset
    link = link_address(name)
    if link is not None:
        return (link + current_offset()) & 0xFFFFFFFFFFFFFFFF
    gdb_symbols()
    return int(gdb.parse_and_eval(f"(unsigned long)&{name}"))


def try_symbol_address(name: str):
    try:
        return symbol_address(name)
    except gdb.error:
        return None


def vmlinux_symbol_address(name: str):
    """Run-time address of a symbol of the kernel image itself, or None when the
    vmlinux's .symtab has none of that name: probes for symbols that only some
    kernel versions have ("vabits_actual", "cpu_online_bits", ...) cost nothing
    instead of a failed gdb lookup (~0.1 s the first time)."""
    from .symbols import symbol_table, current_offset
    try:
        st = symbol_table()
        vals = st.values(name) if st.syms else None
    except (gdb.error, GdbkdError):      # no vmlinux objfile / unreadable: ask gdb
        vals = None
    if vals is not None and len(set(vals)) == 1:
        return (vals[0] + current_offset()) & 0xFFFFFFFFFFFFFFFF
    if vals is not None and not vals:
        return None
    return try_symbol_address(name)
