"""arm64 kernel address space without gdb: linear map, struct pages, RAM, regions.

Everything comes from the kernel's own VMCOREINFO text (kernel/crash_core.c,
arch/arm64/kernel/crash_core.c), which a dump carries as a note and a live
kernel keeps in memory (``vmcoreinfo_data``, ``vmcoreinfo_size``), so the
same code serves ``gdbkd core`` and a live QEMU:

* ``NUMBER(PHYS_OFFSET)`` (``memstart_addr``, negative under linear-map
  randomization) and ``NUMBER(VA_BITS)`` / ``NUMBER(TCR_EL1_T1SZ)``;
  the linear map is ``pa = va - PAGE_OFFSET + PHYS_OFFSET`` with
  ``PAGE_OFFSET = -(1 << VA_BITS)`` since v5.4 (commit 14c127c957c1, "arm64:
  mm: Flip kernel VA space"); which VA width holds is checked on the kernel
  itself (``linux_banner`` read through its image address and its linear alias);
* ``struct page`` of a pfn: ``vmemmap + pfn`` with ``vmemmap = VMEMMAP_START -
  (memstart_addr >> PAGE_SHIFT)`` (SPARSEMEM_VMEMMAP, arch/arm64/include/asm/
  memory.h, v5.4–6.12). ``NUMBER(VMEMMAP_START)``, ``MODULES_VADDR/END`` and
  ``VMALLOC_START/END`` are in VMCOREINFO since v5.19 (commit 2369f171d5c5);
  for older kernels VMEMMAP_START is computed as v5.4–v5.18 define it
  (``-VMEMMAP_SIZE - SZ_2M``, VMEMMAP_SIZE = (1 << (VA_BITS_MIN - 1)) >>
  (PAGE_SHIFT - STRUCT_PAGE_MAX_SHIFT)) and the vmalloc range as PAGE_END + 256 MiB
  (BPF JIT, modules) .. VMEMMAP_START (5.10 in tests/e2e/test_kmem_other_kernels.py);
  before v5.4 the linear map is the upper half (``PAGE_OFFSET = ~0 << (VA_BITS - 1)``)
  and the vmemmap sits just below it (:meth:`MemoryMap._pre_flip_layout`, the course's 5.0);
* RAM: ``memblock.memory`` (arm64 keeps memblock after boot,
  ARCH_KEEP_MEMBLOCK), or ``min_low_pfn`` .. ``max_pfn``;
* slab pages: page flag ``NUMBER(PG_slab)`` up to v6.9, the page type
  ``NUMBER(PAGE_SLAB_MAPCOUNT_VALUE)`` in ``_mapcount`` from v6.10 (commit
  46df8e73a4a3, "mm: free up PG_slab").

Physical memory is read through the linear map (:class:`PhysThroughLinear`),
which covers all RAM, so the page-table walker (gdbkd/arm64/mmu.py) works the
same on a dump and live.
"""

from .kernel import per_stop
from .reader import MemoryFault
from .sysinfo import vmcoreinfo as _kernel_vmcoreinfo

__all__ = ["MemoryMap", "memory_map", "PhysThroughLinear", "kernel_mmu", "vmcoreinfo"]

M64 = (1 << 64) - 1


def _s64(v):
    v &= M64
    return v - (1 << 64) if v >> 63 else v


def vmcoreinfo(k) -> dict:
    """The kernel's VMCOREINFO in memory (model/sysinfo.py), else the dump's note."""
    info = _kernel_vmcoreinfo(k)
    if not info:
        info = getattr(getattr(k.reader, "dump", None), "vmcoreinfo", None) or {}
    if not info:
        raise MemoryFault(0, "this kernel keeps no VMCOREINFO (vmcoreinfo_data): "
                             "built without CONFIG_CRASH_CORE?")
    return info


def _number(info, name, default=None):
    from ..dump.vmcoreinfo import vmci_number
    return vmci_number(info, name, default)


