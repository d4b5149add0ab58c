"""arm64 kernel virtual → physical translation over a dump's physical memory.

The ground truth is the kernel's own page tables: ``swapper_pg_dir`` (TTBR1)
walked the way the MMU does. Two ranges are fast-pathed with arithmetic, each
only after a page-table walk has confirmed the formula on the dump itself:

- the kernel image: ``pa = va - kimage_voffset`` (``NUMBER(kimage_voffset)``,
  which arm64 adds to VMCOREINFO since the kernel image moved out of the linear
  map in v4.6; arch/arm64/kernel/crash_core.c);
- the linear map: ``pa = va - PAGE_OFFSET + PHYS_OFFSET`` with
  ``PAGE_OFFSET = -(1 << VA_BITS)`` since v5.4 (commit 14c127c957c1 "arm64: mm:
  Flip kernel VA space": linear map in the lower half of the kernel range),
  ``PAGE_OFFSET = -(1 << (VA_BITS - 1))`` and ``pa = (va & ~PAGE_OFFSET) +
  PHYS_OFFSET`` before it. ``PHYS_OFFSET`` is ``memstart_addr``
  (``NUMBER(PHYS_OFFSET)``), which linear-map randomization makes "negative".

Geometry: granule from ``PAGESIZE`` (4K/16K/64K), VA width from VMCOREINFO.
Since v5.4 a kernel configured for 52-bit VAs on 48-bit hardware keeps
swapper_pg_dir laid out for 52 bits with 64K pages (TTBR1 is offset instead,
commit c812026c54cf), so ``VA_BITS`` is used for the walk; with 4K/16K pages
and LPA2 (v6.9+) the top level is folded at run time instead, so the walk uses
``64 - TCR_EL1_T1SZ`` (``NUMBER(TCR_EL1_T1SZ)``, v5.12+) there. Levels =
ceil((va_bits - page_shift) / (page_shift - 3)): 39-bit/4K → 3, 48-bit/4K → 4,
52-bit/4K (LPA2) → 5, 42-bit/64K → 2, 48/52-bit/64K → 3, 47-bit/16K → 3.

Descriptor output address: bits [47:page_shift]; with 64K pages bits [15:12]
hold PA[51:48] (FEAT_LPA); with LPA2 (4K/16K, 52-bit) bits [49:page_shift]
and bits [9:8] hold PA[51:50].
"""

import struct

from ..errors import GdbkdError
from ..dump.base import DumpError
from ..dump.vmcoreinfo import vmci_int, vmci_number, vmci_symbol

__all__ = ["Arm64Mmu", "AddressNotMapped", "mmu_from_vmcoreinfo"]

_U64 = struct.Struct("<Q")
M64 = (1 << 64) - 1


class AddressNotMapped(GdbkdError):
    """The kernel page tables have no valid entry for the virtual address."""


