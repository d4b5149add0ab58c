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
"""

import os
import struct

from .base import PhysicalDump, DumpError, PageExcluded, PageNotInDump, parse_notes
from .compress import decompress, COMPRESSED, method_name
from .flattened import FlatFile, is_flattened

__all__ = ["KdumpDump", "KDUMP_SIGNATURE"]

KDUMP_SIGNATURE = b"KDUMP   "
_HDR = struct.Struct("<8si390s6xqqIiiIIIIIIi")   # through nr_cpus (64-bit layout)
_SUB = struct.Struct("<QiiQQQQQQQQQQQ")           # kdump_sub_header, 64-bit, v6
_PD = struct.Struct("<QIIQ")                      # page_desc
_CHUNK = 4096                                     # pfns per rank-index entry


class KdumpDump(PhysicalDump):
    format = "kdump"

    def __init__(self, path):
        super().__init__(path)
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
        sub = self._raw(block_size, _SUB.size)
        (self.phys_base, self.dump_level, split, _spfn, _epfn, off_vmci, size_vmci, off_note,
         size_note, _oe, _se, _spfn64, _epfn64, max_mapnr64) = _SUB.unpack(sub)
        if version < 6:
            max_mapnr64 = max_mapnr
        if version < 2:
            split = 0
        if split:
            raise DumpError(f"{self.path} is one part of a split dump (makedumpfile --split): "
                            f"reassemble it with makedumpfile --reassemble first")
        self.max_mapnr = max_mapnr64
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
        self.dumped_pages = total
        if not self._flat and self._pd_off + total * _PD.size > self.file_size:
            raise DumpError(f"dump {self.path} is truncated: its page descriptors end at "
                            f"{self._pd_off + total * _PD.size}, the file has {self.file_size} bytes")
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

    def _desc_index(self, pfn):
        c = pfn // _CHUNK
        base = c * (_CHUNK // 8)
        byte = pfn >> 3
        n = self._rank[c] + int.from_bytes(self._bm2[base:byte], "little").bit_count()
        n += (self._bm2[byte] & ((1 << (pfn & 7)) - 1)).bit_count()
        return n

    def _read_block(self, pfn):
        if pfn >= self.max_mapnr or not self._bit(self._bm2, pfn):
            paddr = pfn * self.block_size
            if pfn < self.max_mapnr and self._bit(self._bm1, pfn):
                raise PageExcluded(f"physical address {paddr:#x}: page excluded from the dump "
                                   f"(makedumpfile -d)")
            raise PageNotInDump(f"physical address {paddr:#x} is not in the dump")
        idx = self._desc_index(pfn)
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
