"""Struct layouts from gdb's types, read through the model's reader.

``layout("struct mm_struct", ["total_vm", "rss_stat"])`` asks gdb once for each
member's offset and type (no memory access); ``lay.read(addr)`` fetches the
bytes covering those members in one read and decodes them in Python. The
layout class itself is the model's (:class:`gdbkd.model.layout.StructLayout`):
inside gdb its offsets come from gdb's types, outside from the offsets cache.

Members that do not exist in this kernel are simply absent from the result
(callers probe with ``"name" in layout``), so one layout serves kernels whose
structs differ (e.g. ``task_struct.state`` → ``__state`` in 5.14).
"""

import gdb

from ..model.layout import StructLayout as _ModelLayout

__all__ = ["StructLayout", "layout", "member_kind"]


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


class StructLayout(_ModelLayout):
    """The model's layout with gdb conveniences: ``read(addr)`` through kd's reader,
    ``value(buf)`` as a gdb.Value."""

    def __init__(self, typename: str, paths):
        from .memory import kernel
        base = kernel().layout(typename, list(paths))
        super().__init__(typename, base.size, base.members)
        from .types import lookup_type
        self.type = lookup_type(typename)

    def read(self, addr: int) -> dict:
        from .types import read_bytes
        if self.lo > 256:
            buf = read_bytes(addr + self.lo, self.hi - self.lo)
            return {p: m.decode(buf, -self.lo) for p, m in self.members.items()}
        return self.decode(read_bytes(addr, self.hi))

    def read_raw(self, addr: int) -> bytes:
        from .types import read_bytes
        return read_bytes(addr, self.hi)

    def value(self, buf: bytes) -> gdb.Value:
        """The whole struct as a gdb.Value decoded from ``buf`` (no further reads)."""
        return gdb.Value(buf[:self.size], self.type)


_layouts = {}


def layout(typename: str, paths) -> StructLayout:
    """A cached :class:`StructLayout` (dropped when symbol files change)."""
    key = (typename, tuple(paths))
    lay = _layouts.get(key)
    if lay is None:
        lay = _layouts[key] = StructLayout(typename, paths)
    return lay


def _register():
    from .types import cache_per_symbols
    cache_per_symbols(_layouts)


_register()
