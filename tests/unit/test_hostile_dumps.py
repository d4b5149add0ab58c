"""Dumps that lie (issue 14): mutated copies of the real 6.1 test dumps.

Every bad header field gives one line that names the field, before anything
sized by it is allocated; flattened files of a million records open in
O(n log n); one corrupt page costs that page, not the session. The copies are
written to tmp dirs and the mutations are at offsets read from the real files.
"""

import os
import struct
import zlib

import pytest

from gdbkd.errors import GdbkdError
from gdbkd.dump import open_physical, DumpError
from gdbkd.target import open_dump
from conftest import module_dumps
from hostile import flatten, patched_copy

pytestmark = pytest.mark.unit

TD = MDF = None
_dumps = module_dumps(globals())

_SUB_FIELDS = {"offset_vmcoreinfo": 32, "size_vmcoreinfo": 40, "offset_note": 48,
               "size_note": 56, "max_mapnr_64": 96}


def _one_line_error(path, match, vmlinux=None):
    with pytest.raises(GdbkdError, match=match) as ei:
        d = open_dump(path, vmlinux)
        d.close()
    assert "\n" not in str(ei.value)
    return str(ei.value)


def _zlib_kdump():
    return MDF["mdf-zlib-d31.kdump"]


def _sub_patch(field, value):
    with open_physical(_zlib_kdump()) as p:
        return [(p.block_size + _SUB_FIELDS[field], struct.pack("<Q", value))]


# -- sizes and offsets the headers claim -----------------------------------------------
@pytest.mark.parametrize("field,value,match", [
    ("max_mapnr_64", 1 << 36, "max_mapnr_64 68719476736 needs bitmaps"),
    ("max_mapnr_64", 1 << 32, "max_mapnr_64 4294967296 needs bitmaps"),
    ("size_note", 1 << 30, "the notes .* claims 1073741824 bytes"),
    ("size_note", 1 << 40, "the notes .* claims"),
    ("offset_note", 1 << 63, "the notes .* needs .* bytes, the file has"),
    ("offset_note", (1 << 64) - 16, "the notes .* needs"),
])
@pytest.mark.parametrize("flat", [False, True], ids=["plain", "flattened"])
def test_kdump_header_lies(tmp_path, field, value, match, flat):
    bad = patched_copy(_zlib_kdump(), tmp_path / "bad.kdump", _sub_patch(field, value))
    if flat:
        flatten(bad, tmp_path / "bad.flat", records=200, seed=5)
        bad = tmp_path / "bad.flat"
    msg = _one_line_error(bad, match)
    assert str(bad) in msg


def test_vmcoreinfo_not_a_number(tmp_path):
    data = bytearray(open(_zlib_kdump(), "rb").read())
    n = 0
    i = data.find(b"PAGESIZE=4096")
    while i >= 0:
        data[i:i + 13] = b"PAGESIZE=abcd"
        n += 1
        i = data.find(b"PAGESIZE=4096", i + 1)
    assert n >= 1
    (tmp_path / "bad.kdump").write_bytes(bytes(data))
    msg = _one_line_error(tmp_path / "bad.kdump", "corrupt VMCOREINFO: PAGESIZE='abcd' is not a "
                                                  "decimal number")
    assert msg.startswith(str(tmp_path / "bad.kdump") + ": ")


@pytest.mark.parametrize("patch,match", [
    ((32, struct.pack("<Q", 1 << 63)), r"ELF program headers \(e_phoff 0x8000000000000000"),
    ((56, struct.pack("<H", 0xffff)), "PN_XNUM|ELF program headers"),
    ((54, struct.pack("<H", 32)), "e_phentsize 32"),
    ((16, struct.pack("<H", 2)), "not a core dump .ET_EXEC."),
])
def test_elf_header_lies(tmp_path, patch, match):
    bad = patched_copy(MDF["mdf-elf-d31.elf"], tmp_path / "bad.elf", [patch])
    _one_line_error(bad, match)


