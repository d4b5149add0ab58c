"""makedumpfile's *flattened* format, read in place (no ``makedumpfile -R``).

The flattened format is what makedumpfile writes to a pipe (``-F``) and what
QEMU's ``dump-guest-memory`` writes for ``kdump-*`` formats: a 4096-byte header
(signature ``makedumpfile``, type 1, version 1, big-endian) and then records
``{int64 offset; int64 size}`` (big-endian) each followed by ``size`` bytes that
belong at ``offset`` of the reassembled kdump file, until a record whose
offset is -1. Records may come in any order; where they overlap the later one
wins, as it would with ``makedumpfile -R`` (which seeks and writes in order).

:class:`FlatFile` scans the record headers once (seeking over the data, never
reading it) and then serves ``pread`` of the reassembled file from the index.
Bytes no record covers read as zeros, as in a reassembled sparse file.
"""

import bisect
import os
import struct

from .base import DumpError

__all__ = ["FlatFile", "is_flattened", "MDF_SIGNATURE"]

MDF_SIGNATURE = b"makedumpfile"
MDF_HEADER_SIZE = 4096


def is_flattened(head: bytes) -> bool:
    return head[:16].rstrip(b"\0") == MDF_SIGNATURE


class FlatFile:
    """Random access to the reassembled view of a flattened dump."""

    def __init__(self, fd: int, path: str, file_size: int):
        self.fd, self.path = fd, path
        hdr = os.pread(fd, 32, 0)
        if len(hdr) < 32 or not is_flattened(hdr):
            raise DumpError(f"{path} is not a flattened makedumpfile dump")
        ftype, version = struct.unpack_from(">qq", hdr, 16)
        if ftype != 1:
            raise DumpError(f"{path}: unknown flattened dump type {ftype}")
        pos = MDF_HEADER_SIZE
        recs = []            # (offset, size, filepos) in file order
        ended = False
        while pos + 16 <= file_size:
            off, size = struct.unpack(">qq", os.pread(fd, 16, pos))
            if off == -1:
                ended = True
                break
            if off < 0 or size < 0 or pos + 16 + size > file_size:
                raise DumpError(f"dump {path} is truncated or corrupt (flattened record at "
                                f"file offset {pos})")
            if size:
                recs.append((off, size, pos + 16))
            pos += 16 + size
        if not ended:
            raise DumpError(f"dump {path} is truncated (no end marker after the last "
                            f"flattened record)")
        self._build(recs)

    def _build(self, recs):
        """Index the records as sorted disjoint extents (start, end, filepos of start)."""
        ordered = all(recs[i][0] + recs[i][1] <= recs[i + 1][0] for i in range(len(recs) - 1))
        if ordered:
            ext = [(off, off + size, fp) for off, size, fp in recs]
        else:
            # Later records win: insert from the last one back, keeping only the
            # parts that no later record already covers.
            starts, ext = [], []
            for off, size, fp in reversed(recs):
                end = off + size
                i = max(bisect.bisect_right(starts, off) - 1, 0)
                cur = off
                pieces = []
                while cur < end:
                    while i < len(ext) and ext[i][1] <= cur:
                        i += 1
                    if i < len(ext) and ext[i][0] <= cur:
                        cur = ext[i][1]
                        continue
                    nxt = min(end, ext[i][0]) if i < len(ext) else end
                    pieces.append((cur, nxt, fp + (cur - off)))
                    cur = nxt
                for piece in pieces:
                    j = bisect.bisect_left(starts, piece[0])
                    starts.insert(j, piece[0])
                    ext.insert(j, piece)
        self._starts = [x[0] for x in ext]
        self._ext = ext
        self.size = max((x[1] for x in ext), default=0)
        self.records = len(recs)

    def pread(self, offset: int, size: int) -> bytes:
        out = []
        i = bisect.bisect_right(self._starts, offset) - 1
        while size > 0:
            if i >= 0 and i < len(self._ext) and self._ext[i][0] <= offset < self._ext[i][1]:
                s, e, p = self._ext[i]
                n = min(size, e - offset)
                data = os.pread(self.fd, n, p + (offset - s))
                if len(data) != n:
                    raise DumpError(f"dump {self.path} is truncated")
                out.append(data)
            else:
                nxt = self._starts[i + 1] if i + 1 < len(self._starts) else offset + size
                n = min(size, max(nxt - offset, 1))
                out.append(b"\0" * n)
            offset += n
            size -= n
            if i + 1 < len(self._ext) and offset >= self._ext[i + 1][0]:
                i += 1
        return b"".join(out)
