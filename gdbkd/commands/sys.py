"""kd sys: system summary banner (crash's sys)."""

import gdb

from ._util import KernelCommand
from . import command
from ..kernel import sysinfo
from ..kernel.tasks import all_tasks
from ..kernel.printk import records
from ..kernel.access import user_thread
from ..kernel.memory import kernel
from ..model import timekeeping, sysinfo as msysinfo
from ..model.percpu import online_cpus, nr_cpu_ids
from ..textutil import escape

__all__ = ["Sys"]


def _fmt_uptime(s):
    if s is None:
        return "-"
    s = int(s)
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    return (f"{d} days, " if d else "") + f"{h:02d}:{m:02d}:{s:02d}"


def _fmt_mem(b):
    if b is None:
        return "-"
    for unit, sz in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if b >= sz:
            v = b / sz
            return f"{v:.0f} {unit}" if v == int(v) else f"{v:.1f} {unit}"
    return f"{b} B"


@command
class Sys(KernelCommand):
    """System summary: KERNEL release, UPTIME, LOAD AVERAGE, TASKS, CPUS, MEMORY, PANIC, MACHINE.

Like crash's banner. PANIC is the last "Kernel panic - not syncing" line of
the log, or the first Oops line ("Internal error", "Unable to handle kernel",
"kernel BUG at"), or — stopped at the entry of panic() before it printed —
panic's format string; absent when the kernel has none of these.
--json also gives the wall clock of the last timer tick (wall_clock_s: seconds
since the epoch, the kernel's xtime_sec), which gdbkd triage takes as the crash time."""

    name = "sys"

    def run(self, args):
        k = kernel()
        uts = {n: escape(v) for n, v in msysinfo.utsname(k).items()}
        try:
            tasks = len(all_tasks())
        except (gdb.error, gdb.MemoryError):
            tasks = None
        try:
            panic = sysinfo.panic_message(records())
        except (gdb.error, gdb.MemoryError):
            panic = None
        if panic is None:
            fmt = sysinfo.panic_from_frames(user_thread())
            if fmt is not None:
                panic = ("panic", "Kernel panic - not syncing: " + fmt.removesuffix("\\n").rstrip())
        cpus = online_cpus(k)
        taint = msysinfo.tainted(k)
        return {
            "release": uts.get("release"), "version": uts.get("version"),
            "nodename": uts.get("nodename"), "machine": uts.get("machine"),
            "uptime_s": timekeeping.uptime_seconds(k),
            "wall_clock_s": timekeeping.wall_clock_sec(k), "load_average": msysinfo.load_average(k),
            "tasks": tasks, "cpus": len(cpus), "cpus_possible": nr_cpu_ids(k),
            "memory_bytes": msysinfo.memory_bytes(k),
            "panic": {"kind": panic[0], "message": panic[1]} if panic else None,
            "tainted": {"mask": taint[0], "flags": taint[1] or ""} if taint else None,
        }

    def render(self, d, args):
        def row(k, v):
            return f"{k:>12}: {v}"
        la = d["load_average"]
        out = [row("KERNEL", d["release"] or "-"),
               row("CPUS", d["cpus"] if d["cpus"] == d["cpus_possible"]
                   else f"{d['cpus']} ({d['cpus_possible']} possible)"),
               row("UPTIME", _fmt_uptime(d["uptime_s"])),
               row("LOAD AVERAGE", ", ".join(f"{v:.2f}" for v in la) if la else "-"),
               row("TASKS", d["tasks"] if d["tasks"] is not None else "-"),
               row("NODENAME", d["nodename"] or "-"),
               row("RELEASE", d["release"] or "-"),
               row("VERSION", d["version"] or "-"),
               row("MACHINE", d["machine"] or "-"),
               row("MEMORY", _fmt_mem(d["memory_bytes"]))]
        if d["tainted"] and d["tainted"]["mask"]:
            out.append(row("TAINTED", f"{d['tainted']['flags']} ({d['tainted']['mask']:#x})"))
        if d["panic"]:
            out.append(row("PANIC", f"\"{d['panic']['message']}\""))
        return "\n".join(out)
