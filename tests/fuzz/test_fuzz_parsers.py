"""Fuzz tier (issue 14): Hypothesis mutates the real 6.1 test dumps and the remote
protocol, and every parser must answer with a result or one line of GdbkdError.

Run: ``pytest -m fuzz`` (part of the default ``-m "not slow"`` run with a small budget,
derandomized so CI is repeatable). The slow tier sets ``GDBKD_FUZZ_EXAMPLES``
(e.g. 100000) for that many inputs per test, randomized::

    GDBKD_FUZZ_EXAMPLES=100000 .venv/bin/python -m pytest -m fuzz -p no:cacheprovider

How: one private copy per dump format; each example overwrites a few bytes of its
headers (ELF header, program headers and notes; kdump header, sub-header, notes,
bitmaps and descriptors; flattened record headers) with values Hypothesis picks
(boundary integers of every width favoured), opens it, reads some pages, and puts
the original bytes back. Truncations are separate files of the first N bytes.
Every crash found became a regression test in tests/unit/test_hostile_dumps.py.
"""

import os
import shutil
import struct

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from gdbkd.errors import GdbkdError
from gdbkd.dump import open_physical, parse_notes
from gdbkd.dump.compress import decompress, FLAG_ZLIB, FLAG_LZO, FLAG_SNAPPY, FLAG_ZSTD
from gdbkd.dump.vmcoreinfo import parse_vmcoreinfo, vmci_int, vmci_number, vmci_hex
from gdbkd.target import open_dump

pytestmark = pytest.mark.fuzz

EXAMPLES = int(os.environ.get("GDBKD_FUZZ_EXAMPLES", "0"))
FUZZ = settings(max_examples=EXAMPLES or 40, derandomize=not EXAMPLES, deadline=None,
                database=None, suppress_health_check=list(HealthCheck))

_WIDTHS = {1: "<B", 2: "<H", 4: "<I", 8: "<Q"}


def _values(width):
    top = (1 << (8 * width)) - 1
    special = [0, 1, 2, 7, 8, 0x7f, 0x80, 0xff, 0x1000, 0x10000, top, top >> 1, (top >> 1) + 1,
               top - 15]
    return st.one_of(st.sampled_from([v & top for v in special]), st.integers(0, top))


@st.composite
def _patches(draw, regions, big_endian_at=()):
    """A list of (offset, bytes): integers of 1/2/4/8 bytes at offsets inside REGIONS."""
    out = []
    for _ in range(draw(st.integers(1, 4))):
        lo, hi = draw(st.sampled_from(regions))
        width = draw(st.sampled_from([1, 2, 4, 8]))
        off = draw(st.integers(lo, max(lo, hi - width)))
        v = draw(_values(width))
        fmt = _WIDTHS[width]
        if any(a <= off < b for a, b in big_endian_at):
            fmt = ">" + fmt[1:]
        out.append((off, struct.pack(fmt, v)))
    return out


class _Mutable:
    """A private copy of a real dump; ``apply(patches)`` writes them, ``restore`` undoes."""

    def __init__(self, src, dst):
        shutil.copyfile(src, dst)
        os.chmod(dst, 0o600)
        self.path = dst
        self.fd = os.open(dst, os.O_RDWR)
        self.saved = []

    def apply(self, patches):
        for off, b in patches:
            self.saved.append((off, os.pread(self.fd, len(b), off)))
            os.pwrite(self.fd, b, off)

    def restore(self):
        for off, b in reversed(self.saved):
            os.pwrite(self.fd, b, off)
        self.saved = []


