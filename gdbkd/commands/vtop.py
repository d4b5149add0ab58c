"""kd vtop / kd ptov: virtual ↔ physical through the kernel's page tables (crash's vtop/ptov).

The walk is gdbkd/arm64/mmu.py's (the one the dump reader translates with), over
swapper_pg_dir for kernel addresses or the task's ``mm->pgd`` for user ones, with
each level's entry recorded and its attribute bits decoded (ARMv8-A stage 1,
VMSAv8-64 descriptors; Linux's software bits from arch/arm64/include/asm/
pgtable-prot.h, v5.4–6.12: PTE_DIRTY 55, PTE_SPECIAL 56, PTE_DEVMAP 57,
PTE_PROT_NONE 58).
"""

from . import KdError, command
from ._mem import address_arg, kernel, MEMORY_ADDRESSES
from ._util import KernelCommand
from ..arm64.mmu import AddressNotMapped
from ..model.memmap import memory_map, kernel_mmu
from ..model.mm import mm_pgd
from ..model.reader import MemoryFault
from ..model.tasks import task_list, parse_task_spec, select_tasks
from ..textutil import escape

__all__ = ["Vtop", "Ptov", "decode_descriptor"]

LEVEL_NAMES = {2: ["PGD", "PTE"], 3: ["PGD", "PMD", "PTE"], 4: ["PGD", "PUD", "PMD", "PTE"],
               5: ["PGD", "P4D", "PUD", "PMD", "PTE"]}
AP = {0: "RW/--", 1: "RW/RW", 2: "RO/--", 3: "RO/RO"}          # EL1/EL0
SH = {0: "non-shareable", 1: "reserved", 2: "outer", 3: "inner"}


def decode_descriptor(desc: int, level: int) -> dict:
    """Type and attribute bits of a stage-1 descriptor at walker level ``level`` (1 = last)."""
    kind = desc & 3
    if kind in (0, 2):
        return {"type": "invalid"}
    if level > 1 and kind == 3:
        return {"type": "table", "PXNTable": bool(desc >> 59 & 1),
                "UXNTable": bool(desc >> 60 & 1), "APTable": desc >> 61 & 3,
                "NSTable": bool(desc >> 63 & 1)}
    d = {"type": "page" if level == 1 else "block",
         "AttrIndx": desc >> 2 & 7, "NS": bool(desc >> 5 & 1), "AP": AP[desc >> 6 & 3],
         "SH": SH[desc >> 8 & 3], "AF": bool(desc >> 10 & 1), "nG": bool(desc >> 11 & 1),
         "DBM": bool(desc >> 51 & 1), "Cont": bool(desc >> 52 & 1),
         "PXN": bool(desc >> 53 & 1), "UXN": bool(desc >> 54 & 1)}
    sw = [n for b, n in ((55, "DIRTY"), (56, "SPECIAL"), (57, "DEVMAP"), (58, "PROT_NONE"))
          if desc >> b & 1]
    if sw:
        d["sw"] = sw
    return d


def _attr_text(a: dict) -> str:
    if a["type"] == "invalid":
        return "invalid"
    if a["type"] == "table":
        bits = [n for n in ("PXNTable", "UXNTable", "NSTable") if a[n]]
        if a["APTable"]:
            bits.append(f"APTable={a['APTable']}")
        return "table" + (f" [{' '.join(bits)}]" if bits else "")
    bits = [f"AP={a['AP']}", f"SH={a['SH']}", f"AttrIndx={a['AttrIndx']}"]
    bits += [n for n in ("AF", "nG", "NS", "DBM", "Cont", "PXN", "UXN") if a[n]]
    bits += a.get("sw", [])
    return f"{a['type']} [{' '.join(bits)}]"


def _task_pgd(k, spec):
    tasks = select_tasks(task_list(k), [parse_task_spec(spec)])
    if not tasks:
        raise KdError(f"no task {escape(spec)}")
    t = tasks[0]
    if not t.mm:
        raise KdError(f"PID {t.pid} ({t.comm}) is a kernel thread: it has no user address space")
    return t, mm_pgd(k, t.mm)


