"""Read a kernel struct in one target round-trip and decode chosen members.

``StructLayout("struct task_struct", ["pid", "comm", "thread.cpu_context.pc"])``
asks gdb once for each member's offset and type (no memory access), then
``layout.read(addr)`` fetches the bytes covering those members with a single
``read_memory`` and decodes them in Python. That keeps hot loops (``kd ps``
over every task, printk descriptors, runqueue trees) at one packet exchange per
object instead of one per field.

Members that do not exist in this kernel are simply absent from the result
(callers probe with ``"name" in layout``), so one layout serves kernels whose
structs differ (e.g. ``task_struct.state`` → ``__state`` in 5.14).
"""

import gdb

from .types import cache_per_symbols, lookup_type, member, read_bytes

__all__ = ["StructLayout", "Member", "layout"]

_layouts = {}


_clear = cache_per_symbols(_layouts)


def layout(typename: str, paths) -> "StructLayout":
    """A cached :class:`StructLayout` (dropped when symbol files change)."""
    key = (typename, tuple(paths))
    lay = _layouts.get(key)
    if lay is None:
        lay = _layouts[key] = StructLayout(typename, paths)
    return lay


class Member:
    """One decoded member: byte offset, size and how to decode it."""

    __slots__ = ("path", "offset", "size", "kind")

    def __init__(self, path, offset, size, kind):
        self.path = path
        self.offset = offset
        self.size = size
        self.kind = kind      # "u" unsigned, "s" signed, "b" raw bytes (arrays/structs)

    def decode(self, buf: bytes, base: int = 0):
        raw = buf[base + self.offset: base + self.offset + self.size]
        if self.kind == "b":
            return bytes(raw)
        return int.from_bytes(raw, "little", signed=(self.kind == "s"))


def _kind(t: gdb.Type) -> str:
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


class StructLayout:
    """Offsets of chosen members of one struct type, and a one-read decoder."""

    def __init__(self, typename: str, paths, optional=True):
        self.typename = typename
        self.type = lookup_type(typename)
        self.size = self.type.sizeof
        self.members = {}
        for p in paths:
            try:
                off, ft = member(self.type, p)
            except gdb.error:
                if optional:
                    continue
                raise
            self.members[p] = Member(p, off, ft.sizeof, _kind(ft))
        if self.members:
            self.lo = min(m.offset for m in self.members.values())
            self.hi = max(m.offset + m.size for m in self.members.values())
        else:
            self.lo = self.hi = 0

    def __contains__(self, path):
        return path in self.members

    def offset(self, path) -> int:
        return self.members[path].offset

    def read_raw(self, addr: int) -> bytes:
        """Bytes [addr, addr + hi): enough to decode every member."""
        return read_bytes(addr, self.hi)

    def decode(self, buf: bytes, base: int = 0) -> dict:
        return {p: m.decode(buf, base) for p, m in self.members.items()}

    def read(self, addr: int) -> dict:
        """Decode every member of the struct at ``addr`` (one memory read)."""
        if self.lo > 256:
            buf = read_bytes(addr + self.lo, self.hi - self.lo)
            return {p: m.decode(buf, -self.lo) for p, m in self.members.items()}
        return self.decode(read_bytes(addr, self.hi))

    def value(self, buf: bytes) -> gdb.Value:
        """The whole struct as a gdb.Value decoded from ``buf`` (no further reads)."""
        return gdb.Value(buf[:self.size], self.type)
