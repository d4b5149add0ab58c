"""arm64 page-table translation on a real 6.1 dump (KASLR on, 4K pages, 48-bit VA)."""

import random

import pytest

from gdbkd.dump import open_physical, parse_vmcoreinfo
from gdbkd.arm64 import Arm64Mmu, AddressNotMapped, mmu_from_vmcoreinfo
from gdbkd.dump.vmcoreinfo import vmci_number, vmci_symbol

from conftest import module_dumps

TD = MDF = None          # the real dumps (made once when not cached)
_dumps = module_dumps(globals())

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def mmu(_dumps):
    p = open_physical(TD.elf)
    info = parse_vmcoreinfo(p.vmcoreinfo_raw)
    m = mmu_from_vmcoreinfo(p, info, None, info["OSRELEASE"])
    yield m, info
    p.close()


def test_geometry_from_vmcoreinfo(mmu):
    m, info = mmu
    assert m.page_size == 4096 and m.va_bits == 48 and m.levels == 4
    assert info["KERNELOFFSET"] != "0"            # the test guest booted with KASLR
    assert m.linear_range is not None              # linear fast path confirmed by walks


def test_linear_fastpath_equals_walk(mmu):
    m, _ = mmu
    rnd = random.Random(3)
    for _ in range(500):
        pa = rnd.randrange(0x40000000, 0x80000000)
        va = m.linear_va(pa)
        walked, size = m.walk(va)
        assert walked == pa == m.translate(va)
        assert size in (4096, 2 << 20, 1 << 30)


def test_kernel_image_read_through_page_tables(mmu):
    """init_uts_ns (VMCOREINFO gives its run-time address) holds 'Linux' and OSRELEASE."""
    m, info = mmu
    uts = vmci_symbol(info, "init_uts_ns") + int(info.get("OFFSET(uts_namespace.name)", "0"))
    raw = m.read(uts, 65 * 3)
    assert raw[:6] == b"Linux\0"
    assert raw[130:195].split(b"\0")[0].decode() == info["OSRELEASE"]
    # swapper_pg_dir's own address translates to the root table the walker uses
    assert m.walk(vmci_symbol(info, "swapper_pg_dir"))[0] == m.pgd_pa


def test_vmalloc_enumeration_matches_walk(mmu):
    m, info = mmu
    s, e = vmci_number(info, "VMALLOC_START"), vmci_number(info, "VMALLOC_END")
    maps = list(m.mappings(s, e))
    assert maps and all(s <= va < e for va, _, _ in maps)
    rnd = random.Random(5)
    for va, pa, size in rnd.sample(maps, min(200, len(maps))):
        off = rnd.randrange(0, size) & ~7
        assert m.walk(va + off)[0] == pa + off


def test_unmapped_and_user_addresses(mmu):
    m, info = mmu
    with pytest.raises(AddressNotMapped, match="not a kernel virtual address"):
        m.translate(0x400000)
    # the guard hole at the start of the vmalloc area is never mapped
    with pytest.raises(AddressNotMapped, match="not mapped"):
        m.walk(vmci_number(info, "VMALLOC_END") + 0x1000)


@pytest.mark.parametrize("page,va,levels", [(4096, 39, 3), (4096, 48, 4), (4096, 52, 5),
                                             (16384, 47, 3), (16384, 48, 4),
                                             (65536, 42, 2), (65536, 48, 3), (65536, 52, 3)])
def test_table_levels(page, va, levels):
    m = Arm64Mmu(None, page_size=page, va_bits=va, pgd_pa=0)
    assert m.levels == levels


class _Phys:
    """Physical memory holding hand-built page tables (the walker's only input)."""

    def __init__(self):
        self.mem = {}

    def read_phys(self, pa, n):
        return b"".join(self.mem.get(pa + i, 0).to_bytes(1, "little") for i in range(n))

    def write_u64(self, pa, v):
        for i, b in enumerate(v.to_bytes(8, "little")):
            self.mem[pa + i] = b


def _desc(pa, kind, page, lpa2):
    """A table/page/block descriptor for output address PA, as the architecture encodes it:
    64K pages keep PA[51:48] in bits 15:12, LPA2 (4K/16K, 52-bit) keeps PA[51:50] in bits 9:8."""
    if page == 65536:
        return (pa & 0x0000ffffffff0000) | ((pa >> 48) & 0xf) << 12 | kind
    if lpa2:
        return (pa & ((1 << 50) - 1) & ~(page - 1)) | ((pa >> 50) & 3) << 8 | kind
    return pa | kind


@pytest.mark.parametrize("page,va_bits,lpa2", [(4096, 39, False), (4096, 48, False), (4096, 52, True),
                                               (16384, 47, False), (16384, 52, True),
                                               (65536, 42, False), (65536, 48, False),
                                               (65536, 52, False)])
def test_walk_on_built_tables(page, va_bits, lpa2):
    """Every geometry the kernel configs allow, on tables built level by level here: a
    page mapping, a block mapping one level up, a hole, and an output address above
    48 bits where the format can carry one."""
    shift = page.bit_length() - 1
    bpl = shift - 3
    levels = -(-(va_bits - shift) // bpl)
    phys, next_table = _Phys(), [0x100000]

    def new_table():
        next_table[0] += page
        return next_table[0]

    pgd = new_table()
    top = (1 << 64) - (1 << va_bits)                 # lowest kernel VA for this width
    high_pa = (1 << 50) + 7 * page if va_bits == 52 else 0x40000000 + 7 * page

    def map_va(va, pa, at_level):
        table = pgd
        for level in range(levels, at_level, -1):
            s = shift + bpl * (level - 1)
            idx = (va >> s) & ((1 << (va_bits - s if level == levels else bpl)) - 1)
            key = table + 8 * idx
            cur = int.from_bytes(phys.read_phys(key, 8), "little")
            if cur & 3 != 3:
                nt = new_table()
                phys.write_u64(key, _desc(nt, 3, page, lpa2))
                table = nt
            else:
                table = Arm64Mmu(phys, page_size=page, va_bits=va_bits, pgd_pa=pgd, lpa2=lpa2)._oa(cur)
        s = shift + bpl * (at_level - 1)
        idx = (va >> s) & ((1 << bpl) - 1) if at_level < levels else (va >> s) & ((1 << (va_bits - s)) - 1)
        phys.write_u64(table + 8 * idx, _desc(pa, 3 if at_level == 1 else 1, page, lpa2))

    va_page = top + 5 * page + 0x123 % page
    map_va(va_page & ~(page - 1), high_pa, 1)
    block = 1 << (shift + bpl)                        # a level-2 block
    va_block = top + 64 * block
    map_va(va_block, 0x80000000 & ~(block - 1), 2)

    m = Arm64Mmu(phys, page_size=page, va_bits=va_bits, pgd_pa=pgd, lpa2=lpa2)
    assert m.levels == levels
    assert m.walk(va_page) == (high_pa | (va_page & (page - 1)), page)
    assert m.walk(va_block + 0x4321) == ((0x80000000 & ~(block - 1)) + 0x4321, block)
    with pytest.raises(AddressNotMapped):
        m.walk(top + 9 * page)                      # same tables, no entry
    with pytest.raises(AddressNotMapped):
        m.walk((1 << (va_bits - 1)) - page)         # a user address