class MemoryMap:
    """The kernel's address-space layout (see the module docstring)."""

    def __init__(self, k, info: dict):
        self.k = k
        self.info = info
        self.page_size = int(info.get("PAGESIZE", "4096"))
        self.page_shift = self.page_size.bit_length() - 1
        self.va_bits = _number(info, "VA_BITS", 48)
        t1sz = _number(info, "TCR_EL1_T1SZ")
        self.va_actual = 64 - t1sz if t1sz else self.va_bits
        self.phys_offset = _s64(_number(info, "PHYS_OFFSET", 0))
        self.kimage_voffset = _number(info, "kimage_voffset")
        self.page_struct_size = int(info.get("SIZE(page)", "0")) or k.sizeof("struct page") or 64
        self.page_offset = self._find_page_offset()
        #: the linear map in the upper half of the kernel's VA range (before v5.4)
        self.pre_flip = self.page_offset == (-(1 << (self.va_bits - 1))) & M64
        vstart = _number(info, "VMEMMAP_START")
        vend = _number(info, "VMEMMAP_END")
        if vstart is None and self.pre_flip:
            self._pre_flip_layout()
            vstart, vend = self.vmemmap_range
        elif vstart is None:
            vmin = min(self.va_bits, 48)
            smax = (self.page_struct_size - 1).bit_length()
            vsize = (1 << (vmin - 1)) >> (self.page_shift - smax)
            vstart = (-vsize - (2 << 20)) & M64
        self.vmemmap_start = vstart
        self.vmemmap = (vstart - (self.phys_offset >> self.page_shift) * self.page_struct_size) & M64
        self.modules = self._module_range()
        if not self.pre_flip:
            self.vmalloc = (_number(info, "VMALLOC_START"), _number(info, "VMALLOC_END"))
        if self.vmalloc[0] is None and vstart is not None:
            # before v5.19 (no VMALLOC_START in VMCOREINFO), v5.4-v5.18 without KASAN:
            # PAGE_END, 128 MiB of BPF JIT, 128 MiB of modules, then vmalloc (holding the
            # image) up to below the vmemmap (PCI I/O and fixmap in between, not told apart)
            self.vmalloc = ((self.linear_end + (256 << 20)) & M64, vstart)
        self.vmemmap_range = (vstart, vend)
        self.pg_slab = _number(info, "PG_slab")
        self.slab_mapcount = _number(info, "PAGE_SLAB_MAPCOUNT_VALUE")
        self.pg_head_mask = _number(info, "PG_head_mask")
        self._ram = None

    def _pre_flip_layout(self):
        """The v4.20–v5.3 layout (arch/arm64/include/asm/memory.h and pgtable.h before
        14c127c957c1 "arm64: mm: Flip kernel VA space"): ``PAGE_OFFSET = ~0 << (VA_BITS - 1)``,
        the linear map is the upper half; ``VMEMMAP_START = PAGE_OFFSET - VMEMMAP_SIZE``
        with ``VMEMMAP_SIZE = 1 << (VA_BITS - PAGE_SHIFT - 1 + STRUCT_PAGE_MAX_SHIFT)``;
        vmalloc from ``MODULES_END`` (= KIMAGE_VADDR, the image's 2 MiB-aligned link base:
        the BPF JIT region and the modules' 128 MiB below it since v5.0's 91fc957c9b1d
        "arm64/bpf: don't allocate BPF JIT programs in module memory") to
        ``PAGE_OFFSET - PUD_SIZE - VMEMMAP_SIZE - SZ_64K``. (The course's 5.0 kernel.)"""
        smax = (self.page_struct_size - 1).bit_length()
        vsize = 1 << (self.va_bits - self.page_shift - 1 + smax)
        vstart = (self.page_offset - vsize) & M64
        self.vmemmap_range = (vstart, self.page_offset)
        pud_size = 1 << ((self.page_shift - 3) * 3 + 3)
        text = self.k.sym("_text")
        koff = int(self.info.get("KERNELOFFSET", "0"), 16)
        start = ((text - koff) & ~((2 << 20) - 1)) & M64 if text is not None else None
        self.vmalloc = (start, (self.page_offset - pud_size - vsize - (64 << 10)) & M64)

    def _module_range(self):
        """Where modules are loaded: ``module_alloc_base`` .. + 128 MiB (MODULES_VSIZE) when
        KASLR placed it next to the image (v4.6–v6.5, arch/arm64/kernel/kaslr.c), else
        VMCOREINFO's MODULES_VADDR .. MODULES_END."""
        a = self.k.sym("module_alloc_base")
        if a is not None:
            try:
                base = self.k.reader.u64(a)
                if base >> 63:
                    return base, base + (128 << 20)
            except MemoryFault:
                pass
        return _number(self.info, "MODULES_VADDR"), _number(self.info, "MODULES_END")

    def _find_page_offset(self):
        """PAGE_OFFSET: the candidate whose linear alias of ``linux_banner`` reads the same
        bytes as its image address."""
        k = self.k
        cands = [(-(1 << vb)) & M64 for vb in dict.fromkeys((self.va_bits, self.va_actual))]
        cands.append((-(1 << (self.va_bits - 1))) & M64)      # before v5.4 (_pre_flip_layout)
        banner = k.sym("linux_banner")
        if banner is None or self.kimage_voffset is None:
            return cands[0]
        try:
            want = k.reader.read(banner, 64)
        except MemoryFault:
            return cands[0]
        pa = (banner - self.kimage_voffset) & M64
        for po in cands:
            try:
                if k.reader.read((pa - self.phys_offset + po) & M64, 64) == want:
                    return po
            except MemoryFault:
                continue
        return cands[0]

    # -- the linear map ---------------------------------------------------------------
    @property
    def linear_end(self):
        """PAGE_END: the linear map is the lower half of the VA_BITS_MIN (≤ 48) range
        (since v5.4; before, the upper half: up to the top of the address space)."""
        if self.pre_flip:
            return 1 << 64
        return (-(1 << (min(self.va_bits, 48) - 1))) & M64

    def is_linear(self, va: int) -> bool:
        return self.page_offset <= va < self.linear_end

    def virt_to_phys(self, va: int) -> int:
        """Physical address of a linear-map address (no page-table walk)."""
        return (va - self.page_offset + self.phys_offset) & M64

    def phys_to_virt(self, pa: int) -> int:
        return (pa - self.phys_offset + self.page_offset) & M64

    def is_image(self, va: int) -> bool:
        t, e = self.k.sym("_text"), self.k.sym("_end")
        return t is not None and e is not None and t <= va < e

    # -- struct page ------------------------------------------------------------------
    def pfn_to_page(self, pfn: int) -> int:
        return (self.vmemmap + pfn * self.page_struct_size) & M64

    def page_to_pfn(self, page: int) -> int:
        return ((page - self.vmemmap) & M64) // self.page_struct_size

    def is_page_struct(self, addr: int) -> bool:
        lo, hi = self.vmemmap_range
        return lo is not None and hi is not None and lo <= addr < hi

    def virt_to_page(self, va: int) -> int:
        return self.pfn_to_page(self.virt_to_phys(va) >> self.page_shift)

    def page_to_virt(self, page: int) -> int:
        return self.phys_to_virt(self.page_to_pfn(page) << self.page_shift)

    # -- RAM ----------------------------------------------------------------------------
    def ram_ranges(self) -> list:
        """[(start pa, end pa)] of RAM: memblock.memory, else min_low_pfn..max_pfn."""
        if self._ram is None:
            self._ram = self._memblock() or self._pfn_range()
        return self._ram

    def _memblock(self):
        k = self.k
        mb = k.sym("memblock")
        off_mem = k.offset("struct memblock", "memory")
        off_cnt = k.offset("struct memblock_type", "cnt")
        off_reg = k.offset("struct memblock_type", "regions")
        rsize = k.sizeof("struct memblock_region")
        off_base = k.offset("struct memblock_region", "base")
        off_size = k.offset("struct memblock_region", "size")
        if None in (mb, off_mem, off_cnt, off_reg, rsize, off_base, off_size):
            return []
        try:
            cnt = k.reader.u64(mb + off_mem + off_cnt)
            regs = k.reader.u64(mb + off_mem + off_reg)
            if not 0 < cnt < 4096:
                return []
            raw = k.reader.read(regs, cnt * rsize)
        except MemoryFault:
            return []
        out = []
        for i in range(cnt):
            b = int.from_bytes(raw[i * rsize + off_base:i * rsize + off_base + 8], "little")
            s = int.from_bytes(raw[i * rsize + off_size:i * rsize + off_size + 8], "little")
            if s:
                out.append((b, b + s))
        return sorted(out)

    def _pfn_range(self):
        k = self.k
        lo, hi = k.sym("min_low_pfn"), k.sym("max_pfn")
        if lo is None or hi is None:
            return []
        try:
            a, b = k.reader.u64(lo), k.reader.u64(hi)
        except MemoryFault:
            return []
        return [(a << self.page_shift, b << self.page_shift)] if b > a else []

    def pfn_ranges(self) -> list:
        ps = self.page_shift
        return [(s >> ps, (e + self.page_size - 1) >> ps) for s, e in self.ram_ranges()]

    def is_ram(self, pa: int) -> bool:
        return any(s <= pa < e for s, e in self.ram_ranges())

    # -- regions ------------------------------------------------------------------------
    def region(self, va: int) -> str:
        """Which part of the kernel address space ``va`` is in."""
        if not va >> 63:
            return "user"
        if self.is_image(va):
            return "kernel image"
        if self.is_linear(va):
            return "linear map"
        m0, m1 = self.modules
        if m0 is not None and m0 <= va < m1:
            return "modules"
        if self.is_page_struct(va):
            return "vmemmap"
        v0, v1 = self.vmalloc
        if v0 is not None and v0 <= va < v1:
            return "vmalloc"
        return "kernel"


