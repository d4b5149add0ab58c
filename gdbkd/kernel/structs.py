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
from .memory import kernel, read_bytes
from .symcache import cache_per_symbols
from .types import lookup_type

__all__ = ["StructLayout", "layout"]


class StructLayout(_ModelLayout):
    """The model's layout with gdb conveniences: ``read(addr)`` through kd's reader,
    ``value(buf)`` as a gdb.Value."""

    def __init__(self, typename: str, paths):
        base = kernel().layout(typename, list(paths))
        super().__init__(typename, base.size, base.members)
        self.type = lookup_type(typename)

    def read(self, addr: int) -> dict:
        if self.lo > 256:
            buf = read_bytes(addr + self.lo, self.hi - self.lo)
            return {p: m.decode(buf, -self.lo) for p, m in self.members.items()}
        return self.decode(read_bytes(addr, self.hi))

    def read_raw(self, addr: int) -> bytes:
        return read_bytes(addr, self.hi)

    def value(self, buf: bytes) -> gdb.Value:
        """The whole struct as a gdb.Value decoded from ``buf`` (no further reads)."""
        return gdb.Value(buf[:self.size], self.type)


_layouts = {}
cache_per_symbols(_layouts)


def layout(typename: str, paths) -> StructLayout:
    """A cached :class:`StructLayout` (dropped when symbol files change)."""
    key = (typename, tuple(paths))
    lay = _layouts.get(key)
    if lay is None:
        lay = _layouts[key] = StructLayout(typename, paths)
    return lay
