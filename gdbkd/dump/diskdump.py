"""makedumpfile's kdump-compressed format (signature ``KDUMP   ``), plain or flattened.

Layout (makedumpfile IMPLEMENTATION, diskdump_mod.h; 64-bit dumps)::

    block 0                 struct disk_dump_header (signature, header_version,
                            new_utsname, timeval, status, block_size, sub_hdr_size,
                            bitmap_blocks, max_mapnr, ...)
    block 1                 struct kdump_sub_header (phys_base, dump_level, split,
                            start/end_pfn, offset/size_vmcoreinfo (v3+),
                            offset/size_note (v4+), offset/size_eraseinfo (v5+),
                            start_pfn_64/end_pfn_64/max_mapnr_64 (v6+))
    1 + sub_hdr_size        1st bitmap (RAM present), then 2nd bitmap (page dumped):
                            bitmap_blocks blocks together, one bit per pfn
    + bitmap_blocks         struct page_desc {offset, size, flags, page_flags}[] —
                            one per set bit of the 2nd bitmap, in pfn order
                            page data (zlib/lzo/snappy/zstd or raw)

Header versions 1 to 6 are read (6 is what makedumpfile 1.6+ and QEMU write).
The "pfn" unit is ``block_size``: makedumpfile uses the kernel's page size,
QEMU always uses 64 KiB for arm64 whatever the guest's page size, so a 4K-page
kernel's dump has 64K blocks. Addresses are physical: pfn * block_size.

Opening reads the headers and scans both bitmaps once, a chunk at a time
(:class:`_Bitmap`: never held whole; later lookups read 64 KiB chunks through a
small cache): the 1st for the RAM ranges, the 2nd for a rank index (dumped
pages before each 4096-pfn chunk, 1/64 of the bitmap's size), so the page
descriptor of a pfn is found without scanning; a page is read and decompressed
when asked for. Every size and offset the headers give is checked against the
file (or, flattened, against the records) before it is used, so a corrupt
``max_mapnr_64`` or ``size_note`` is a one-line error, not gigabytes of memory.
A pfn whose bit is set in the 1st bitmap but not the 2nd was excluded by
makedumpfile's dump level (``-d``): reading it raises :class:`PageExcluded`.

Split dumps (``makedumpfile --split OUT1 OUT2 ...``): every part is a complete
kdump file with the same main header, VMCOREINFO/notes and *whole* bitmaps;
its sub-header has ``split = 1`` and the pfn range ``[start_pfn, end_pfn)``
it holds (end exclusive; ``start_pfn_64``/``end_pfn_64`` from header v6), and
its descriptor table lists only the dumped pfns of that range, so the
descriptor of a pfn is its rank counted from ``start_pfn``. The page data
starts where it would in the unsplit file (past a zero gap), which does not
matter here since ``page_desc.offset`` is always followed.
:class:`KdumpSplitDump` opens a set of parts as one dump after checking that
they belong together (same header, bitmaps and notes) and that their ranges
are contiguous, do not overlap and cover ``[0, max_mapnr)``.
"""

import bisect
import os
import struct

from array import array
from collections import OrderedDict

from .base import (PhysicalDump, DumpError, PageExcluded, PageNotInDump, Note, parse_notes,
                   check_extent, MAX_NOTES, MAX_VMCOREINFO)
from .compress import decompress, require, COMPRESSED, method_name
from .flattened import FlatFile, is_flattened
from ..textutil import escape

__all__ = ["KdumpDump", "KdumpSplitDump", "KDUMP_SIGNATURE"]

KDUMP_SIGNATURE = b"KDUMP   "
_HDR = struct.Struct("<8si390s6xqqIiiIIIIIIi")   # through nr_cpus (64-bit layout)
_SUB = struct.Struct("<QiiQQQQQQQQQQQ")           # kdump_sub_header, 64-bit, v6
_PD = struct.Struct("<QIIQ")                      # page_desc
_CHUNK = 4096                                     # pfns per rank-index entry
_BM_CHUNK = 1 << 16                               # bitmap bytes read at a time
_MAX_RANGES = 1 << 16                             # RAM ranges a real 1st bitmap has, at most


def _pfns(start, end):
    """The pfn range [start, end) for messages."""
    return f"pfns {start:#x}-{end - 1:#x}" if end > start else f"no pfns (empty range at {start:#x})"


