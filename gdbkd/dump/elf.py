"""ELF vmcores: /proc/vmcore copies, ``makedumpfile -E`` output, QEMU ``dump-guest-memory``.

- QEMU (``format: elf``): PT_LOADs with ``p_vaddr == p_paddr`` (physical only),
  one NT_PRSTATUS (+ NT_FPREGSET) per vCPU in CPU order, and a VMCOREINFO note
  when the guest published one through the vmcoreinfo device (qemu_fw_cfg).
- /proc/vmcore as the kdump kernel exposes it: PT_LOADs with the kernel's
  virtual address in ``p_vaddr`` and the physical one in ``p_paddr`` (the
  kernel image and the linear map of each RAM range), NT_PRSTATUS of the CPUs
  stopped at the crash (``pr_pid`` = pid of the task running there), VMCOREINFO.
- ``makedumpfile -E``: like /proc/vmcore, with excluded pages cut out of the
  segments; a segment whose ``p_memsz`` exceeds ``p_filesz`` has its tail
  excluded. Those tails are reported as excluded, not read as zeros.

Only ``p_paddr`` is used for memory: virtual addresses are translated with the
kernel's own page tables (:mod:`gdbkd.arm64.mmu`), which also covers vmalloc
and modules that no PT_LOAD names.
"""

import bisect
import os
import struct

from .base import (PhysicalDump, DumpError, PageExcluded, PageNotInDump, parse_notes, check_extent,
                   MAX_NOTES)

__all__ = ["ElfDump"]

_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_PHDR = struct.Struct("<IIQQQQQQ")
_PT_LOAD, _PT_NOTE = 1, 4
_PN_XNUM = 0xffff
_EM_AARCH64 = 183
_ET_NAMES = {0: "ET_NONE", 1: "ET_REL", 2: "ET_EXEC", 3: "ET_DYN", 4: "ET_CORE"}
M64 = (1 << 64) - 1


class _Seg:
    __slots__ = ("paddr", "vaddr", "filesz", "memsz", "offset")

    def __init__(self, paddr, vaddr, filesz, memsz, offset):
        self.paddr, self.vaddr, self.filesz, self.memsz, self.offset = paddr, vaddr, filesz, memsz, offset


