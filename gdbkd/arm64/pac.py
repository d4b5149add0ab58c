"""Pointer-auth signatures stripped from what the stub serves, so gdb's own unwinder works.

An arm64 kernel built with CONFIG_ARM64_PTR_AUTH_KERNEL (Debian's are) and run
on a CPU with pointer authentication signs return addresses before saving them:
the PAC sits in the address bits above the VA size (``GENMASK(63, VA_BITS)``
minus bit 55, which still selects the kernel half). gdb 13 cannot remove a PAC
from a kernel address (its ``pauth`` target feature only covers user space), so
its DWARF unwinder stops at the first signed return address.

The kernel publishes the mask in VMCOREINFO as ``NUMBER(KERNELPACMASK)``
(arch/arm64/kernel/crash_core.c, "arm64: crash_core: Export KERNELPACMASK in
vmcoreinfo", v5.7 era; present in the 6.1 and 6.12 dumps tested here; 0 when
the CPU has no pointer auth; absent on older kernels, which then get no stripping). With a non-zero mask the stub
replaces, in memory it serves and in the registers of every thread, each
8-byte-aligned word that is a signed pointer into kernel code (the image or
the module area) by the stripped pointer: ``word | mask``. Nothing else
changes; ``monitor pac raw`` turns it off to see the signed words as stored.
kd's in-process dump reader (gdbkd/model/reader.py ``DumpReader``) strips the
same words, so this lives here, below both the stub and target/.

:func:`strip_pac` strips one pointer by the VA width instead (``GENMASK(63, VA_BITS)``
for the kernel half): kd's unwinders in gdb (gdbkd/kernel/vabits.py gives the width)
use it for return addresses read from any target, live ones too.
"""

__all__ = ["PacStripper", "strip_pac"]

_M64 = (1 << 64) - 1
_BIT55 = 1 << 55


def strip_pac(v: int, va_bits: int) -> int:
    """V without pointer-authentication bits for a kernel of VA_BITS: bit 55 selects the
    half of the address space, the bits above VA_BITS become ones (kernel) or zeros."""
    if v >> 48 == 0xFFFF and va_bits <= 48:      # an unsigned kernel pointer: nothing to strip
        return v
    mask = (1 << va_bits) - 1
    if v & _BIT55:
        return (v | ~mask) & _M64
    return v & mask


class PacStripper:
    def __init__(self, mask: int, code_ranges):
        self.mask = mask & _M64 & ~_BIT55
        self.ranges = [(lo, hi) for lo, hi in code_ranges if lo is not None and hi is not None and lo < hi]
        self.enabled = bool(self.mask and self.ranges)

    @classmethod
    def for_dump(cls, dump):
        """From the dump's VMCOREINFO (mask, module area) and the kernel image's range."""
        vi = getattr(dump, "vmcoreinfo", None) or {}
        try:
            mask = int(vi.get("NUMBER(KERNELPACMASK)", "0"), 0)
        except ValueError:
            mask = 0
        ranges = []
        mmu = getattr(dump, "mmu", None)
        if mmu is not None and getattr(mmu, "image_range", None):
            ranges.append(tuple(mmu.image_range))
        try:
            ranges.append((int(vi["NUMBER(MODULES_VADDR)"], 0), int(vi["NUMBER(MODULES_END)"], 0)))
        except (KeyError, ValueError):
            pass
        return cls(mask, ranges)

    def strip(self, v: int):
        """The stripped pointer if V is a signed kernel code pointer, else V."""
        if not v & _BIT55 or (v | self.mask) == v:
            return v
        s = v | self.mask
        for lo, hi in self.ranges:
            if lo <= s < hi:
                return s
        return v

    def strip_bytes(self, addr: int, data: bytes) -> bytes:
        """DATA read at ADDR with every aligned signed code pointer stripped."""
        if not self.enabled or len(data) < 8:
            return data
        first = (-addr) & 7                 # bytes before the first 8-byte-aligned word
        n = (len(data) - first) // 8
        if n <= 0:
            return data
        words = memoryview(data)[first:first + 8 * n].cast("Q")
        out = None
        mask = self.mask
        for i, w in enumerate(words):
            if w & _BIT55 and (w | mask) != w:
                s = self.strip(w)
                if s != w:
                    if out is None:
                        out = bytearray(data)
                    out[first + 8 * i:first + 8 * i + 8] = s.to_bytes(8, "little")
        return bytes(out) if out is not None else data
