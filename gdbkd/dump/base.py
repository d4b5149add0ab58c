"""What every dump format gives: physical memory by address, and ELF notes.

A *physical dump* knows nothing about virtual addresses or the kernel: it maps
physical addresses to bytes (read lazily, one page or block at a time) and
carries the notes the dumper wrote (VMCOREINFO, one NT_PRSTATUS per CPU).
Translation and the kernel's view live in :mod:`gdbkd.arm64` and
:mod:`gdbkd.target`.
"""

import os
import stat
import struct
from collections import OrderedDict
from dataclasses import dataclass

from ..errors import GdbkdError

__all__ = ["DumpError", "PageExcluded", "PageNotInDump", "Note", "PhysicalDump",
           "parse_notes", "check_extent", "NT_PRSTATUS", "NT_FPREGSET", "NT_VMCOREINFO_NAME",
           "MAX_NOTES", "MAX_VMCOREINFO", "MAX_READ"]

#: Limits on sizes a dump's headers give, checked before anything is allocated.
#: A note area holds VMCOREINFO (at most one page, kernel/crash_core.c) and one
#: NT_PRSTATUS (392 bytes) + NT_FPREGSET (528) per CPU: 4096 CPUs need ~4 MiB.
MAX_NOTES = 64 << 20
MAX_VMCOREINFO = 1 << 20
#: the largest single read of the dump file gdbkd ever makes (a bitmap chunk, a
#: page of up to 2 * 1 MiB, a note area)
MAX_READ = MAX_NOTES

NT_PRSTATUS = 1
NT_FPREGSET = 2
NT_VMCOREINFO_NAME = "VMCOREINFO"


class DumpError(GdbkdError):
    """A dump that cannot be read (corrupt, truncated, unsupported)."""


class PageExcluded(DumpError):
    """The page was RAM but makedumpfile left it out (its -d dump level)."""


class PageNotInDump(DumpError):
    """The physical address is outside every memory range of the dump."""


@dataclass(frozen=True)
class Note:
    name: str
    type: int
    desc: bytes


def check_extent(path, what, offset, size, file_size, limit=None):
    """Raise a one-line DumpError unless [offset, offset + size) lies in a file of
    ``file_size`` bytes and ``size`` is at most ``limit``; ``what`` names the field."""
    if offset < 0 or size < 0:
        raise DumpError(f"corrupt dump {path}: {what} has a negative offset or size "
                        f"(offset {offset}, size {size})")
    if limit is not None and size > limit:
        raise DumpError(f"corrupt dump {path}: {what} claims {size} bytes (at offset {offset:#x}), "
                        f"more than the {limit} a real dump has")
    if offset + size > file_size:
        raise DumpError(f"dump {path} is truncated or corrupt: {what} at offset {offset:#x} "
                        f"needs {offset + size} bytes, the file has {file_size}")


def parse_notes(data: bytes, what="notes"):
    """Split an ELF64 note area (namesz, descsz, type, name, desc; 4-byte aligned)."""
    notes = []
    off = 0
    while off + 12 <= len(data):
        namesz, descsz, ntype = struct.unpack_from("<III", data, off)
        if namesz == 0 and descsz == 0 and ntype == 0:
            break
        off += 12
        nend = off + namesz
        dstart = off + ((namesz + 3) & ~3)
        dend = dstart + descsz
        if dend > len(data):
            raise DumpError(f"corrupt {what}: a note runs past the end of its area")
        name = data[off:nend].rstrip(b"\0").decode("ascii", "replace")
        notes.append(Note(name, ntype, bytes(data[dstart:dend])))
        off = dstart + ((descsz + 3) & ~3)
    return notes


def open_regular(path) -> int:
    """A read-only descriptor of the regular file ``path``, or a one-line DumpError.

    Opened O_NONBLOCK, so a FIFO or a device given by mistake is refused instead
    of blocking the open until a writer comes."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as e:
        raise DumpError(f"cannot open dump {path}: {e.strerror}")
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise DumpError(f"{path} is not a regular file (a dump must be a file gdbkd can seek in)")
    os.set_blocking(fd, True)
    return fd


class PhysicalDump:
    """Base class: subclasses fill ``notes``, ``ranges``, ``block_size`` and ``_read_block``."""

    #: short format name shown to users ("elf", "kdump", "kdump-flattened")
    format = "?"
    #: size of the unit the format stores and compresses (a page, or QEMU's 64K block)
    block_size = 4096
    #: decompressed blocks kept in memory
    cache_blocks = 512

    def __init__(self, path):
        self.path = str(path)
        self._fd = open_regular(self.path)
        self.file_size = os.fstat(self._fd).st_size
        self.notes = []
        #: sorted, non-overlapping (start, end) physical ranges the dump describes
        self.ranges = []
        self._cache = OrderedDict()
        #: name of the ELF machine or utsname.machine, when the format records one
        self.machine = None

    # -- file access -------------------------------------------------------------
    def pread(self, offset: int, size: int, what="data") -> bytes:
        """Read exactly ``size`` bytes of the underlying file (or fail: truncated);
        ``what`` names the field the offset came from, for the message."""
        check_extent(self.path, what, offset, size, self.file_size, MAX_READ)
        data = os.pread(self._fd, size, offset)
        if len(data) != size:
            raise DumpError(f"dump {self.path} is truncated: needs {offset + size} bytes, "
                            f"has {self.file_size}")
        return data

    def close(self):
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- notes --------------------------------------------------------------------
    @property
    def vmcoreinfo_raw(self):
        for n in self.notes:
            if n.name == NT_VMCOREINFO_NAME:
                return n.desc
        return None

    def prstatus_notes(self):
        return [n for n in self.notes if n.name == "CORE" and n.type == NT_PRSTATUS]

    # -- memory -------------------------------------------------------------------
    def _read_block(self, blockno: int) -> bytes:
        """Return the ``block_size`` bytes of block ``blockno`` (phys = blockno * block_size)."""
        raise NotImplementedError

    def block(self, blockno: int) -> bytes:
        b = self._cache.get(blockno)
        if b is not None:
            self._cache.move_to_end(blockno)
            return b
        b = self._read_block(blockno)
        self._cache[blockno] = b
        if len(self._cache) > self.cache_blocks:
            self._cache.popitem(last=False)
        return b

    def read_phys(self, paddr: int, size: int) -> bytes:
        """Bytes at physical ``paddr``; raises PageExcluded / PageNotInDump, never pads with zeros."""
        bs = self.block_size
        out = []
        while size > 0:
            blk, off = divmod(paddr, bs)
            n = min(size, bs - off)
            try:
                data = self.block(blk)
            except PageExcluded:
                raise PageExcluded(f"physical address {paddr:#x}: page excluded from the dump "
                                   f"(makedumpfile -d)") from None
            except PageNotInDump:
                raise PageNotInDump(f"physical address {paddr:#x} is not in the dump") from None
            out.append(data[off:off + n])
            paddr += n
            size -= n
        return b"".join(out)

    def page_state(self, paddr: int) -> str:
        """'ok', 'excluded' or 'absent' for the byte at ``paddr``, without reading page data."""
        return "ok" if self.has_phys(paddr) else "absent"

    def has_phys(self, paddr: int) -> bool:
        import bisect
        i = bisect.bisect_right(self.ranges, (paddr, float("inf"))) - 1
        return i >= 0 and self.ranges[i][0] <= paddr < self.ranges[i][1]