@command
class Vtop(KernelCommand):
    """Translate a virtual address to physical, showing the page-table walk (crash's vtop).

Each level's entry address, value and decoded bits: table attributes (PXNTable,
UXNTable, APTable, NSTable) or the block/page attributes (AP as EL1/EL0 access, SH,
AttrIndx, AF, nG, DBM, Cont, PXN, UXN, Linux's software bits)."""

    name = "vtop"
    json_addresses = MEMORY_ADDRESSES

    def add_arguments(self, p):
        p.add_argument("-c", dest="task", metavar="PID|TASK",
                       help="translate through this task's page tables (user addresses)")
        p.add_argument("addr", metavar="ADDR", help="virtual address (hex, symbol or expression)")

    def run(self, args):
        k = kernel()
        va = address_arg(args.addr)
        try:
            mm = memory_map(k)
            mmu = kernel_mmu(k)
            task = None
            pgd_pa, root = None, k.sym("swapper_pg_dir")
            if not va >> 63:
                if args.task is None:
                    raise KdError(f"{va:#x} is a user address: give -c PID for whose page tables")
                task, root = _task_pgd(k, args.task)
                pgd_pa = mm.virt_to_phys(root)
            trace = []
            try:
                pa, size = mmu.walk(va, trace=trace, pgd_pa=pgd_pa)
                err = None
            except AddressNotMapped as e:
                pa = size = None
                err = str(e)
        except MemoryFault as e:
            raise KdError(str(e))
        names = LEVEL_NAMES.get(mmu.levels, [f"L{i}" for i in range(mmu.levels)])
        levels = []
        for level, entry, idx, desc in trace:
            levels.append({"level": names[mmu.levels - level], "entry": entry, "index": idx,
                           "descriptor": desc, **decode_descriptor(desc, level)})
        d = {"addr": va, "pa": pa, "size": size, "pgd": root,
             "pgd_pa": (pgd_pa if pgd_pa is not None else mmu.pgd_pa),
             "region": mm.region(va), "levels": levels, "error": err}
        if task is not None:
            d.update(task=task.addr, pid=task.pid, comm=task.comm)
        return d

    def render(self, d, args):
        lines = [f"{'VIRTUAL':16}  PHYSICAL"]
        if d["pa"] is not None:
            lines.append(f"{d['addr']:016x}  {d['pa']:x}")
        else:
            lines.append(f"{d['addr']:016x}  (not mapped)")
        lines.append("")
        who = f" (PID {d['pid']})" if "pid" in d else " (swapper_pg_dir)"
        lines.append(f"PAGE DIRECTORY: {d['pgd']:016x}{who}  phys {d['pgd_pa']:x}")
        for lv in d["levels"]:
            lines.append(f"  {lv['level']:>4}: {lv['entry']:x} [{lv['index']}] => "
                         f"{lv['descriptor']:016x}  {_attr_text(lv)}")
        if d["pa"] is not None:
            size = d["size"]
            unit = f"{size >> 30} GiB" if size >= 1 << 30 else (
                f"{size >> 20} MiB" if size >= 1 << 20 else f"{size >> 10} KiB")
            lines.append(f"  PAGE: {d['pa'] & ~(size - 1):x}  ({unit} {d['levels'][-1]['type']})")
        else:
            lines.append(f"  {d['error']}")
        return "\n".join(lines)


@command
class Ptov(KernelCommand):
    """Translate a physical address to its kernel virtual address(es) (crash's ptov).

The linear-map address of a RAM address, and the kernel image address too when the
physical address is inside the kernel image."""

    name = "ptov"
    json_addresses = MEMORY_ADDRESSES

    def add_arguments(self, p):
        p.add_argument("addr", metavar="PADDR", help="physical address (hex)")

    def run(self, args):
        k = kernel()
        try:
            pa = int(args.addr, 16)
        except ValueError:
            raise KdError(f"PADDR must be a hex number, not {escape(args.addr)}")
        try:
            mm = memory_map(k)
            if not mm.is_ram(pa):
                raise KdError(f"{pa:#x} is not in RAM ("
                              + ", ".join(f"{s:#x}-{e:#x}" for s, e in mm.ram_ranges()) + ")")
            d = {"pa": pa, "va": mm.phys_to_virt(pa),
                 "page": mm.pfn_to_page(pa >> mm.page_shift)}
            t, e = k.sym("_text"), k.sym("_end")
            if t is not None and e is not None and mm.kimage_voffset is not None:
                img = (pa + mm.kimage_voffset) & 0xFFFFFFFFFFFFFFFF
                if t <= img < e:
                    d["image_va"] = img
        except MemoryFault as ex:
            raise KdError(str(ex))
        return d

    def render(self, d, args):
        lines = [f"{'VIRTUAL':16}  PHYSICAL", f"{d['va']:016x}  {d['pa']:x}"]
        if "image_va" in d:
            lines.append(f"{d['image_va']:016x}  {d['pa']:x}  (kernel image)")
        lines.append(f"PAGE: {d['page']:016x}")
        return "\n".join(lines)
