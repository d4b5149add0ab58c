"""Dump readers on real dumps of a crashed 6.1 guest (QEMU ELF, QEMU kdump-zlib, makedumpfile).

The dumps are made by tests/testdumps.py (QEMU boot + sysrq crash + QMP
dump, makedumpfile:arm64 under qemu-user: bookworm's 1.7.2 for zlib, lzo,
flattened, ELF and --split, trixie's 1.7.6 for zstd) and cached; a machine
without them makes them first (conftest.real_dumps), so these tests never skip. The snappy
dump is the one exception: no Debian tool writes snappy pages, so it is a
re-encoding of the real zlib dump (see :func:`_reencode_snappy`).
"""

import os
import random
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from gdbkd.errors import GdbkdError
from gdbkd.dump import open_physical, PageExcluded, PageNotInDump, DumpError
from gdbkd.dump.compress import FLAG_SNAPPY, FLAG_ZSTD
from gdbkd.target import open_dump
from conftest import module_dumps

pytestmark = pytest.mark.unit


TD = MDF = None          # the real dumps (made once when not cached)
_dumps = module_dumps(globals())



def _addresses(n=4000, seed=7):
    rnd = random.Random(seed)
    return [rnd.randrange(0x40000000, 0x80000000 - 256) for _ in range(n)]


def test_qemu_elf_layout_and_notes():
    with open_physical(TD.elf) as p:
        assert p.format == "elf"
        assert p.machine == "EM_AARCH64"
        assert p.ranges == [(0x40000000, 0x40000000 + (1 << 30))]
        assert not p.has_virtual
        prs = p.prstatus_notes()
        assert len(prs) == 2 and all(len(n.desc) == 392 for n in prs)
        assert b"OSRELEASE=" + TD.meta["release"].encode() in p.vmcoreinfo_raw


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


def test_outside_ram_is_not_zero():
    for path in (TD.elf, TD.kdump_flat):
        with open_physical(path) as p:
            with pytest.raises(PageNotInDump, match="0x1000 is not in the dump"):
                p.read_phys(0x1000, 8)
            with pytest.raises(PageNotInDump):
                p.read_phys(0x80000000, 8)


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


def test_non_arm64_dump(tmp_path):
    dst = tmp_path / "x86.elf"
    shutil.copyfile(MDF["mdf-elf-d31.elf"], dst)
    with open(dst, "r+b") as f:
        f.seek(18)
        f.write(struct.pack("<H", 62))   # EM_X86_64
    with pytest.raises(GdbkdError, match="not an arm64 dump"):
        open_dump(dst)


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


def test_missing_decompressor_message(tmp_path):
    """lzo/snappy/zstd are optional modules: a dump needing a missing one says which to install.

    Run in a real interpreter that lacks them: this venv's Python without site-packages
    (-S), given only gdbkd and pyelftools (all gdbkd.dump imports besides the stdlib)."""
    import elftools
    (tmp_path / "elftools").symlink_to(Path(elftools.__file__).parent)
    root = Path(__file__).resolve().parents[2]
    code = (f"import sys; sys.path[:0] = [{str(root)!r}, {str(tmp_path)!r}]\n"
            "from gdbkd.dump.compress import decompress, FLAG_SNAPPY, FLAG_ZSTD, FLAG_LZO\n"
            "from gdbkd.dump import DumpError\n"
            "for name in ('lzo', 'snappy', 'cramjam', 'zstandard', 'pyzstd'):\n"
            "    try:\n"
            "        __import__(name); print('HAVE', name)\n"
            "    except ImportError:\n"
            "        pass\n"
            "for flag in (FLAG_SNAPPY, FLAG_ZSTD, FLAG_LZO):\n"
            "    try:\n"
            "        decompress(flag, bytes(16), 4096)\n"
            "    except DumpError as e:\n"
            "        print(e)\n")
    r = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert not [l for l in lines if l.startswith("HAVE")], r.stdout
    assert lines == [
        f"this dump has {m}-compressed pages; install the Python module to read them: "
        f"pip install {pip}"
        for m, pip in (("snappy", "python-snappy"), ("zstd", "zstandard"), ("lzo", "python-lzo"))]


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


