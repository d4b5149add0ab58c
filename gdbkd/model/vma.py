"""A process's address space without gdb (crash's ``vm``).

VMAs are found the way the kernel keeps them, probed by members:

* 6.1+: the maple tree ``mm->mm_mt`` (commit d4af56c5c7c6, "mm: start tracking
  VMAs with maple tree"; ``mm->mmap`` and ``vma->vm_next`` went in 763ecb035029,
  both in 6.1), walked by :func:`gdbkd.model.trees.maple_entries`;
* up to 6.0 (5.10): the ``mm->mmap`` list through ``vma->vm_next`` (sorted, and
  the same set as the ``mm->mm_rb`` rbtree).

``struct vm_area_struct`` {``vm_start``, ``vm_end``, ``vm_flags``, ``vm_file``,
``vm_pgoff``, ``vm_ops``, ``vm_private_data``} has the same members in 5.10,
6.1 and 6.12 (``vm_flags`` became a union with ``__vm_flags`` in 6.3, commit
bc292ab00f6c: the anonymous union is looked through). Names as in
/proc/PID/maps: the file's path, ``[heap]`` (``start_brk``..``brk``),
``[stack]`` (contains ``start_stack``), special mappings (``[vdso]``,
``[vvar]``) from ``vm_special_mapping->name`` when ``vm_ops`` is
``special_mapping_vmops``, else ``[anon]``.

Flag bits (include/linux/mm.h) are those of 5.10–6.12; arm64 names its arch
bits ``VM_ARM64_BTI`` (VM_ARCH_1), ``VM_MTE`` (bit 32), ``VM_MTE_ALLOWED``
(bit 33).
"""

from .reader import MemoryFault
from .trees import maple_entries
from .fs import d_path

__all__ = ["vma_list", "vma_info", "mm_info", "VM_FLAGS", "decode_vm_flags", "user_pages"]

VM_FLAGS = [
    (0x1, "READ"), (0x2, "WRITE"), (0x4, "EXEC"), (0x8, "SHARED"), (0x10, "MAYREAD"),
    (0x20, "MAYWRITE"), (0x40, "MAYEXEC"), (0x80, "MAYSHARE"), (0x100, "GROWSDOWN"),
    (0x200, "UFFD_MISSING"), (0x400, "PFNMAP"), (0x1000, "UFFD_WP"), (0x2000, "LOCKED"),
    (0x4000, "IO"), (0x8000, "SEQ_READ"), (0x10000, "RAND_READ"), (0x20000, "DONTCOPY"),
    (0x40000, "DONTEXPAND"), (0x80000, "LOCKONFAULT"), (0x100000, "ACCOUNT"),
    (0x200000, "NORESERVE"), (0x400000, "HUGETLB"), (0x800000, "SYNC"),
    (0x1000000, "ARM64_BTI"), (0x2000000, "WIPEONFORK"), (0x4000000, "DONTDUMP"),
    (0x8000000, "SOFTDIRTY"), (0x10000000, "MIXEDMAP"), (0x20000000, "HUGEPAGE"),
    (0x40000000, "NOHUGEPAGE"), (0x80000000, "MERGEABLE"), (1 << 32, "MTE"),
    (1 << 33, "MTE_ALLOWED"),
]

_VMA = ["vm_start", "vm_end", "vm_flags", "__vm_flags", "vm_file", "vm_pgoff", "vm_ops",
        "vm_private_data", "vm_mm", "vm_next"]
_MM = ["mmap", "mm_mt", "pgd", "start_brk", "brk", "start_stack", "start_code", "end_code",
       "start_data", "end_data", "arg_start", "env_start", "total_vm", "map_count"]


def decode_vm_flags(flags: int) -> list:
    names = [n for bit, n in VM_FLAGS if flags & bit]
    rest = flags & ~sum(b for b, _ in VM_FLAGS)
    if rest:
        names.append(f"{rest:#x}")
    return names


def mm_info(k, mm: int) -> dict:
    """The members of an mm_struct kd vm shows (raises MemoryFault)."""
    f = k.layout("struct mm_struct", _MM).read(k.reader, mm)
    return {key: f.get(key) for key in ("pgd", "start_brk", "brk", "start_stack", "start_code",
                                        "end_code", "start_data", "end_data", "arg_start",
                                        "env_start", "total_vm", "map_count")}


