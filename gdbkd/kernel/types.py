"""Cached gdb type lookups and small memory helpers (scripts/gdb's CachedType idea).

Type lookups are cached per name and dropped on ``gdb.events.new_objfile``
(a new symbol file, e.g. a module's, may define or change types).
"""

import gdb

__all__ = ["cache_per_symbols", "lookup_type", "has_field", "container_of", "read_ulong", "read_u32",
           "read_bytes", "read_cstring", "ulong_type", "ptr_size", "symbol_address",
           "try_symbol_address", "field_offset"]

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


def lookup_type(name: str) -> gdb.Type:
    t = _types.get(name)
    if t is None:
        if name.startswith("struct "):
            t = gdb.lookup_type(name[7:].strip(), ) if False else gdb.lookup_type(name)
        else:
            t = gdb.lookup_type(name)
        _types[name] = t
    return t


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
        off = int(gdb.parse_and_eval(f"(unsigned long)&(({typename} *)0)->{path}"))
        _offsets[key] = off
    return off


def container_of(ptr, typename: str, member: str) -> gdb.Value:
    addr = int(ptr) - field_offset(typename, member)
    return gdb.Value(addr).cast(lookup_type(typename).pointer())


def read_bytes(addr: int, n: int) -> bytes:
    return gdb.selected_inferior().read_memory(addr, n).tobytes()


def read_ulong(addr: int) -> int:
    return int.from_bytes(read_bytes(addr, 8), "little")


def read_u32(addr: int) -> int:
    return int.from_bytes(read_bytes(addr, 4), "little")


def read_cstring(addr: int, maxlen: int = 256) -> bytes:
    data = read_bytes(addr, maxlen)
    return data.split(b"\0", 1)[0]


def symbol_address(name: str) -> int:
    return int(gdb.parse_and_eval(f"(unsigned long)&{name}"))


def try_symbol_address(name: str):
    try:
        return symbol_address(name)
    except gdb.error:
        return None
