"""Dump readers on real dumps of a crashed 6.1 guest (QEMU ELF, QEMU kdump-zlib, makedumpfile).

The dumps are made by gdbkd.postmortem.testdumps (QEMU boot + sysrq crash + QMP
dump, makedumpfile:arm64 under qemu-user) and cached; these unit tests skip
when the cache is absent (the e2e tests create it).
"""

import os
import random
import shutil
import struct

import pytest

from gdbkd.errors import GdbkdError
from gdbkd.dump import open_physical, PageExcluded, PageNotInDump, DumpError
from gdbkd.dump.compress import decompress, FLAG_SNAPPY, FLAG_ZSTD, FLAG_LZO
from gdbkd.postmortem import open_dump
from gdbkd.postmortem.testdumps import cached_test_dumps

pytestmark = pytest.mark.unit


TD, MDF = cached_test_dumps()
needs_dumps = pytest.mark.skipif(TD is None, reason="no cached test dump (run the e2e tests, "
                                 "or gdbkd.postmortem.testdumps.ensure_test_dumps())")
needs_mdf = pytest.mark.skipif(len(MDF) < 4, reason="no cached makedumpfile outputs "
                               "(gdbkd.postmortem.testdumps.ensure_makedumpfile_dumps())")


def _addresses(n=4000, seed=7):
    rnd = random.Random(seed)
    return [rnd.randrange(0x40000000, 0x80000000 - 256) for _ in range(n)]


@needs_dumps
def test_qemu_elf_layout_and_notes():
    with open_physical(TD.elf) as p:
        assert p.format == "elf"
        assert p.machine == "EM_AARCH64"
        assert p.ranges == [(0x40000000, 0x40000000 + (1 << 30))]
        assert not p.has_virtual
        prs = p.prstatus_notes()
        assert len(prs) == 2 and all(len(n.desc) == 392 for n in prs)
        assert b"OSRELEASE=" + TD.meta["release"].encode() in p.vmcoreinfo_raw


@needs_dumps
def test_qemu_flattened_64k_blocks_match_elf():
    """QEMU's kdump-zlib: flattened, block_size 64K on a 4K-page kernel, read in place."""
    with open_physical(TD.elf) as ref, open_physical(TD.kdump_flat) as k:
        assert k.format == "kdump-flattened"
        assert k.block_size == 65536 and k.header_version == 6
        assert k.utsname["machine"] == "Unknown"
        assert k.ranges == ref.ranges
        assert k.vmcoreinfo_raw == ref.vmcoreinfo_raw
        for a in _addresses():
            n = 1 + a % 200
            assert k.read_phys(a, n) == ref.read_phys(a, n), hex(a)
        # a read crossing a 64K block boundary
        a = 0x40000000 + 5 * 65536 - 10
        assert k.read_phys(a, 20) == ref.read_phys(a, 20)


@needs_dumps
def test_outside_ram_is_not_zero():
    for path in (TD.elf, TD.kdump_flat):
        with open_physical(path) as p:
            with pytest.raises(PageNotInDump, match="0x1000 is not in the dump"):
                p.read_phys(0x1000, 8)
            with pytest.raises(PageNotInDump):
                p.read_phys(0x80000000, 8)


@needs_mdf
@pytest.mark.parametrize("name", ["mdf-zlib-d31.kdump", "mdf-lzo-d31.kdump",
                                  "mdf-flat-d31.kdump", "mdf-elf-d31.elf"])
def test_makedumpfile_d31_pages(name):
    """Dumped pages equal the full QEMU dump; excluded ones raise, never read as zeros."""
    if "lzo" in name:
        pytest.importorskip("lzo", reason="python-lzo not installed (optional)")
    dumped = excluded = 0
    with open_physical(TD.elf) as ref, open_physical(MDF[name]) as p:
        if name.endswith(".elf"):
            assert p.has_virtual     # makedumpfile -E keeps /proc/vmcore's virtual addresses
        else:
            assert p.dump_level == 31 and p.block_size == 4096
        for a in _addresses(3000, seed=11):
            a &= ~63
            st = p.page_state(a)
            if st == "ok":
                assert p.read_phys(a, 64) == ref.read_phys(a, 64), hex(a)
                dumped += 1
            else:
                assert st == "excluded"
                with pytest.raises(PageExcluded, match=r"page excluded from the dump \(makedumpfile -d\)"):
                    p.read_phys(a, 64)
                excluded += 1
    assert dumped > 50 and excluded > 1000


@needs_mdf
def test_makedumpfile_bitmaps_agree():
    """zlib, lzo and flattened outputs of one run exclude exactly the same pages."""
    with open_physical(MDF["mdf-zlib-d31.kdump"]) as a, open_physical(MDF["mdf-lzo-d31.kdump"]) as b, \
            open_physical(MDF["mdf-flat-d31.kdump"]) as c:
        assert a._bm2 == b._bm2 == c._bm2
        assert a.dumped_pages == b.dumped_pages == c.dumped_pages
        assert a.notes == c.notes


def _copy_prefix(src, dst, n):
    with open(src, "rb") as f, open(dst, "wb") as g:
        g.write(f.read(n))


@needs_mdf
@pytest.mark.parametrize("name,cut", [("vmcore.elf", 1 << 20), ("mdf-zlib-d31.kdump", 1 << 20),
                                      ("mdf-flat-d31.kdump", 1 << 20), ("mdf-elf-d31.elf", 1 << 20)])
def test_truncated_dump_is_one_line_error(tmp_path, name, cut):
    src = TD.elf if name == "vmcore.elf" else MDF[name]
    dst = tmp_path / "cut"
    _copy_prefix(src, dst, cut)
    with pytest.raises(GdbkdError, match="truncated") as ei:
        d = open_dump(dst)
        # a kdump file whose page data was cut fails on the first read of it
        d.phys.read_phys(0x7ff00000, 4096)
    assert "\n" not in str(ei.value)