def test_elf_segment_lies(tmp_path):
    """A PT_NOTE or PT_LOAD whose size or offset runs past the file or 2^64."""
    src = MDF["mdf-elf-d31.elf"]
    with open(src, "rb") as f:
        eh = f.read(64)
        phoff, = struct.unpack_from("<Q", eh, 32)
        phnum, = struct.unpack_from("<H", eh, 56)
        f.seek(phoff)
        ph = f.read(56 * phnum)
    kinds = [struct.unpack_from("<I", ph, 56 * i)[0] for i in range(phnum)]
    note, load = phoff + 56 * kinds.index(4), phoff + 56 * kinds.index(1)
    # the note's own file offset decides the figure: read it from the dump made today
    note_off, = struct.unpack_from("<Q", ph, note - phoff + 8)
    cases = [((note + 32, struct.pack("<Q", 1 << 40)), f"PT_NOTE .* needs {note_off + (1 << 40)} bytes"),
             ((note + 32, struct.pack("<Q", 65 << 20)), "notes of all PT_NOTEs claims"),
             ((note + 8, struct.pack("<Q", 1 << 63)), "PT_NOTE .* needs"),
             ((load + 8, struct.pack("<Q", 1 << 40)), "PT_LOAD .* needs"),
             ((load + 24, struct.pack("<Q", (1 << 64) - 16)), "wraps past 2\\^64")]
    for i, (patch, match) in enumerate(cases):
        bad = patched_copy(src, tmp_path / f"bad{i}.elf", [patch])
        if i == 1:      # the notes cap, not the file's end, must be what refuses it
            os.truncate(bad, max(os.path.getsize(bad), 200 << 20))
        _one_line_error(bad, match)


