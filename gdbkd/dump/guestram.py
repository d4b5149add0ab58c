"""A live guest's RAM, shared with QEMU: physical memory at memory speed while it is stopped.

``gdbkd run`` gives QEMU its RAM as a memfd (``-object memory-backend-file,
mem-path=/proc/self/fd/N,share=on`` + ``-machine memory-backend=``): the same
pages the guest uses, readable by gdbkd's processes that hold the descriptor
(the proxy, gdb). No file exists anywhere, so nothing is left behind when a
process is killed. QEMU's ``virt`` board puts RAM at guest physical 0x40000000.

:class:`GuestRam` is a physical-memory source with the interface the arm64
walker (gdbkd/arm64/mmu.py) reads dumps through: ``read_phys(pa, n)`` and
``ranges``. Reads are only consistent while every vCPU is stopped.
"""

import mmap
import os

from .base import DumpError

__all__ = ["GuestRam", "VIRT_RAM_BASE", "parse_ram_spec"]

VIRT_RAM_BASE = 0x40000000


def parse_ram_spec(spec: str):
    """``PATH[@BASE]`` → (path, base)."""
    path, _, base = spec.partition("@")
    return path, int(base, 0) if base else VIRT_RAM_BASE


class GuestRam:
    def __init__(self, path, base=VIRT_RAM_BASE):
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as e:
            raise DumpError(f"cannot open the guest's RAM {path}: {e.strerror}")
        try:
            size = os.fstat(fd).st_size
            if size <= 0:
                raise DumpError(f"the guest's RAM {path} is empty")
            self.map = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ)
        finally:
            os.close(fd)
        self.base = base
        self.size = size
        self.ranges = [(base, base + size)]

    def read_phys(self, pa: int, n: int) -> bytes:
        off = pa - self.base
        if off < 0 or off + n > self.size:
            raise DumpError(f"physical address {pa:#x} is outside the guest's RAM")
        return self.map[off:off + n]

    def close(self):
        self.map.close()