def vma_list(k, mm: int, limit: int = 1 << 20):
    """(VMA addresses in address order, how they were found, stop reason or None)."""
    ml = k.layout("struct mm_struct", _MM)
    if "mm_mt" in ml:
        w = maple_entries(k, mm + ml.offset("mm_mt"), limit=limit)
        vmas = [e for _, _, e in w.entries if not e & 3]
        bad = [e for _, _, e in w.entries if e & 3]
        stop = w.stop or (f"{len(bad)} maple tree entries are not VMA pointers" if bad else None)
        return vmas, "mm->mm_mt (maple tree)", stop
    if "mmap" not in ml:
        raise MemoryFault(mm, "this kernel's mm_struct has neither mm_mt nor mmap")
    nxt = k.layout("struct vm_area_struct", _VMA).offset("vm_next")
    out, seen, stop = [], set(), None
    vma = k.reader.u64(mm + ml.offset("mmap"))
    while vma:
        if vma in seen:
            stop = f"loop: vma {vma:#x} reached twice"
            break
        seen.add(vma)
        out.append(vma)
        if len(out) >= limit:
            stop = f"stopped after {limit} VMAs"
            break
        try:
            vma = k.reader.u64(vma + nxt)
        except MemoryFault as e:
            stop = f"cannot read vma {vma:#x}: {e}"
            break
    return out, "mm->mmap (vm_next list)", stop


def _special_name(k, f) -> bytes:
    ops = k.sym("special_mapping_vmops")
    legacy = k.sym("legacy_special_mapping_vmops")
    if f["vm_ops"] and f["vm_ops"] in (ops, legacy) and f["vm_private_data"]:
        if f["vm_ops"] == ops:
            name = k.reader.u64(f["vm_private_data"] + k.offset("struct vm_special_mapping", "name"))
            if name:
                return k.reader.cstring(name, 64)
        return b""
    return b""


def vma_info(k, vma: int, mm: dict = None) -> dict:
    """One VMA: start, end, flags (raw and decoded), file, pgoff and the name
    /proc/PID/maps would give it (``mm``: :func:`mm_info` of its mm, for heap/stack)."""
    f = k.layout("struct vm_area_struct", _VMA).read(k.reader, vma)
    flags = f.get("vm_flags", f.get("__vm_flags", 0))
    file = f["vm_file"]
    name = b""
    if file:
        fl = k.layout("struct file", ["f_path.mnt", "f_path.dentry"]).read(k.reader, file)
        try:
            name = d_path(k, fl["f_path.mnt"], fl["f_path.dentry"])
        except MemoryFault:
            name = b"?"
    else:
        name = _special_name(k, f)
        if not name and mm is not None:
            if mm["start_brk"] is not None and f["vm_start"] <= mm["brk"] and f["vm_end"] >= mm["start_brk"]:
                name = b"[heap]"
            elif f["vm_start"] <= mm["start_stack"] <= f["vm_end"]:
                name = b"[stack]"
        if not name:
            name = b"[anon]"
    return {"vma": vma, "start": f["vm_start"], "end": f["vm_end"], "flags": flags,
            "flag_names": decode_vm_flags(flags), "file": file, "pgoff": f["vm_pgoff"],
            "name": name}


def user_pages(k, pgd: int, start: int, end: int, limit: int = 1 << 16):
    """[(virtual page, physical address or None)] of ``[start, end)`` in the user page
    tables at ``pgd`` (``mm->pgd``, a linear-map address).

    The walk is the kernel's own walker (gdbkd/arm64/mmu.py over the linear map,
    :func:`gdbkd.model.memmap.kernel_mmu`) started at this mm's table: TTBR0 tables
    are indexed by the same bits below VA_BITS as TTBR1 tables, so a user address
    is walked with its upper bits set as a kernel address would have them."""
    import copy
    from .memmap import kernel_mmu, memory_map
    from ..arm64.mmu import AddressNotMapped
    base = kernel_mmu(k)
    mmu = copy.copy(base)
    mmu.pgd_pa = memory_map(k).virt_to_phys(pgd)
    mmu._tlb = {}
    ps = mmu.page_size
    high = ((1 << 64) - 1) >> mmu.va_bits << mmu.va_bits
    out = []
    va = start & ~(ps - 1)
    while va < end and len(out) < limit:
        try:
            pa, _ = mmu.walk(va | high)
        except AddressNotMapped:
            pa = None
        out.append((va, pa))
        va += ps
    return out