def test_fifo_is_refused(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    _one_line_error(fifo, "not a regular file")


# -- flattened files ---------------------------------------------------------------------
@pytest.mark.parametrize("overlap", [False, True], ids=["shuffled", "overlapping"])
def test_flattened_reassembly_equals_plain(tmp_path, overlap):
    """The real kdump file cut into 20k records in random order (and, overlapping,
    each written over by garbage first): every dumped page reads as in the plain file."""
    src = _zlib_kdump()
    n = flatten(src, tmp_path / "flat", records=20000, seed=9, overlap=overlap)
    with open_physical(tmp_path / "flat") as p, open_physical(src) as ref:
        assert p._flat.records == n >= 20000
        assert p.ranges == ref.ranges and p.dumped_pages == ref.dumped_pages
        assert p._flat.pread(0, p._flat.size) == open(src, "rb").read()
        for pfn in range(0, p.max_mapnr, 37):
            if ref.is_dumped(pfn):
                assert p.read_phys(pfn * 4096, 4096) == ref.read_phys(pfn * 4096, 4096)


def test_flattened_far_record_is_not_materialized(tmp_path):
    """A 1-byte record at 1 TiB: the file opens and reads as before; the hole below
    it is never built (reading into it is bounded by the read asked for)."""
    src = TD.kdump_flat
    data = open(src, "rb").read()
    end = data.rindex(struct.pack(">qq", -1, -1))
    (tmp_path / "far").write_bytes(data[:end] + struct.pack(">qq", 1 << 40, 1) + b"x"
                                   + data[end:])
    with open_physical(tmp_path / "far") as p, open_physical(src) as ref:
        assert p._flat.size == (1 << 40) + 1
        assert p.ranges == ref.ranges
        a = ref.ranges[0][0] + (5 << 20)
        assert p.read_phys(a, 4096) == ref.read_phys(a, 4096)
        assert p._flat.pread((1 << 40) - 3, 4) == b"\0\0\0x"
        with pytest.raises(DumpError, match="claims"):
            p._flat.pread(0, 1 << 40)


def test_flattened_bitmap_in_a_hole(tmp_path):
    """The records holding the bitmaps left out: refused, not read as zeros."""
    src = _zlib_kdump()
    with open_physical(src) as p:
        bm = (p._bm1.offset, p._bm2.offset + p._bm2.nbytes)
    data = open(src, "rb").read()
    from hostile import FLAT_HEADER
    recs = [(0, data[:bm[0]]), (bm[1], data[bm[1]:])]
    with open(tmp_path / "holey", "wb") as f:
        f.write(FLAT_HEADER)
        for off, b in recs:
            f.write(struct.pack(">qq", off, len(b)) + b)
        f.write(struct.pack(">qq", -1, -1))
    _one_line_error(tmp_path / "holey", "no record holds the bitmaps")


def test_flattened_record_lies(tmp_path):
    from hostile import FLAT_HEADER
    for i, (rec, match) in enumerate([
            (struct.pack(">qq", 0, 1 << 40), "truncated: the flattened record at file offset 4096"),
            (struct.pack(">qq", -5, 10), "has offset -5"),
            (struct.pack(">qq", (1 << 63) - 1, 8), "has offset"),
            (struct.pack(">qq", 0, 4) + b"KDUM", "no end marker")]):
        (tmp_path / f"r{i}").write_bytes(FLAT_HEADER + rec)
        _one_line_error(tmp_path / f"r{i}", match)


# -- bitmaps, descriptors and pages -----------------------------------------------------
def test_fragmented_first_bitmap(tmp_path):
    """A 1st bitmap of alternating bits: refused as corrupt, not 100k ranges built."""
    with open_physical(_zlib_kdump()) as p:
        off, n = p._bm1.offset, p._bm1.nbytes
    bad = patched_copy(_zlib_kdump(), tmp_path / "bad", [(off, b"\x55" * n)])
    _one_line_error(bad, "more than 65536 separate RAM ranges")


def _page_desc(path, pfn):
    with open_physical(path) as p:
        pos = p._pd_off + p._desc_index(pfn) * 24
        return pos, p.pread(pos, 24)


def _dumped_pfn(path, start=0x48000):
    with open_physical(path) as p:
        return next(pfn for pfn in range(start, p.max_mapnr) if p.is_dumped(pfn))


def test_zlib_bomb_page(tmp_path):
    """A page whose zlib data expands to 4 MiB: stopped at the page size."""
    src = _zlib_kdump()
    pfn = _dumped_pfn(src)
    pos, desc = _page_desc(src, pfn)
    data_off, size, flags, pf = struct.unpack("<QIIQ", desc)
    bomb = zlib.compress(bytes(4 << 20), 9)
    assert len(bomb) <= 8192
    end = os.path.getsize(src)
    bad = patched_copy(src, tmp_path / "bomb", [(pos, struct.pack("<QIIQ", end, len(bomb), 1, pf)),
                                                (end, bomb)])
    with open_physical(bad) as p:
        with pytest.raises(DumpError, match="corrupt zlib page in the dump: 4097 bytes instead "
                                            "of 4096"):
            p.read_phys(pfn * 4096, 8)


def test_page_descriptor_lies(tmp_path):
    src = _zlib_kdump()
    pfn = _dumped_pfn(src)
    pos, desc = _page_desc(src, pfn)
    _off, size, flags, pf = struct.unpack("<QIIQ", desc)
    for i, (d, match) in enumerate([
            (struct.pack("<QIIQ", 1 << 63, size, flags, pf), "the page of pfn .* needs"),
            (struct.pack("<QIIQ", 0, 1 << 31, flags, pf), "size 2147483648"),
            (struct.pack("<QIIQ", 1 << 40, size, flags, pf), "the page of pfn")]):
        bad = patched_copy(src, tmp_path / f"pd{i}", [(pos, d)])
        with open_physical(bad) as p:
            with pytest.raises(DumpError, match=match) as ei:
                p.read_phys(pfn * 4096, 8)
            assert f"{pos:#x}" in str(ei.value)


def test_control_characters_in_utsname(tmp_path):
    """Found by the fuzz tier: a newline in the header's utsname.machine made the
    'not an arm64 dump' error two lines."""
    bad = patched_copy(_zlib_kdump(), tmp_path / "bad", [(269, b"\0\0\0\n")])
    msg = _one_line_error(bad, "not an arm64 dump")
    assert "\\n" in msg


def test_missing_decompressor_said_at_open(tmp_path):
    """The real lzo dump in an interpreter without python-lzo (-S: no site-packages):
    opening it is the one line with the pip command, not one error per page later."""
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parents[2]
    code = (f"import sys; sys.path[:0] = [{str(root)!r}]\n"
            "from gdbkd.dump import open_physical, DumpError\n"
            "try:\n"
            f"    open_physical({str(MDF['mdf-lzo-d31.kdump'])!r})\n"
            "except DumpError as e:\n"
            "    print(e)\n")
    r = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout == ("this dump has lzo-compressed pages; install the Python module to read "
                        "them: pip install python-lzo\n")