# -- every dumped page, for the formats beyond zlib/lzo ------------------------------------
def _every_dumped_page_equals_elf(p):
    """Read every page the 2nd bitmap has; each must equal the full QEMU ELF dump's."""
    n = 0
    with open_physical(TD.elf) as ref:
        for pfn in range(p.max_mapnr):
            if p.is_dumped(pfn):
                a = pfn * p.block_size
                assert p.read_phys(a, p.block_size) == ref.read_phys(a, p.block_size), hex(a)
                n += 1
    assert n == p.dumped_pages > 10000
    return n


def _desc_flags(p):
    """{flags: count} over the page descriptors of one kdump file."""
    from collections import Counter
    table = p.pread(p._pd_off, p.part_pages * 24)
    return Counter(struct.unpack_from("<QIIQ", table, i * 24)[2] for i in range(p.part_pages))


def test_makedumpfile_zstd_every_page():
    """zstd pages written by Debian trixie's makedumpfile 1.7.6 (-z -d 31, linked with
    libzstd), decoded with the zstandard module: every dumped page equals the ELF dump."""
    with open_physical(MDF["mdf-zstd-d31.kdump"]) as p:
        assert p.format == "kdump" and p.dump_level == 31 and p.status == FLAG_ZSTD
        flags = _desc_flags(p)
        # compressed pages, and pages stored raw where zstd did not shrink them
        assert set(flags) == {0, FLAG_ZSTD} and flags[FLAG_ZSTD] > 10000, flags
        _every_dumped_page_equals_elf(p)


def _reencode_snappy(src, dst):
    """Write ``dst``: the kdump file ``src`` (zlib or raw pages) with every page
    re-compressed as raw snappy (cramjam.snappy.compress_raw, what snappy-c's
    snappy_compress writes) and flag 0x4 in its descriptor, or stored raw (flag 0)
    when snappy does not make it smaller, as makedumpfile does; header status 0x4.
    Everything before the descriptor table (headers, notes, VMCOREINFO, bitmaps)
    is copied as it is. Returns {flags: pages}."""
    import cramjam
    from collections import Counter
    with open_physical(src) as k:
        assert k.format == "kdump" and not k.split
        bs, n, pd_off = k.block_size, k.dumped_pages, k._pd_off
        head = bytearray(k.pread(0, pd_off))
        table = k.pread(pd_off, n * 24)
        descs, chunks, count = bytearray(), [], Counter()
        pos = pd_off + n * 24
        for i in range(n):
            off, size, flags, pflags = struct.unpack_from("<QIIQ", table, i * 24)
            data = k.pread(off, size)
            assert flags in (0, 1), flags
            page = zlib.decompress(data) if flags else data
            assert len(page) == bs
            c = bytes(cramjam.snappy.compress_raw(page))
            data, flags = (c, FLAG_SNAPPY) if len(c) < bs else (page, 0)
            descs += struct.pack("<QIIQ", pos, len(data), flags, pflags)
            chunks.append(data)
            pos += len(data)
            count[flags] += 1
    struct.pack_into("<I", head, 424, FLAG_SNAPPY)          # disk_dump_header.status
    with open(dst, "wb") as f:
        f.write(head + descs)
        for c in chunks:
            f.write(c)
    return count


@pytest.fixture(scope="module")
def snappy_dump(tmp_path_factory):
    dst = tmp_path_factory.mktemp("snappy") / "mdf-snappy-d31.kdump"
    return dst, _reencode_snappy(MDF["mdf-zlib-d31.kdump"], dst)


def test_snappy_pages_reencoded_from_real_dump(snappy_dump):
    """Snappy pages. NOT a makedumpfile output: no Debian makedumpfile is built with
    snappy (1.7.2 and 1.7.6 write raw pages for -p), so this dump is the real
    makedumpfile -c -d 31 dump with each page re-encoded as raw snappy (flag 0x4,
    raw when snappy does not shrink it), see _reencode_snappy. The reader must give
    every dumped page back byte-identical to the full QEMU ELF dump."""
    path, count = snappy_dump
    assert count[FLAG_SNAPPY] > 10000 and set(count) <= {0, FLAG_SNAPPY}, count
    with open_physical(path) as p:
        assert p.status == FLAG_SNAPPY and p.dump_level == 31
        assert _desc_flags(p) == count
        _every_dumped_page_equals_elf(p)


