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

Opening reads the headers and the 2nd bitmap only and builds a rank index
(dumped pages before each 4096-pfn chunk), so the page descriptor of a pfn is
found without scanning; a page is read and decompressed when asked for.
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

from collections import OrderedDict

from .base import PhysicalDump, DumpError, PageExcluded, PageNotInDump, parse_notes
from .compress import decompress, COMPRESSED, method_name
from .flattened import FlatFile, is_flattened

__all__ = ["KdumpDump", "KdumpSplitDump", "KDUMP_SIGNATURE"]

KDUMP_SIGNATURE = b"KDUMP   "
_HDR = struct.Struct("<8si390s6xqqIiiIIIIIIi")   # through nr_cpus (64-bit layout)
_SUB = struct.Struct("<QiiQQQQQQQQQQQ")           # kdump_sub_header, 64-bit, v6
_PD = struct.Struct("<QIIQ")                      # page_desc
_CHUNK = 4096                                     # pfns per rank-index entry


def _pfns(start, end):
    """The pfn range [start, end) for messages."""
    return f"pfns {start:#x}-{end - 1:#x}" if end > start else f"no pfns (empty range at {start:#x})"


class _KdumpBitmaps(PhysicalDump):
    """What a kdump file and a split set share: the two bitmaps (``_bm1``,
    ``_bm2``) and ``max_mapnr`` answer whether a pfn is RAM and was dumped."""

    @staticmethod
    def _bit(bm, pfn):
        byte = pfn >> 3
        return byte < len(bm) and (bm[byte] >> (pfn & 7)) & 1

    def page_state(self, paddr: int) -> str:
        pfn = paddr // self.block_size
        if pfn < self.max_mapnr and self._bit(self._bm2, pfn):
            return "ok"
        if pfn < self.max_mapnr and self._bit(self._bm1, pfn):
            return "excluded"
        return "absent"

    def is_dumped(self, pfn):
        return bool(self._bit(self._bm2, pfn))

    def _not_dumped(self, pfn):
        """The PageExcluded / PageNotInDump for a pfn the 2nd bitmap does not have."""
        paddr = pfn * self.block_size
        if pfn < self.max_mapnr and self._bit(self._bm1, pfn):
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
        head = os.pread(self._fd, 4096, 0)
        self._flat = None
        if is_flattened(head):
            self._flat = FlatFile(self._fd, self.path, self.file_size)
            self.format = "kdump-flattened"
        h = self._raw(0, _HDR.size)
        (sig, version, uts, _tv_sec, _tv_usec, status, block_size, sub_hdr_size, bitmap_blocks,
         max_mapnr, _total, _dev, _written, current_cpu, nr_cpus) = _HDR.unpack(h)
        if sig != KDUMP_SIGNATURE:
            if sig == b"DISKDUMP":
                raise DumpError(f"{self.path}: the old diskdump format is not supported")
            raise DumpError(f"{self.path} is not a kdump-compressed dump")
        if not 1 <= version <= 6:
            raise DumpError(f"{self.path}: unsupported kdump header version {version}")
        if block_size <= 0 or block_size & (block_size - 1) or block_size > 1 << 20:
            raise DumpError(f"corrupt kdump header in {self.path} (block size {block_size})")
        self.header_version = version
        self.block_size = block_size
        self.cache_blocks = max(16, (32 << 20) // block_size)
        fields = [uts[i * 65:(i + 1) * 65].split(b"\0")[0].decode("ascii", "replace") for i in range(6)]
        self.utsname = dict(zip(("sysname", "nodename", "release", "version", "machine",
                                 "domainname"), fields))
        self.machine = self.utsname["machine"]
        self.current_cpu = current_cpu
        self.nr_cpus = nr_cpus
        self.status = status
        self._header = h
        sub = self._raw(block_size, _SUB.size)
        (self.phys_base, self.dump_level, split, spfn, epfn, off_vmci, size_vmci, off_note,
         size_note, _oe, _se, spfn64, epfn64, max_mapnr64) = _SUB.unpack(sub)
        if version < 6:
            max_mapnr64 = max_mapnr
        else:
            spfn, epfn = spfn64, epfn64
        if version < 2:
            split = 0
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
            self.notes = parse_notes(self._raw(off_note, size_note), f"notes of {self.path}")
        if version >= 3 and size_vmci and not any(n.name == "VMCOREINFO" for n in self.notes):
            from .base import Note
            self.notes.append(Note("VMCOREINFO", 0, self._raw(off_vmci, size_vmci)))
        # bitmaps
        bm_off = (1 + sub_hdr_size) * block_size
        half = bitmap_blocks * block_size // 2
        need = (self.max_mapnr + 7) // 8
        if half < need:
            raise DumpError(f"corrupt kdump header in {self.path} (bitmap of {half} bytes "
                            f"for {self.max_mapnr} pages)")
        self._bm1 = self._raw(bm_off, need)
        self._bm2 = self._raw(bm_off + half, need)
        self._pd_off = (1 + sub_hdr_size + bitmap_blocks) * block_size
        # rank index over the 2nd bitmap
        cb = _CHUNK // 8
        rank, total = [], 0
        for i in range(0, need, cb):
            rank.append(total)
            total += int.from_bytes(self._bm2[i:i + cb], "little").bit_count()
        self._rank = rank
        #: dumped pages of the whole dump (the 2nd bitmap)
        self.dumped_pages = total
        # descriptors in this file: the dumped pfns of [start_pfn, end_pfn)
        self._desc_base = self._rank_of(self.start_pfn)
        self.part_pages = self._rank_of(self.end_pfn) - self._desc_base
        if not self._flat and self._pd_off + self.part_pages * _PD.size > self.file_size:
            raise DumpError(f"dump {self.path} is truncated: its page descriptors end at "
                            f"{self._pd_off + self.part_pages * _PD.size}, the file has "
                            f"{self.file_size} bytes")
        self.ranges = self._ranges_from(self._bm1)

    def _raw(self, offset, size):
        if self._flat is not None:
            return self._flat.pread(offset, size)
        return self.pread(offset, size)

    def _ranges_from(self, bm):
        rng = []
        bs = self.block_size
        start = None
        # scan by 64-bit words for speed
        nbits = self.max_mapnr
        pfn = 0
        while pfn < nbits:
            byte = pfn >> 3
            if start is None and (pfn & 63) == 0 and bm[byte:byte + 8] == b"\0" * 8:
                pfn += 64
                continue
            if start is not None and (pfn & 63) == 0 and bm[byte:byte + 8] == b"\xff" * 8:
                pfn += 64
                continue
            bit = (bm[byte] >> (pfn & 7)) & 1 if byte < len(bm) else 0
            if bit and start is None:
                start = pfn
            elif not bit and start is not None:
                rng.append((start * bs, pfn * bs))
                start = None
            pfn += 1
        if start is not None:
            rng.append((start * bs, min(pfn, nbits) * bs))
        return rng

    def _rank_of(self, pfn):
        """Dumped pages below ``pfn`` (any pfn up to max_mapnr)."""
        return self.dumped_pages if pfn >= self.max_mapnr else self._desc_index(pfn)

    def _desc_index(self, pfn):
        """Rank of ``pfn`` among all dumped pfns (= its descriptor's index in an unsplit file)."""
        c = pfn // _CHUNK
        base = c * (_CHUNK // 8)
        byte = pfn >> 3
        n = self._rank[c] + int.from_bytes(self._bm2[base:byte], "little").bit_count()
        n += (self._bm2[byte] & ((1 << (pfn & 7)) - 1)).bit_count()
        return n

    def _read_block(self, pfn):
        if pfn >= self.max_mapnr or not self._bit(self._bm2, pfn):
            raise self._not_dumped(pfn)
        if not self.start_pfn <= pfn < self.end_pfn:
            raise DumpError(f"pfn {pfn:#x} is not in {self.path} (this part of the split dump "
                            f"holds {_pfns(self.start_pfn, self.end_pfn)})")
        idx = self._desc_index(pfn) - self._desc_base
        offset, size, flags, _pflags = _PD.unpack(self._raw(self._pd_off + idx * _PD.size, _PD.size))
        bs = self.block_size
        if size == 0 or size > 2 * bs:
            raise DumpError(f"corrupt page descriptor for pfn {pfn:#x} in {self.path}")
        data = self._raw(offset, size)
        if flags & COMPRESSED:
            return decompress(flags, data, bs)
        if flags:
            raise DumpError(f"{self.path}: unknown page compression {method_name(flags)}")
        if size != bs:
            raise DumpError(f"corrupt page descriptor for pfn {pfn:#x} in {self.path} "
                            f"(raw page of {size} bytes)")
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
        if pfn >= self.max_mapnr or not self._bit(self._bm2, pfn):
            raise self._not_dumped(pfn)
        i = bisect.bisect_right(self._starts, pfn) - 1
        return self._holders[i]._read_block(pfn)