class Arm64Mmu:
    def __init__(self, phys, *, page_size, va_bits, pgd_pa, kimage_voffset=None,
                 image_range=None, phys_offset=None, flipped=True, lpa2=False):
        """``phys`` has ``read_phys(pa, n)``; ``image_range`` is the runtime [start, end) of the image."""
        self.phys = phys
        if page_size not in (4096, 16384, 65536):
            raise DumpError(f"unsupported arm64 page size {page_size}")
        self.page_size = page_size
        self.page_shift = page_size.bit_length() - 1
        if not self.page_shift < va_bits <= 52:
            raise DumpError(f"unsupported arm64 VA width {va_bits}")
        self.va_bits = va_bits
        self.pgd_pa = pgd_pa
        bits_per_level = self.page_shift - 3
        self.levels = -(-(va_bits - self.page_shift) // bits_per_level)
        self.bits_per_level = bits_per_level
        self.lpa2 = lpa2
        if page_size == 65536:
            self._oa = lambda d: (d & 0x0000ffffffff0000) | ((d >> 12) & 0xf) << 48
        elif lpa2:
            low = ((1 << 50) - 1) & ~(page_size - 1)
            self._oa = lambda d: (d & low) | ((d >> 8) & 3) << 50
        else:
            low = 0x0000ffffffffffff & ~(page_size - 1)
            self._oa = lambda d: d & low
        self.kimage_voffset = kimage_voffset
        self.image_range = image_range if kimage_voffset is not None else None
        self.phys_offset = phys_offset
        self.flipped = flipped
        self.linear_range = None     # (start, end) VA, set by enable_linear_fastpath()
        self._tlb = {}
        self.walks = 0

    # -- page-table walk -----------------------------------------------------------
    def walk(self, va: int, trace=None, pgd_pa=None):
        """Return (pa, mapping size) for ``va`` from swapper_pg_dir, or raise AddressNotMapped.

        ``trace``: a list to which each level's ``(level, entry address, index,
        descriptor)`` is appended (``kd vtop``). ``pgd_pa``: walk this top-level table
        instead (a process's, for user addresses)."""
        va &= M64
        if pgd_pa is None and va >> self.va_bits != (M64 >> self.va_bits):
            raise AddressNotMapped(f"address {va:#x} is not a kernel virtual address "
                                   f"({self.va_bits}-bit VA)")
        if pgd_pa is not None and va >> self.va_bits not in (0, M64 >> self.va_bits):
            raise AddressNotMapped(f"address {va:#x} is outside the {self.va_bits}-bit VA ranges")
        self.walks += 1
        table = self.pgd_pa if pgd_pa is None else pgd_pa
        ps, bpl = self.page_shift, self.bits_per_level
        for level in range(self.levels, 0, -1):
            shift = ps + bpl * (level - 1)
            if level == self.levels:
                idx = (va >> shift) & ((1 << (self.va_bits - shift)) - 1)
            else:
                idx = (va >> shift) & ((1 << bpl) - 1)
            try:
                desc = _U64.unpack(self.phys.read_phys(table + 8 * idx, 8))[0]
            except DumpError as e:
                raise AddressNotMapped(f"address {va:#x}: page table at {table:#x} unreadable ({e})")
            if trace is not None:
                trace.append((level, table + 8 * idx, idx, desc))
            kind = desc & 3
            oa = self._oa(desc)
            if level == 1:
                if kind != 3:
                    break
                return oa | (va & ((1 << ps) - 1)), 1 << ps
            if kind == 1:          # block
                return (oa & ~((1 << shift) - 1)) | (va & ((1 << shift) - 1)), 1 << shift
            if kind != 3:
                break
            table = oa
        raise AddressNotMapped(f"virtual address {va:#x} is not mapped in the kernel page tables")

    # -- translation ----------------------------------------------------------------
    def translate(self, va: int) -> int:
        va &= M64
        r = self.image_range
        if r and r[0] <= va < r[1]:
            return (va - self.kimage_voffset) & M64
        lr = self.linear_range
        if lr and lr[0] <= va < lr[1]:
            return self._linear_pa(va)
        page = va >> self.page_shift
        base = self._tlb.get(page)
        if base is None:
            pa, _ = self.walk(va)
            base = pa >> self.page_shift
            if len(self._tlb) > 65536:
                self._tlb.clear()
            self._tlb[page] = base
        return (base << self.page_shift) | (va & (self.page_size - 1))

    def contiguous_pa(self, va: int, n: int):
        """The physical address of ``[va, va + n)`` when it is one physically contiguous
        range known without walking each page: inside the kernel image or the linear
        map (the fast paths), or inside one page (translated once, through the TLB);
        None when it spans pages outside those. Raises AddressNotMapped like translate()."""
        va &= M64
        end = va + n - 1
        r = self.image_range
        if r and r[0] <= va and end < r[1]:
            return (va - self.kimage_voffset) & M64
        lr = self.linear_range
        if lr and lr[0] <= va and end < lr[1]:
            return self._linear_pa(va)
        if (va ^ end) >> self.page_shift == 0:
            return self.translate(va)
        return None

    def _linear_pa(self, va):
        if self.flipped:
            return (va - self._page_offset + self.phys_offset) & M64
        return ((va & ~self._page_offset) + self.phys_offset) & M64

    def linear_va(self, pa: int) -> int:
        """The linear-map address of physical ``pa`` (fast path must be enabled)."""
        if self.linear_range is None:
            raise DumpError("linear map layout unknown for this dump")
        if self.flipped:
            return (pa - self.phys_offset + self._page_offset) & M64
        return ((pa - self.phys_offset) | self._page_offset) & M64

    def read(self, va: int, size: int) -> bytes:
        """Read kernel virtual memory (crossing pages); errors name the virtual address."""
        out = []
        ps = self.page_size
        while size > 0:
            n = min(size, ps - (va & (ps - 1)))
            pa = self.translate(va)
            try:
                out.append(self.phys.read_phys(pa, n))
            except DumpError as e:
                raise type(e)(f"{e} (virtual address {va:#x})") from None
            va += n
            size -= n
        return b"".join(out)

    def read_u64(self, va):
        return _U64.unpack(self.read(va, 8))[0]

    # -- fast-path verification -------------------------------------------------------
    def verify_image_fastpath(self):
        """Keep the image fast path only if a walk of the image start agrees with it."""
        if not self.image_range:
            return False
        va = self.image_range[0]
        try:
            pa, _ = self.walk(va)
        except AddressNotMapped:
            self.image_range = None
            return False
        if pa != (va - self.kimage_voffset) & M64:
            self.image_range = None
            return False
        return True

    def enable_linear_fastpath(self, ram_ranges, va_bits_candidates):
        """Find PAGE_OFFSET among the candidates by walking a few linear addresses of RAM."""
        if self.phys_offset is None or not ram_ranges:
            return False
        probes = []
        for start, end in ram_ranges:
            for pa in (start + (1 << 20), (start + end) // 2, end - (2 << 20)):
                if start <= pa < end:
                    probes.append(pa & ~(self.page_size - 1))
        for vb in va_bits_candidates:
            self._page_offset = (-(1 << vb)) & M64 if self.flipped else (-(1 << (vb - 1))) & M64
            self.linear_range = (0, 0)   # make linear_va usable
            ok = bad = 0
            for pa in probes:
                va = self.linear_va(pa)
                try:
                    got, _ = self.walk(va)
                except AddressNotMapped:
                    continue
                if got == pa:
                    ok += 1
                else:
                    bad += 1
            if ok and not bad:
                lo = self.linear_va(min(s for s, _ in ram_ranges))
                hi = self.linear_va(max(e for _, e in ram_ranges) - 1) + 1
                self.linear_range = (lo, hi)
                return True
        self.linear_range = None
        return False

    # -- enumeration (for convert) -----------------------------------------------------
    def mappings(self, start: int, end: int):
        """Yield (va, pa, size) for every valid mapping in [start, end), walking the tables once."""
        ps, bpl = self.page_shift, self.bits_per_level
        start &= M64

        def rec(table, level, base):
            shift = ps + bpl * (level - 1)
            if level == self.levels:
                n = 1 << (self.va_bits - shift)
            else:
                n = 1 << bpl
            span = 1 << shift
            first = max(0, (start - base) >> shift) if start > base else 0
            try:
                raw = self.phys.read_phys(table, 8 * n)
            except DumpError:
                return
            for i in range(first, n):
                va = base + i * span
                if va >= end:
                    return
                if va + span <= start:
                    continue
                d = _U64.unpack_from(raw, 8 * i)[0]
                kind = d & 3
                if level == 1:
                    if kind == 3:
                        yield va, self._oa(d), span
                elif kind == 1:
                    yield va, self._oa(d) & ~(span - 1), span
                elif kind == 3:
                    yield from rec(self._oa(d), level - 1, va)

        top_base = (M64 << self.va_bits) & M64
        yield from rec(self.pgd_pa, self.levels, top_base)


def mmu_from_vmcoreinfo(phys, info: dict, image_range=None, osrelease=None) -> Arm64Mmu:
    """Build the translator from VMCOREINFO (+ the image's runtime range) and verify fast paths."""
    page_size = vmci_int(info, "PAGESIZE", 0)
    va_bits_cfg = vmci_number(info, "VA_BITS")
    if va_bits_cfg is None:
        raise DumpError("VMCOREINFO has no NUMBER(VA_BITS): not an arm64 kernel dump?")
    t1sz = vmci_number(info, "TCR_EL1_T1SZ")
    va_actual = 64 - t1sz if t1sz else va_bits_cfg
    walk_bits = va_bits_cfg if page_size == 65536 else va_actual
    lpa2 = page_size != 65536 and walk_bits == 52
    kimage_voffset = vmci_number(info, "kimage_voffset")
    pgd = vmci_symbol(info, "swapper_pg_dir")
    if pgd is None:
        raise DumpError("VMCOREINFO has no SYMBOL(swapper_pg_dir)")
    if kimage_voffset is None:
        raise DumpError("VMCOREINFO has no NUMBER(kimage_voffset)")
    pgd_pa = (pgd - kimage_voffset) & M64
    flipped = True
    if osrelease:
        try:
            major, minor = (int(x) for x in osrelease.split(".")[:2])
            flipped = (major, minor) >= (5, 4)
        except ValueError:
            pass
    mmu = Arm64Mmu(phys, page_size=page_size, va_bits=walk_bits, pgd_pa=pgd_pa,
                   kimage_voffset=kimage_voffset, image_range=image_range,
                   phys_offset=vmci_number(info, "PHYS_OFFSET"), flipped=flipped, lpa2=lpa2)
    mmu.verify_image_fastpath()
    cands = [va_bits_cfg] + ([va_actual] if va_actual != va_bits_cfg else [])
    mmu.enable_linear_fastpath(phys.ranges, cands)
    return mmu
