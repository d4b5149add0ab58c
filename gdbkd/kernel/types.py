"""Cached gdb type lookups (scripts/gdb's CachedType idea): types, members, offsets.

Type lookups are cached per name and dropped on ``gdb.events.new_objfile``
(a new symbol file, e.g. a module's, may define or change types). Reading memory
is :mod:`.memory`'s (``read_bytes``…), symbol addresses are :mod:`.symbols`'.
"""

import gdb

from .symcache import cache_per_symbols
from .symbols import gdb_symbols

__all__ = ["lookup_type", "has_field", "container_of", "ulong_type", "ptr_size", "field_offset",
           "member", "member_kind"]

_types = {}
_offsets = {}
cache_per_symbols(_types, _offsets)


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


def member_kind(t: gdb.Type) -> str:
    """How the model decodes a member of type T: "u", "s" or "b" (bytes)."""
    t = t.strip_typedefs()
    if t.code in (gdb.TYPE_CODE_ARRAY, gdb.TYPE_CODE_STRUCT, gdb.TYPE_CODE_UNION):
        if t.code == gdb.TYPE_CODE_STRUCT and t.sizeof <= 8 and len(t.fields()) == 1:
            # atomic_t / atomic_long_t / refcount-like wrappers: decode as integer
            inner = t.fields()[0].type.strip_typedefs()
            if inner.code in (gdb.TYPE_CODE_INT, gdb.TYPE_CODE_PTR, gdb.TYPE_CODE_ENUM):
                return "s" if inner.code == gdb.TYPE_CODE_INT and inner.is_signed else "u"
        return "b"
    if t.code == gdb.TYPE_CODE_INT and t.is_signed:
        return "s"
    return "u"
