"""kd vm: a task's address space (crash's vm)."""

from . import KdError, command
from ._util import KernelCommand, problem_lines
from ..model.lists import stop_problem
from ._sysstate import kernel, pick_task, task_header, render_header, guest_str
from ..model import vma as mvma
from ..model.mm import mm_counters, task_rss_delta
from ..model.sysinfo import page_size
from ..model.tasks import task_list

__all__ = ["Vm"]


def _parse_range(spec: str):
    try:
        if "-" in spec:
            a, b = spec.split("-", 1)
            return int(a, 16), int(b, 16)
        a = int(spec, 16)
        return a, a + 1
    except ValueError:
        raise KdError(f"-p wants START[-END] in hex, not {spec}") from None


@command
class Vm(KernelCommand):
    """Address space of a task: mm, pgd, RSS, TOTAL_VM and every VMA (crash's vm).

VMAs come from the maple tree (mm->mm_mt, 6.1+) or the vm_next list (up to
6.0). NAME is the mapped file's path, or [heap], [stack], [vdso]/[vvar]
(special mappings), [anon]. FLAGS are vm_flags (decoded with --json or -f)."""

    name = "vm"
    json_addresses = frozenset(("task", "mm", "pgd", "start_brk", "brk", "start_stack", "vma",
                                "start", "end", "file", "va", "pa"))

    def add_arguments(self, p):
        p.add_argument("-p", dest="phys", action="store_true",
                       help="also show the physical address of each virtual page")
        p.add_argument("-R", dest="range", metavar="START[-END]",
                       help="with -p: only the pages in START-END (hex)")
        p.add_argument("-f", dest="flags", action="store_true", help="decode the VMA flags")
        p.add_argument("task", nargs="?", metavar="PID|TASK|COMM",
                       help="the task (default: the task of the selected thread)")

    def run(self, args):
        k = kernel()
        t = pick_task(args.task)
        out = task_header(t)
        if not t.mm:
            raise KdError(f"PID {t.pid} ({t.comm}) has no mm: "
                          + ("a kernel thread" if t.is_kthread else "an exited task"))
        mm = t.mm
        info = mvma.mm_info(k, mm)
        counters = mm_counters(k, mm) or (0, 0)
        delta = sum(task_rss_delta(k, x) for x in task_list(k) if x.mm == mm and not x.is_kthread)
        kib = page_size(k) // 1024
        out.update(mm=mm, pgd=info["pgd"], rss_kib=max(counters[1] + delta, 0) * kib,
                   total_vm_kib=counters[0] * kib, map_count=info["map_count"],
                   start_brk=info["start_brk"], brk=info["brk"], start_stack=info["start_stack"])
        vmas, how, stop = mvma.vma_list(k, mm)
        out["source"], out["stop"] = how, stop
        out["problems"] = [stop_problem(f"VMAs of pid {t.pid} ({how})", mm, stop,
                                        len(vmas)).to_json()] if stop else []
        if args.range and not args.phys:
            raise KdError("-R START[-END] goes with -p")
        rng = _parse_range(args.range) if args.range else None
        rows = []
        for v in vmas:
            i = mvma.vma_info(k, v, info)
            row = {"vma": v, "start": i["start"], "end": i["end"], "flags": i["flags"],
                   "flag_names": i["flag_names"], "pgoff": i["pgoff"], "file": i["file"],
                   "name": guest_str(i["name"])}
            if args.phys and (rng is None or (i["start"] < rng[1] and i["end"] > rng[0])):
                lo, hi = (max(i["start"], rng[0]), min(i["end"], rng[1])) if rng else (i["start"], i["end"])
                row["pages"] = [{"va": va, "pa": pa} for va, pa in mvma.user_pages(k, info["pgd"], lo, hi)]
            rows.append(row)
        out["vmas"] = rows
        if rng is not None and not any("pages" in r for r in rows):
            raise KdError(f"no VMA of PID {t.pid} covers {args.range}")
        return out

    def render(self, d, args):
        lines = [render_header(d),
                 "       MM               PGD          RSS    TOTAL_VM",
                 f"{d['mm']:016x}  {d['pgd']:016x}  {d['rss_kib']}k  {d['total_vm_kib']}k",
                 "      VMA           START       END     FLAGS FILE"]
        for v in d["vmas"]:
            fl = " ".join(v["flag_names"]) if args.flags else f"{v['flags']:x}"
            lines.append(f"{v['vma']:016x} {v['start']:>10x} {v['end']:>10x} {fl:>8} {v['name']}")
            for p in v.get("pages", ()):
                pa = f"{p['pa']:x}" if p["pa"] is not None else "(not mapped)"
                lines.append(f"    {p['va']:>12x}  {pa}")
        return "\n".join(lines + problem_lines(self.name, d["problems"]))