class ElfDump(PhysicalDump):
    format = "elf"
    #: read_phys keeps no state (one pread per segment piece): threads may read at once
    concurrent_reads = True

    def __init__(self, path):
        super().__init__(path)
        try:
            self._open()
        except BaseException:
            self.close()
            raise

    def _phdrs(self):
        """The program headers, every offset and count checked against the file."""
        if self.file_size < _EHDR.size:
            raise DumpError(f"dump {self.path} is truncated: {self.file_size} bytes, "
                            f"less than an ELF header")
        (ident, e_type, machine, _ver, _entry, phoff, shoff, _flags, _ehsize, phentsize,
         phnum, _shentsize, _shnum, _shstrndx) = _EHDR.unpack(self.pread(0, _EHDR.size, "ELF header"))
        if ident[:4] != b"\x7fELF":
            raise DumpError(f"{self.path} is not an ELF file")
        if ident[4] != 2 or ident[5] != 1:
            raise DumpError(f"{self.path}: only little-endian ELF64 dumps are supported")
        if e_type != 4:
            raise DumpError(f"{self.path} is an ELF file but not a core dump "
                            f"({_ET_NAMES.get(e_type, e_type)})")
        self.machine = "EM_AARCH64" if machine == _EM_AARCH64 else machine
        if phnum == _PN_XNUM:        # more than 65534 segments: the count is section 0's sh_info
            if shoff < _EHDR.size:
                raise DumpError(f"corrupt ELF dump {self.path}: e_phnum is PN_XNUM but e_shoff "
                                f"{shoff:#x} gives no section header to hold the count")
            phnum = struct.unpack("<I", self.pread(shoff + 44, 4, "ELF e_shoff (PN_XNUM count)"))[0]
        if phentsize != _PHDR.size:
            raise DumpError(f"corrupt ELF dump {self.path}: e_phentsize {phentsize}, "
                            f"expected {_PHDR.size}")
        check_extent(self.path, f"ELF program headers (e_phoff {phoff:#x}, e_phnum {phnum})",
                     phoff, phnum * _PHDR.size, self.file_size)
        table = self.pread(phoff, phnum * _PHDR.size, "ELF program headers") if phnum else b""
        return [_PHDR.unpack_from(table, i * _PHDR.size) for i in range(phnum)]

    def _open(self):
        segs = []
        self.virtual_segments = []
        note_bytes = 0
        for i, (ptype, _pf, offset, vaddr, paddr, filesz, memsz, _align) in enumerate(self._phdrs()):
            if ptype == _PT_NOTE:
                note_bytes += filesz
                what = f"PT_NOTE (program header {i})"
                check_extent(self.path, what, offset, filesz, self.file_size)
                check_extent(self.path, "the notes of all PT_NOTEs", 0, note_bytes, note_bytes, MAX_NOTES)
                self.notes += parse_notes(self.pread(offset, filesz, what), f"notes of {self.path}")
            elif ptype == _PT_LOAD and memsz:
                filesz = min(filesz, memsz)
                if paddr + memsz > M64 + 1:
                    raise DumpError(f"corrupt ELF dump {self.path}: PT_LOAD (program header {i}) "
                                    f"p_paddr {paddr:#x} + p_memsz {memsz:#x} wraps past 2^64")
                if offset + filesz > self.file_size:
                    raise DumpError(f"dump {self.path} is truncated: PT_LOAD (program header {i}) "
                                    f"at p_offset {offset:#x} needs {offset + filesz} bytes, the "
                                    f"file has {self.file_size}")
                segs.append(_Seg(paddr, vaddr, filesz, memsz, offset))
                if vaddr != paddr:
                    self.virtual_segments.append((vaddr, paddr, memsz))
        if not segs:
            raise DumpError(f"{self.path} has no memory (no PT_LOAD segment)")
        # /proc/vmcore maps the kernel image's RAM twice (image + linear map):
        # keep one segment per physical range, the first one wins.
        segs.sort(key=lambda s: (s.paddr, -s.memsz))
        self._segs = []
        end = -1
        for s in segs:
            if s.paddr + s.memsz <= end:
                continue
            if s.paddr < end:      # partial overlap: keep the new tail only
                cut = end - s.paddr
                s = _Seg(end, s.vaddr + cut, max(0, s.filesz - cut), s.memsz - cut, s.offset + cut)
            self._segs.append(s)
            end = s.paddr + s.memsz
        self._starts = [s.paddr for s in self._segs]
        rng = []
        for s in self._segs:
            if rng and rng[-1][1] == s.paddr:
                rng[-1] = (rng[-1][0], s.paddr + s.memsz)
            else:
                rng.append((s.paddr, s.paddr + s.memsz))
        self.ranges = rng
        #: True when some PT_LOAD gives a virtual address (kdump / makedumpfile -E)
        self.has_virtual = bool(self.virtual_segments)

    def _seg(self, paddr):
        i = bisect.bisect_right(self._starts, paddr) - 1
        if i >= 0:
            s = self._segs[i]
            if paddr < s.paddr + s.memsz:
                return s
        return None

    def page_state(self, paddr: int) -> str:
        s = self._seg(paddr)
        if s is None:
            return "absent"
        return "ok" if paddr - s.paddr < s.filesz else "excluded"

    def direct(self, paddr: int, size: int):
        """``size`` bytes at ``paddr`` when one segment's file data holds them all (one
        pread, no per-page steps: a kd walk over 10,000 task_structs makes 20,000 such
        reads), else None: the caller takes :meth:`read_phys`, which says why a range
        cannot be read. (A read-only map of the file would save the system call but
        count every page touched in the process's RSS.)"""
        i = bisect.bisect_right(self._starts, paddr) - 1
        if i < 0:
            return None
        s = self._segs[i]
        off = paddr - s.paddr
        if off + size > s.filesz:
            return None
        data = os.pread(self._fd, size, s.offset + off)
        return data if len(data) == size else None       # a truncated file: read_phys says so

    def read_phys(self, paddr: int, size: int) -> bytes:
        # ELF data is stored plainly: read straight from the file, no block cache.
        out = []
        while size > 0:
            s = self._seg(paddr)
            if s is None:
                raise PageNotInDump(f"physical address {paddr:#x} is not in the dump")
            off = paddr - s.paddr
            if off >= s.filesz:
                raise PageExcluded(f"physical address {paddr:#x}: page excluded from the dump "
                                   f"(makedumpfile -d)")
            n = min(size, s.filesz - off)
            out.append(self.pread(s.offset + off, n))
            paddr += n
            size -= n
        return b"".join(out)