@per_stop
def memory_map(k) -> MemoryMap:
    return MemoryMap(k, vmcoreinfo(k))


class PhysThroughLinear:
    """``read_phys(pa, n)`` through the kernel's linear map (what Arm64Mmu reads page
    tables with); ``ranges`` are RAM's. Raises DumpError like a dump's physical reader."""

    def __init__(self, k, mm: MemoryMap):
        self.k = k
        self.mm = mm
        self.ranges = mm.ram_ranges()

    def read_phys(self, pa: int, n: int) -> bytes:
        from ..dump.base import DumpError
        try:
            return self.k.reader.read(self.mm.phys_to_virt(pa), n)
        except MemoryFault as e:
            raise DumpError(f"physical {pa:#x}: {e.reason}") from None


@per_stop
def kernel_mmu(k):
    """An :class:`gdbkd.arm64.mmu.Arm64Mmu` over swapper_pg_dir, reading the tables
    through the linear map (the same walker the dump reader uses)."""
    from ..arm64.mmu import mmu_from_vmcoreinfo
    mm = memory_map(k)
    info = dict(mm.info)
    if "SYMBOL(swapper_pg_dir)" not in info:
        pgd = k.sym("swapper_pg_dir")
        if pgd is not None:
            info["SYMBOL(swapper_pg_dir)"] = f"{pgd:x}"
    return mmu_from_vmcoreinfo(PhysThroughLinear(k, mm), info, None, info.get("OSRELEASE"))

