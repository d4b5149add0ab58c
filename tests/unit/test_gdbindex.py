"""gdbkd.artifacts.gdbindex over the real Debian 6.1 vmlinux's .gdb_index."""

import struct

import pytest
from elftools.elf.elffile import ELFFile

from gdbkd.artifacts.gdbindex import compact_index, index_stats, _hash, _entries

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def index(kernel61):
    with open(kernel61.vmlinux, "rb") as f:
        return ELFFile(f).get_section_by_name(".gdb_index").data()


def _find(data, name: bytes):
    """gdb's lookup (find_slot_in_mapped_hash): same hash, same probe sequence."""
    version, cu, tu, addr, sym, const = struct.unpack_from("<6I", data, 0)
    size = (const - sym) // 8
    h = _hash(name, version)
    i, step = h & (size - 1), ((h * 17) & (size - 1)) | 1
    while True:
        n, v = struct.unpack_from("<II", data, sym + 8 * i)
        if n == 0 and v == 0:
            return None
        if data[const + n:data.index(b"\0", const + n)] == name:
            return v
        i = (i + step) & (size - 1)


def _names(data):
    """[(name, name offset, CU-vector offset)] of every symbol-table entry."""
    const = struct.unpack_from("<6I", data, 0)[5]
    _, _, entries = _entries(data)
    return [(data[const + n:data.index(b"\0", const + n)], n, v) for n, v in entries]


def _inflate(data, factor):
    """The same index with a FACTOR times bigger symbol table (as gdb 13 wrote it)."""
    version, cu, tu, addr, sym, const = struct.unpack_from("<6I", data, 0)
    size = (const - sym) // 8 * factor
    table = [0] * (2 * size)
    for name, n_off, vec in _names(data):
        h = _hash(name, version)
        i, step = h & (size - 1), ((h * 17) & (size - 1)) | 1
        while table[2 * i] or table[2 * i + 1]:
            i = (i + step) & (size - 1)
        table[2 * i], table[2 * i + 1] = n_off, vec
    head = struct.pack("<6I", version, cu, tu, addr, sym, sym + 8 * size)
    return head + data[24:sym] + struct.pack(f"<{2 * size}I", *table) + data[const:]


def test_installed_index_is_right_sized_and_complete(index):
    version, slots, names = index_stats(index)
    assert version in (7, 8) and names > 100000
    assert slots <= 4 * names                       # compacted when the kernel was fetched
    for name, _, vec in _names(index)[::50]:
        assert _find(index, name) == vec, name


def test_compact_keeps_every_lookup(index):
    big = _inflate(index, 8)
    assert index_stats(big)[1] == 8 * index_stats(index)[1]
    small = compact_index(big)
    assert small is not None and len(small) < len(big)
    assert index_stats(small)[2] == index_stats(big)[2]
    for name, _, vec in _names(big)[::25]:
        assert _find(small, name) == vec, name
    assert compact_index(small) is None             # already right-sized: left alone