def test_not_a_dump(tmp_path):
    f = tmp_path / "junk"
    f.write_bytes(os.urandom(8192))
    with pytest.raises(GdbkdError, match="not a kernel dump gdbkd knows"):
        open_dump(f)
    with pytest.raises(GdbkdError, match="cannot open dump"):
        open_dump(tmp_path / "missing")


@needs_mdf
def test_unknown_compression(tmp_path):
    """A page descriptor with an unknown compression flag gives a clear error."""
    src = MDF["mdf-zlib-d31.kdump"]
    dst = tmp_path / "odd.kdump"
    shutil.copyfile(src, dst)
    p = open_physical(dst)
    pfn = next(a // 4096 for a in range(0x40000000, 0x80000000, 4096) if p.page_state(a) == "ok")
    pos = p._pd_off + p._desc_index(pfn) * 24
    p.close()
    with open(dst, "r+b") as f:
        f.seek(pos + 12)
        f.write(struct.pack("<I", 0x40))
    with open_physical(dst) as p:
        with pytest.raises(DumpError, match="unknown page compression"):
            p.read_phys(pfn * 4096, 8)


@needs_mdf
def test_non_arm64_dump(tmp_path):
    dst = tmp_path / "x86.elf"
    shutil.copyfile(MDF["mdf-elf-d31.elf"], dst)
    with open(dst, "r+b") as f:
        f.seek(18)
        f.write(struct.pack("<H", 62))   # EM_X86_64
    with pytest.raises(GdbkdError, match="not an arm64 dump"):
        open_dump(dst)


@needs_mdf
def test_wrong_vmlinux_build_id(tmp_path):
    dst = tmp_path / "other.kdump"
    shutil.copyfile(MDF["mdf-zlib-d31.kdump"], dst)
    data = bytearray(dst.read_bytes())
    i = data.find(b"BUILD-ID=")
    assert i > 0
    while True:      # every copy (sub-header VMCOREINFO and the note)
        data[i + 9:i + 13] = b"0000"
        i = data.find(b"BUILD-ID=", i + 1)
        if i < 0:
            break
    dst.write_bytes(bytes(data))
    with pytest.raises(GdbkdError, match="wrong vmlinux: its build-id"):
        open_dump(dst, TD.vmlinux)


def test_missing_decompressor_message():
    """lzo/snappy/zstd are optional modules: a dump needing a missing one says which to install."""
    for flag, mod, pip in ((FLAG_SNAPPY, ("snappy", "cramjam"), "python-snappy"),
                           (FLAG_ZSTD, ("zstandard", "compression.zstd", "pyzstd"), "zstandard"),
                           (FLAG_LZO, ("lzo",), "python-lzo")):
        have = False
        for m in mod:
            try:
                __import__(m)
                have = True
            except ImportError:
                pass
        if have:
            continue
        with pytest.raises(DumpError, match=f"pip install {pip}"):
            decompress(flag, b"\0" * 16, 4096)


def test_flattened_index_equals_sequential_reassembly(tmp_path):
    """Overlapping, out-of-order records: the index reads what makedumpfile -R would write."""
    from gdbkd.dump.flattened import FlatFile
    rnd = random.Random(4)
    recs = []
    for _ in range(300):
        off = rnd.randrange(0, 50000)
        recs.append((off, os.urandom(rnd.randrange(1, 3000))))
    path = tmp_path / "flat"
    with open(path, "wb") as f:
        f.write(b"makedumpfile".ljust(16, b"\0") + struct.pack(">qq", 1, 1))
        f.write(b"\0" * (4096 - 32))
        for off, data in recs:
            f.write(struct.pack(">qq", off, len(data)) + data)
        f.write(struct.pack(">qq", -1, -1))
    image = bytearray(max(o + len(d) for o, d in recs))
    for off, data in recs:                      # what seek+write in order produces
        image[off:off + len(data)] = data
    fd = os.open(path, os.O_RDONLY)
    try:
        ff = FlatFile(fd, str(path), os.fstat(fd).st_size)
        assert ff.size == len(image)
        for _ in range(500):
            a = rnd.randrange(0, len(image))
            n = min(rnd.randrange(1, 4000), len(image) - a)
            assert ff.pread(a, n) == bytes(image[a:a + n])
        assert ff.pread(0, len(image)) == bytes(image)
    finally:
        os.close(fd)
    # a stream cut before its end marker is refused
    data = path.read_bytes()
    path.write_bytes(data[:-16])
    with pytest.raises(DumpError, match="no end marker"):
        open_physical(path)


@needs_mdf
def test_wrong_vmlinux_osrelease(tmp_path):
    """A dump whose OSRELEASE is not the vmlinux's release is refused, build-id or not."""
    dst = tmp_path / "other.kdump"
    shutil.copyfile(MDF["mdf-zlib-d31.kdump"], dst)
    data = bytearray(dst.read_bytes())
    rel = TD.meta["release"].encode()
    other = rel.replace(b"6.1", b"9.9", 1)
    for key in (b"OSRELEASE=", b"BUILD-ID="):
        i = data.find(key)
        while i >= 0:
            if key == b"OSRELEASE=":
                data[i + 10:i + 10 + len(rel)] = other
            else:      # drop the build-id so only the release can tell
                data[i:i + 9] = b"BUILD-IX="
            i = data.find(key, i + 1)
    dst.write_bytes(bytes(data))
    with pytest.raises(GdbkdError, match="wrong vmlinux: the dump is of kernel 9.9"):
        open_dump(dst, TD.vmlinux)
