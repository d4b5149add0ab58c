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

from elftools.elf.elffile import ELFFile
from elftools.common.exceptions import ELFError

from .base import PhysicalDump, DumpError, PageExcluded, PageNotInDump, parse_notes

__all__ = ["ElfDump"]


class _Seg:
    __slots__ = ("paddr", "vaddr", "filesz", "memsz", "offset")

    def __init__(self, paddr, vaddr, filesz, memsz, offset):
        self.paddr, self.vaddr, self.filesz, self.memsz, self.offset = paddr, vaddr, filesz, memsz, offset


class ElfDump(PhysicalDump):
    format = "elf"

    def __init__(self, path):
        super().__init__(path)
        try:
            with open(self.path, "rb") as f:
                elf = ELFFile(f)
                if elf["e_type"] != "ET_CORE":
                    raise DumpError(f"{self.path} is an ELF file but not a core dump ({elf['e_type']})")
                if elf.elfclass != 64 or not elf.little_endian:
                    raise DumpError(f"{self.path}: only little-endian ELF64 dumps are supported")
                self.machine = elf["e_machine"]
                phdrs = [seg.header for seg in elf.iter_segments()]
        except ELFError as e:
            raise DumpError(f"corrupt ELF dump {self.path}: {e}")
        segs = []
        self.virtual_segments = []
        for ph in phdrs:
            if ph.p_type == "PT_NOTE":
                if ph.p_offset + ph.p_filesz > self.file_size:
                    raise DumpError(f"dump {self.path} is truncated (notes past the end of file)")
                self.notes += parse_notes(self.pread(ph.p_offset, ph.p_filesz), f"notes of {self.path}")
            elif ph.p_type == "PT_LOAD" and ph.p_memsz:
                segs.append(_Seg(ph.p_paddr, ph.p_vaddr, ph.p_filesz, ph.p_memsz, ph.p_offset))
                if ph.p_vaddr != ph.p_paddr:
                    self.virtual_segments.append((ph.p_vaddr, ph.p_paddr, ph.p_memsz))
        if not segs:
            raise DumpError(f"{self.path} has no memory (no PT_LOAD segment)")
        last = max(s.offset + s.filesz for s in segs)
        if last > self.file_size:
            raise DumpError(f"dump {self.path} is truncated: its segments need {last} bytes, "
                            f"the file has {self.file_size}")
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
