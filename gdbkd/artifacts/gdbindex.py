"""Right-size the symbol hash table of a ``.gdb_index`` (versions 7 and 8).

gdb 13's ``save gdb-index`` of a Debian arm64 vmlinux writes a symbol table of
4,194,304 slots for ~135,000 names (33 MiB, 3 % full). On the first name lookup
gdb 13 walks every slot (``build_name_components``), ~70 ms here for nothing.
This rewrites the table with the same entries at 25-50 % load: same hash
(``mapped_index_string_hash``, lower-cased for version >= 5) and the same
probing (``step = ((hash * 17) & (size - 1)) | 1``) as gdb's reader
(gdb/dwarf2/read.c), so lookups find exactly what they found before. The CU
list, address area and constant pool are copied unchanged; slot offsets are
relative to the constant pool, so they stay valid.

Format: gdb manual, "Index Section Format". Header: six little-endian u32
(version, cu_list, types_cu_list, address_area, symbol_table, constant_pool).
"""

import struct

__all__ = ["compact_index", "index_stats"]

_HDR = struct.Struct("<6I")


def _hash(name: bytes, version: int) -> int:
    r = 0
    for c in name:
        if version >= 5 and 65 <= c <= 90:
            c += 32
        r = (r * 67 + c - 113) & 0xFFFFFFFF
    return r


def _entries(data: bytes):
    version, cu, tu, addr, sym, const = _HDR.unpack_from(data, 0)
    slots = memoryview(data)[sym:const].cast("I")
    out = []
    for i in range(0, len(slots), 2):
        n, v = slots[i], slots[i + 1]
        if n or v:
            out.append((n, v))
    return version, (cu, tu, addr, sym, const), out


def index_stats(data: bytes):
    """(version, slots, names) of a .gdb_index section's symbol table."""
    version, offs, entries = _entries(data)
    return version, (offs[4] - offs[3]) // 8, len(entries)


def compact_index(data: bytes):
    """The section rewritten with a right-sized symbol table, or None when it is
    already small (or not a version this code knows)."""
    version = struct.unpack_from("<I", data, 0)[0]
    if version not in (7, 8):
        return None
    version, (cu, tu, addr, sym, const), entries = _entries(data)
    old_slots = (const - sym) // 8
    size = 1
    while size < 2 * len(entries):
        size <<= 1
    size = max(size, 1024)
    if size * 2 > old_slots:             # already no more than ~4x too big: leave it
        return None
    table = [0] * (2 * size)
    used = bytearray(size)
    mask = size - 1
    for name_off, vec_off in entries:
        end = data.index(b"\0", const + name_off)
        h = _hash(data[const + name_off:end], version)
        i = h & mask
        step = ((h * 17) & mask) | 1
        while used[i]:
            i = (i + step) & mask
        used[i] = 1
        table[2 * i], table[2 * i + 1] = name_off, vec_off
    new_const = sym + 8 * size
    header = _HDR.pack(version, cu, tu, addr, sym, new_const)
    return b"".join([header, data[_HDR.size:sym], struct.pack(f"<{2 * size}I", *table), data[const:]])