def _exercise(path):
    """Open as gdbkd core would (no vmlinux: the dump's own checks), read some memory;
    anything but a one-line GdbkdError is a failure."""
    try:
        d = open_dump(path)
    except GdbkdError as e:
        assert "\n" not in str(e)
        return "error"
    try:
        p = d.phys
        for lo, hi in p.ranges[:4]:
            for a in (lo, (lo + hi) // 2 & ~0xfff, hi - 4096):
                try:
                    p.read_phys(a, 4096)
                except GdbkdError as e:
                    assert "\n" not in str(e)
        base = d.mmu.image_range[0] if d.mmu.image_range else None
        if base:
            try:
                d.read(base, 64)
            except GdbkdError as e:
                assert "\n" not in str(e)
        return "opened"
    finally:
        d.close()


@pytest.fixture(scope="module")
def dumps():
    import sys
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
    from conftest import real_dumps
    return real_dumps()


@pytest.fixture(scope="module")
def copies(dumps, tmp_path_factory):
    td, mdf = dumps
    d = tmp_path_factory.mktemp("fuzz")
    out = {"elf": _Mutable(mdf["mdf-elf-d31.elf"], d / "elf"),
           "kdump": _Mutable(mdf["mdf-zlib-d31.kdump"], d / "kdump"),
           "flat": _Mutable(td.kdump_flat, d / "flat")}
    yield out
    for m in out.values():
        os.close(m.fd)


def _kdump_regions(path):
    with open_physical(path) as p:
        bs = p.block_size
        return [(0, 0x1d0), (bs, bs + 104), (p._bm1.offset, p._bm1.offset + 64),
                (p._bm2.offset, p._bm2.offset + 4096), (p._pd_off, p._pd_off + 24 * 64)]


def _elf_regions(path):
    with open(path, "rb") as f:
        eh = f.read(64)
    phoff, = struct.unpack_from("<Q", eh, 32)
    phnum, = struct.unpack_from("<H", eh, 56)
    return [(0, 64), (phoff, phoff + 56 * phnum), (phoff + 56 * phnum, phoff + 56 * phnum + 2048)]


def _flat_regions(path):
    """The first record headers of a flattened file (their offset/size fields)."""
    regions, pos = [], 4096
    with open(path, "rb") as f:
        for _ in range(8):
            f.seek(pos)
            off, size = struct.unpack(">qq", f.read(16))
            if off == -1:
                break
            regions.append((pos, pos + 16))
            regions.append((pos + 16, pos + 16 + min(size, 512)))
            pos += 16 + size
    return regions


@FUZZ
@given(data=st.data())
def test_fuzz_elf_headers(copies, data):
    m = copies["elf"]
    m.apply(data.draw(_patches(_elf_regions(m.path))))
    try:
        _exercise(m.path)
    finally:
        m.restore()


@FUZZ
@given(data=st.data())
def test_fuzz_kdump_headers(copies, data):
    m = copies["kdump"]
    m.apply(data.draw(_patches(_kdump_regions(m.path))))
    try:
        _exercise(m.path)
    finally:
        m.restore()


@FUZZ
@given(data=st.data())
def test_fuzz_flattened_records(copies, data):
    m = copies["flat"]
    regions = _flat_regions(m.path)
    m.apply(data.draw(_patches(regions, big_endian_at=regions[0::2])))
    try:
        _exercise(m.path)
    finally:
        m.restore()


@FUZZ
@given(which=st.sampled_from(["elf", "kdump", "flat"]), cut=st.integers(0, 200_000))
def test_fuzz_truncated(copies, tmp_path_factory, which, cut):
    src = copies[which].path
    dst = tmp_path_factory.getbasetemp() / f"cut-{which}"
    with open(src, "rb") as f, open(dst, "wb") as g:
        g.write(f.read(cut))
    assert _exercise(dst) == "error"


@FUZZ
@given(raw=st.binary(max_size=4096))
def test_fuzz_notes_and_vmcoreinfo(raw):
    try:
        parse_notes(raw)
    except GdbkdError as e:
        assert "\n" not in str(e)
    info = parse_vmcoreinfo(raw)
    for key in list(info)[:8] + ["PAGESIZE", "NUMBER(VA_BITS)"]:
        for fn in (lambda: vmci_int(info, key), lambda: vmci_hex(info, key),
                   lambda: vmci_number(info, key[7:-1] if key.startswith("NUMBER(") else key)):
            try:
                fn()
            except GdbkdError as e:
                assert "\n" not in str(e)


@FUZZ
@given(flag=st.sampled_from([FLAG_ZLIB, FLAG_LZO, FLAG_SNAPPY, FLAG_ZSTD, 0x40]),
       raw=st.binary(max_size=8192))
def test_fuzz_page_decompressors(flag, raw):
    try:
        out = decompress(flag, raw, 4096)
    except GdbkdError as e:
        assert "\n" not in str(e)
    else:
        assert len(out) == 4096