# -- makedumpfile --split ------------------------------------------------------------------
def test_split_dump_every_page():
    """The 3 files of bookworm makedumpfile's --split -c -d 31 read as one dump:
    every dumped page equals the ELF dump, and each part holds a share of them."""
    parts = MDF["mdf-split-d31"]
    assert len(parts) == 3
    with open_physical(parts) as s, open_physical(MDF["mdf-zlib-d31.kdump"]) as whole:
        assert s.format == "kdump-split"
        assert [p.split for p in s.parts] == [True] * 3
        # contiguous ranges over [0, max_mapnr), each holding pages
        assert s.parts[0].start_pfn == 0 and s.parts[-1].end_pfn == s.max_mapnr
        assert [p.end_pfn for p in s.parts[:-1]] == [p.start_pfn for p in s.parts[1:]]
        assert all(p.part_pages > 1000 for p in s.parts), [p.part_pages for p in s.parts]
        assert sum(p.part_pages for p in s.parts) == s.dumped_pages == whole.dumped_pages
        assert s._bm2 == whole._bm2 and s.notes == whole.notes and s.ranges == whole.ranges
        _every_dumped_page_equals_elf(s)
        # an excluded page is still reported as excluded, not absent
        a = next(a for a in range(0x40000000, 0x80000000, 4096) if s.page_state(a) == "excluded")
        with pytest.raises(PageExcluded):
            s.read_phys(a, 8)
    # the parts in any order are the same dump; open_dump (the CLI's entry) takes the list too
    with open_dump(list(reversed(parts)), TD.vmlinux) as d:
        assert d.format == "kdump-split" and d.crashed_pid is not None


def test_split_dump_missing_or_foreign_part(tmp_path):
    """Every way a set can be wrong is one line, never a traceback or a silent hole."""
    p1, p2, p3 = MDF["mdf-split-d31"]

    def err(paths, match):
        with pytest.raises(GdbkdError, match=match) as ei:
            open_dump(paths)
        assert "\n" not in str(ei.value)

    err([p1, p3], r"split dump incomplete: none of the 2 parts given holds pfns 0x[0-9a-f]+-")
    err([p2, p3], r"split dump incomplete: .* holds pfns 0x0-")
    err([p1, p2], r"split dump incomplete")
    err(p1, r"one part of a split dump \(makedumpfile --split; it holds pfns 0x0-")
    err([p1, p2, p3, p2], r"given twice")
    err([p1, p2, MDF["mdf-zlib-d31.kdump"]], r"not part of a split dump")
    err([p1, p2, TD.elf], r"is not a kdump-compressed file")
    err([p1, p2, tmp_path / "nope"], r"cannot open dump")
    # a part of another dump: the same file with another VMCOREINFO
    other = tmp_path / "other-part3.kdump"
    data = bytearray(Path(p3).read_bytes())
    i = data.find(b"BUILD-ID=")
    while i >= 0:
        data[i + 9:i + 13] = b"0000"
        i = data.find(b"BUILD-ID=", i + 1)
    other.write_bytes(bytes(data))
    err([p1, p2, other], r"other-part3.kdump is not a part of the same dump as .*part1.kdump: "
                         r"its VMCOREINFO or notes differs")
    # a part from another --split run of the same dump: its range overlaps
    with open_physical([p1, p2, p3]) as s:
        start3 = s.parts[2].start_pfn
    shifted = tmp_path / "shifted-part3.kdump"
    data = bytearray(Path(p3).read_bytes())
    struct.pack_into("<Q", data, 4096 + 80, start3 - 0x1000)      # sub-header start_pfn_64
    shifted.write_bytes(bytes(data))
    err([p1, p2, shifted], r"overlap \(both hold pfns")