class _Bitmap:
    """One bitmap of a kdump file (one bit per pfn), read ``_BM_CHUNK`` bytes at a time.

    ``raw(offset, size, what)`` reads the kdump file; ``offset``/``nbytes`` locate
    the bitmap in it. Bits past ``nbytes`` read as 0."""

    def __init__(self, raw, offset, nbytes, what):
        self._raw, self.offset, self.nbytes, self.what = raw, offset, nbytes, what
        self._cache = OrderedDict()

    def _read(self, k):
        start = k * _BM_CHUNK
        return self._raw(self.offset + start, min(_BM_CHUNK, self.nbytes - start), self.what)

    def chunk(self, k) -> bytes:
        c = self._cache.get(k)
        if c is None:
            c = self._cache[k] = self._read(k)
            if len(self._cache) > 64:
                self._cache.popitem(last=False)
        return c

    def chunks(self):
        """(first byte, bytes) of every chunk in order, read past the cache."""
        for k in range(-(-self.nbytes // _BM_CHUNK)):
            yield k * _BM_CHUNK, self._read(k)

    def bit(self, pfn) -> int:
        byte = pfn >> 3
        if pfn < 0 or byte >= self.nbytes:
            return 0
        return (self.chunk(byte // _BM_CHUNK)[byte % _BM_CHUNK] >> (pfn & 7)) & 1

    def bytes_at(self, start, end) -> bytes:
        """Bitmap bytes [start, end), within one chunk."""
        k = start // _BM_CHUNK
        base = k * _BM_CHUNK
        return self.chunk(k)[start - base:end - base]

    def __eq__(self, other):
        if not isinstance(other, _Bitmap) or other.nbytes != self.nbytes:
            return NotImplemented if not isinstance(other, _Bitmap) else False
        return all(a == b for (_, a), (_, b) in zip(self.chunks(), other.chunks()))

    __hash__ = None


def _rank_index(bm):
    """(dumped pages before each _CHUNK-pfn chunk, total) of a 2nd bitmap, one pass."""
    cb = _CHUNK // 8
    rank, total = array("q"), 0
    for _, c in bm.chunks():
        if c.count(0) == len(c):             # all zero: no dumped page in this chunk
            rank.extend([total] * -(-len(c) // cb))
            continue
        for i in range(0, len(c), cb):
            rank.append(total)
            total += int.from_bytes(c[i:i + cb], "little").bit_count()
    return rank, total


def _set_runs(bm, nbits, limit, path):
    """[start, end) pfn runs of set bits of ``bm`` below ``nbits``, in one pass over it."""
    runs, start, prev = [], None, 0
    piece = 4096
    zero, ones = bytes(piece), b"\xff" * piece
    for base, c in bm.chunks():
        for j in range(0, len(c), piece):
            p = c[j:j + piece]
            if p == (ones[:len(p)] if prev else zero[:len(p)]):
                continue
            nb = 8 * len(p)
            x = int.from_bytes(p, "little")
            t = (x ^ ((x << 1) | prev)) & ((1 << nb) - 1)       # bit i: pfn i differs from i-1
            first = 8 * (base + j)
            while t:
                low = t & -t
                pfn = first + low.bit_length() - 1
                t ^= low
                if start is None:
                    start = pfn
                else:
                    runs.append((start, pfn))
                    start = None
                    if len(runs) > limit:
                        raise DumpError(f"corrupt kdump bitmap in {path}: more than {limit} "
                                        f"separate RAM ranges")
            prev = x >> (nb - 1)
    if start is not None:
        runs.append((start, nbits))
    return [(a, min(b, nbits)) for a, b in runs if a < nbits]


class _KdumpBitmaps(PhysicalDump):
    """What a kdump file and a split set share: the two bitmaps (``_bm1``,
    ``_bm2``) and ``max_mapnr`` answer whether a pfn is RAM and was dumped."""

    def page_state(self, paddr: int) -> str:
        pfn = paddr // self.block_size
        if pfn < self.max_mapnr and self._bm2.bit(pfn):
            return "ok"
        if pfn < self.max_mapnr and self._bm1.bit(pfn):
            return "excluded"
        return "absent"

    def is_dumped(self, pfn):
        return bool(self._bm2.bit(pfn))

    def _not_dumped(self, pfn):
        """The PageExcluded / PageNotInDump for a pfn the 2nd bitmap does not have."""
        paddr = pfn * self.block_size
        if pfn < self.max_mapnr and self._bm1.bit(pfn):
            return PageExcluded(f"physical address {paddr:#x}: page excluded from the dump "
                                f"(makedumpfile -d)")
        return PageNotInDump(f"physical address {paddr:#x} is not in the dump")


class KdumpDump(_KdumpBitmaps):
    format = "kdump"

    def __init__(self, path, split_part=False):
        """Open one kdump file. A part of a split dump is refused unless
        ``split_part`` (:class:`KdumpSplitDump` opens the parts together)."""
        super().__init__(path)
        try:
            self._open(split_part)
        except BaseException:
            self.close()
            raise

    def _open(self, split_part):
        head = self.pread(0, min(4096, self.file_size), "header")
        self._flat = None
        self._data_size = self.file_size
        if is_flattened(head):
            self._flat = FlatFile(self._fd, self.path, self.file_size)
            self._data_size = self._flat.size
            self.format = "kdump-flattened"
        h = self._raw(0, _HDR.size, "the main header (disk_dump_header)")
        (sig, version, uts, _tv_sec, _tv_usec, status, block_size, sub_hdr_size, bitmap_blocks,
         max_mapnr, _total, _dev, _written, current_cpu, nr_cpus) = _HDR.unpack(h)
        if sig != KDUMP_SIGNATURE:
            if sig == b"DISKDUMP":
                raise DumpError(f"{self.path}: the old diskdump format is not supported")
            raise DumpError(f"{self.path} is not a kdump-compressed dump")
        if not 1 <= version <= 6:
            raise DumpError(f"{self.path}: unsupported kdump header version {version}")
        if block_size <= 0 or block_size & (block_size - 1) or block_size > 1 << 20:
            raise DumpError(f"corrupt kdump header in {self.path}: block_size {block_size} "
                            f"(at offset 0x1ac) is not a power of two up to 1 MiB")
        if sub_hdr_size < 0 or bitmap_blocks <= 0:
            raise DumpError(f"corrupt kdump header in {self.path}: sub_hdr_size {sub_hdr_size}, "
                            f"bitmap_blocks {bitmap_blocks}")
        self.header_version = version
        self.block_size = block_size
        self.cache_blocks = max(16, (32 << 20) // block_size)
        # escaped: they reach messages and terminals, and a corrupt header can hold anything
        fields = [escape(uts[i * 65:(i + 1) * 65].split(b"\0")[0].decode("ascii", "replace"))
                  for i in range(6)]
        self.utsname = dict(zip(("sysname", "nodename", "release", "version", "machine",
                                 "domainname"), fields))
        self.machine = self.utsname["machine"]
        self.current_cpu = current_cpu
        self.nr_cpus = nr_cpus
        self.status = status
        require(status)          # a missing decompressor: one line now, not one per page later
        self._header = h
        sub = self._raw(block_size, _SUB.size, f"the sub-header (kdump_sub_header at {block_size:#x})")
        (self.phys_base, self.dump_level, split, spfn, epfn, off_vmci, size_vmci, off_note,
         size_note, _oe, _se, spfn64, epfn64, max_mapnr64) = _SUB.unpack(sub)
        if version < 6:
            max_mapnr64 = max_mapnr
        else:
            spfn, epfn = spfn64, epfn64
        if version < 2:
            split = 0
        # bitmaps: checked against the file before max_mapnr sizes anything
        bm_off = (1 + sub_hdr_size) * block_size
        half = bitmap_blocks * block_size // 2
        self._check(bm_off, 2 * half, f"the bitmaps (bitmap_blocks {bitmap_blocks})")
        need = (max_mapnr64 + 7) // 8
        if half < need:
            field = "max_mapnr_64" if version >= 6 else "max_mapnr"
            raise DumpError(f"corrupt kdump header in {self.path}: {field} {max_mapnr64} needs "
                            f"bitmaps of {need} bytes, bitmap_blocks gives {half}")
        self.max_mapnr = max_mapnr64
        #: makedumpfile --split part: this file holds the pfns [start_pfn, end_pfn)
        self.split = bool(split)
        self.start_pfn, self.end_pfn = (spfn, epfn) if split else (0, max_mapnr64)
        if split and not split_part:
            raise DumpError(f"{self.path} is one part of a split dump (makedumpfile --split; "
                            f"it holds {_pfns(spfn, epfn)}): open it together with all the "
                            f"other parts (gdbkd core PART1 PART2 ... VMLINUX)")
        if split and not 0 <= spfn <= epfn <= max_mapnr64:
            raise DumpError(f"corrupt split-dump header in {self.path} (pfns {spfn:#x}-{epfn:#x} "
                            f"of {max_mapnr64:#x})")
        if version >= 4 and size_note:
            self._check(off_note, size_note, "the notes (offset_note/size_note)", MAX_NOTES)
            self.notes = parse_notes(self._raw(off_note, size_note, "the notes"),
                                     f"notes of {self.path}")
        if version >= 3 and size_vmci and not any(n.name == "VMCOREINFO" for n in self.notes):
            self._check(off_vmci, size_vmci, "VMCOREINFO (offset_vmcoreinfo/size_vmcoreinfo)",
                        MAX_VMCOREINFO)
            self.notes.append(Note("VMCOREINFO", 0, self._raw(off_vmci, size_vmci, "VMCOREINFO")))
        self._bm1 = _Bitmap(self._raw, bm_off, need, "the 1st bitmap")
        self._bm2 = _Bitmap(self._raw, bm_off + half, need, "the 2nd bitmap")
        self._pd_off = (1 + sub_hdr_size + bitmap_blocks) * block_size
        # rank index over the 2nd bitmap
        self._rank, total = _rank_index(self._bm2)
        #: dumped pages of the whole dump (the 2nd bitmap)
        self.dumped_pages = total
        # descriptors in this file: the dumped pfns of [start_pfn, end_pfn)
        self._desc_base = self._rank_of(self.start_pfn)
        self.part_pages = self._rank_of(self.end_pfn) - self._desc_base
        if self._pd_off + self.part_pages * _PD.size > self._data_size:
            raise DumpError(f"dump {self.path} is truncated: its page descriptors end at "
                            f"{self._pd_off + self.part_pages * _PD.size}, the file has "
                            f"{self._data_size} bytes")
        self.ranges = [(a * block_size, b * block_size)
                       for a, b in _set_runs(self._bm1, self.max_mapnr, _MAX_RANGES, self.path)]

    def _check(self, offset, size, what, limit=None):
        """A one-line DumpError unless [offset, offset + size) is in the (reassembled) file;
        in a flattened file it must be written by records, not a hole."""
        check_extent(self.path, what, offset, size, self._data_size, limit)
        if self._flat is not None and self._flat.covered(offset, size) != size:
            raise DumpError(f"corrupt flattened dump {self.path}: no record holds {what} "
                            f"(offset {offset:#x}, {size} bytes)")

    def _raw(self, offset, size, what="data"):
        if self._flat is not None:
            return self._flat.pread(offset, size, what)
        return self.pread(offset, size, what)

    def _rank_of(self, pfn):
        """Dumped pages below ``pfn`` (any pfn up to max_mapnr)."""
        return self.dumped_pages if pfn >= self.max_mapnr else self._desc_index(pfn)

    def _desc_index(self, pfn):
        """Rank of ``pfn`` among all dumped pfns (= its descriptor's index in an unsplit file)."""
        c = pfn // _CHUNK
        base = c * (_CHUNK // 8)
        byte = pfn >> 3
        part = self._bm2.bytes_at(base, byte + 1)
        n = self._rank[c] + int.from_bytes(part[:-1], "little").bit_count()
        n += (part[-1] & ((1 << (pfn & 7)) - 1)).bit_count()
        return n

    def _read_block(self, pfn):
        if pfn >= self.max_mapnr or not self._bm2.bit(pfn):
            raise self._not_dumped(pfn)
        if not self.start_pfn <= pfn < self.end_pfn:
            raise DumpError(f"pfn {pfn:#x} is not in {self.path} (this part of the split dump "
                            f"holds {_pfns(self.start_pfn, self.end_pfn)})")
        idx = self._desc_index(pfn) - self._desc_base
        pd_at = self._pd_off + idx * _PD.size
        offset, size, flags, _pflags = _PD.unpack(self._raw(pd_at, _PD.size, "a page descriptor"))
        bs = self.block_size
        if size == 0 or size > 2 * bs:
            raise DumpError(f"corrupt page descriptor for pfn {pfn:#x} in {self.path} (at file "
                            f"offset {pd_at:#x}: size {size})")
        data = self._raw(offset, size, f"the page of pfn {pfn:#x} (descriptor at {pd_at:#x})")
        if flags & COMPRESSED:
            return decompress(flags, data, bs)
        if flags:
            raise DumpError(f"{self.path}: unknown page compression {method_name(flags)} "
                            f"(page descriptor at file offset {pd_at:#x})")
        if size != bs:
            raise DumpError(f"corrupt page descriptor for pfn {pfn:#x} in {self.path} "
                            f"(at file offset {pd_at:#x}: raw page of {size} bytes)")
        return data


class KdumpSplitDump(_KdumpBitmaps):
    """The parts of a ``makedumpfile --split`` dump, read as one dump (see the module docstring).

    Every check is a one-line :class:`DumpError`: a file that is not a split
    part, a part of another dump (header, bitmaps or notes differ), a file given
    twice, overlapping parts, or a missing part (pfns no part holds)."""

    format = "kdump-split"

    def __init__(self, paths):
        paths = [os.fspath(p) for p in paths]
        if not paths:
            raise DumpError("no dump file given")
        # no file of its own: PhysicalDump's state without opening anything
        self._fd = None
        self.paths = paths
        self.path = " ".join(paths)
        self.notes, self.ranges, self._cache, self.machine = [], [], OrderedDict(), None
        self.parts = []
        try:
            self._open(paths)
        except BaseException:
            self.close()
            raise

    def _open(self, paths):
        seen = {}
        for p in paths:
            part = KdumpDump(p, split_part=True)
            self.parts.append(part)
            if not part.split:
                raise DumpError(f"{p} is not part of a split dump (makedumpfile --split), so it "
                                f"cannot be opened together with other files")
            st = os.fstat(part._fd)
            if (st.st_dev, st.st_ino) in seen:
                raise DumpError(f"{p} is given twice (the same file as {seen[st.st_dev, st.st_ino]})")
            seen[st.st_dev, st.st_ino] = p
        first = self.parts[0]
        for part in self.parts[1:]:
            for what, same in (("header", part._header == first._header),
                               ("sub-header", (part.phys_base, part.dump_level)
                                == (first.phys_base, first.dump_level)),
                               ("VMCOREINFO or notes", part.notes == first.notes),
                               ("bitmaps", part._bm1 == first._bm1 and part._bm2 == first._bm2)):
                if not same:
                    raise DumpError(f"{part.path} is not a part of the same dump as {first.path}: "
                                    f"its {what} differs")
            part._bm1, part._bm2 = first._bm1, first._bm2       # one copy is enough
        ordered = sorted(self.parts, key=lambda k: (k.start_pfn, k.end_pfn))
        covered, prev = 0, None
        for part in ordered:
            if part.start_pfn < covered:
                raise DumpError(f"{prev.path} and {part.path} overlap (both hold "
                                f"{_pfns(part.start_pfn, min(covered, part.end_pfn))}): they are "
                                f"not parts of the same makedumpfile --split run")
            if part.start_pfn > covered:
                raise DumpError(self._missing(covered, part.start_pfn))
            if part.end_pfn > part.start_pfn:
                covered, prev = part.end_pfn, part
        if covered < first.max_mapnr:
            raise DumpError(self._missing(covered, first.max_mapnr))
        if sum(p.part_pages for p in self.parts) != first.dumped_pages:
            raise DumpError(f"corrupt split dump {self.path}: its parts describe "
                            f"{sum(p.part_pages for p in self.parts)} pages, the bitmap "
                            f"{first.dumped_pages}")
        # the parts that hold pfns, by start_pfn, for the dispatch in _read_block
        self._holders = [p for p in ordered if p.end_pfn > p.start_pfn]
        self._starts = [p.start_pfn for p in self._holders]
        for attr in ("header_version", "block_size", "cache_blocks", "utsname", "machine",
                     "current_cpu", "nr_cpus", "status", "phys_base", "dump_level", "max_mapnr",
                     "notes", "_bm1", "_bm2", "dumped_pages", "ranges"):
            setattr(self, attr, getattr(first, attr))
        self.file_size = sum(p.file_size for p in self.parts)
        self.format = "kdump-split" if first.format == "kdump" else first.format + "-split"

    def _missing(self, start, end):
        return (f"split dump incomplete: none of the {len(self.paths)} parts given holds "
                f"{_pfns(start, end)}; give every file makedumpfile --split wrote")

    def pread(self, offset, size):
        raise DumpError(f"{self.path}: a split dump has no single file to read from")

    def close(self):
        for p in self.parts:
            p.close()

    def _read_block(self, pfn):
        if pfn >= self.max_mapnr or not self._bm2.bit(pfn):
            raise self._not_dumped(pfn)
        i = bisect.bisect_right(self._starts, pfn) - 1
        return self._holders[i]._read_block(pfn)
