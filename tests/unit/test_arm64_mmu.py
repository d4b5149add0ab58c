"""arm64 page-table translation on a real 6.1 dump (KASLR on, 4K pages, 48-bit VA)."""

import random

import pytest

from gdbkd.dump import open_physical, parse_vmcoreinfo
from gdbkd.arm64 import Arm64Mmu, AddressNotMapped, mmu_from_vmcoreinfo
from gdbkd.dump.vmcoreinfo import vmci_number, vmci_symbol

from gdbkd.postmortem.testdumps import cached_test_dumps

TD, _ = cached_test_dumps()
needs_dumps = pytest.mark.skipif(TD is None, reason="no cached test dump (run the e2e tests, "
                                 "or gdbkd.postmortem.testdumps.ensure_test_dumps())")

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def mmu():
    p = open_physical(TD.elf)
    info = parse_vmcoreinfo(p.vmcoreinfo_raw)
    m = mmu_from_vmcoreinfo(p, info, None, info["OSRELEASE"])
    yield m, info
    p.close()


@needs_dumps
def test_geometry_from_vmcoreinfo(mmu):
    m, info = mmu
    assert m.page_size == 4096 and m.va_bits == 48 and m.levels == 4
    assert info["KERNELOFFSET"] != "0"            # the test guest booted with KASLR
    assert m.linear_range is not None              # linear fast path confirmed by walks


@needs_dumps
def test_linear_fastpath_equals_walk(mmu):
    m, _ = mmu
    rnd = random.Random(3)
    for _ in range(500):
        pa = rnd.randrange(0x40000000, 0x80000000)
        va = m.linear_va(pa)
        walked, size = m.walk(va)
        assert walked == pa == m.translate(va)
        assert size in (4096, 2 << 20, 1 << 30)


@needs_dumps
def test_kernel_image_read_through_page_tables(mmu):
    """init_uts_ns (VMCOREINFO gives its run-time address) holds 'Linux' and OSRELEASE."""
    m, info = mmu
    uts = vmci_symbol(info, "init_uts_ns") + int(info.get("OFFSET(uts_namespace.name)", "0"))
    raw = m.read(uts, 65 * 3)
    assert raw[:6] == b"Linux\0"
    assert raw[130:195].split(b"\0")[0].decode() == info["OSRELEASE"]
    # swapper_pg_dir's own address translates to the root table the walker uses
    assert m.walk(vmci_symbol(info, "swapper_pg_dir"))[0] == m.pgd_pa


@needs_dumps
def test_vmalloc_enumeration_matches_walk(mmu):
    m, info = mmu
    s, e = vmci_number(info, "VMALLOC_START"), vmci_number(info, "VMALLOC_END")
    maps = list(m.mappings(s, e))
    assert maps and all(s <= va < e for va, _, _ in maps)
    rnd = random.Random(5)
    for va, pa, size in rnd.sample(maps, min(200, len(maps))):
        off = rnd.randrange(0, size) & ~7
        assert m.walk(va + off)[0] == pa + off


@needs_dumps
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
