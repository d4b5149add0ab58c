"""kd analyze: the crash triage report (which trap, message, registers, backtrace)."""

import gdb

from . import KdCommand, command
from ..kernel import crash
from ..textutil import escape
from ..dump.vmcoreinfo import NOTE_SOURCE
from ..arm64.regs import PT_REGS_NAMES


def _damaged_lists() -> list:
    """The problems kd check finds in the kernel's main lists (gdbkd/model/listcheck.py);
    empty when it cannot look (a list it cannot read is skipped there, with its reason)."""
    from ..kernel.memory import kernel
    from ..model.listcheck import check_lists
    try:
        return [p.to_json() for c in check_lists(kernel()) for p in c.problems]
    except gdb.error:                  # a type gdb cannot give (no symbols): no evidence
        return []


_HANG = ("softlockup", "soft lockup", "hung_task", "hung tasks", "hard lockup", "hardlockup",
         "detected stall", "rcu stall", "blocked tasks")


def _hang(trap) -> list:
    """What hung, when the panic is a lockup or hang detector's: one line per deadlock
    cycle of kd deadlock's wait-for graph (spin locks, mutexes, rwsems, semaphores)."""
    msg = ((trap or {}).get("message") or "").lower()
    if (trap or {}).get("trap") not in ("panic", "vpanic") or not any(h in msg for h in _HANG):
        return []
    from ..analysis import waitgraph
    from ..kernel import locks
    try:
        return waitgraph.summary(locks.wait_graph())
    except gdb.error as e:
        return [f"unknown: the wait-for graph could not be built ({e})"]


@command
class Analyze(KdCommand):
    """Triage report of the crash the selected thread is stopped in.

Shows which trap was hit (die = oops, panic, crash_kexec), the oops or panic
message, the faulting function and registers (from the exception's pt_regs),
the backtrace through the el1 exception entry with file:line (marked when
memory it needs cannot be read: the stack is then cut short), the kernel's
main lists that are damaged (kd check: one line each, "damaged_lists" in
--json; often the bug itself), and the last N kernel log lines (default 12).
When a lockup or hang detector panicked, HANG lines ("hang" in --json) say
what hung: each cycle of kd deadlock's wait-for graph, spin locks included.
Same output live and on dumps."""

    name = "analyze"
    #: the trap's registers and addresses, the backtrace's pcs, the explanation's values
    json_addresses = frozenset(("task", "pc", "pt_regs", "fault_pc", "far", "esr", "sp", "fp", "lr",
                                "pstate", "cpsr", "orig_x0", "value", "address", "entry",
                                *PT_REGS_NAMES))

    def add_arguments(self, p):
        p.add_argument("--log", type=int, default=12, metavar="N",
                       help="show the last N kernel log lines (default 12; 0: none)")

    def run(self, args):
        trap = crash.find_trap()
        bt, cut = crash.backtrace()
        data = {"trap": trap, "backtrace": bt, "backtrace_cut": cut}
        if trap is not None and trap.get("trap") == "die":
            from ..kernel import explain
            data["explanation"] = explain.explain(trap)
        task = None
        try:
            from ..kernel import tasks
            t, _ = tasks.thread_task()
            data.update(task=t.addr, pid=t.pid, comm=t.comm)
        except gdb.error:               # no task on this thread (e.g. its task_struct unreadable)
            from ..kernel.sysregs import sysreg
            task = sysreg("SP_EL0")
        if task:
            from ..kernel.memory import kernel
            from ..model.reader import MemoryFault
            from ..model.tasks import read_task
            try:
                t = read_task(kernel(), task)
                data.update(task=task, pid=t.pid, comm=t.comm)
            except MemoryFault:
                pass
        data["damaged_lists"] = _damaged_lists()
        hang = _hang(trap)
        if hang:
            data["hang"] = hang
        from ..kernel.memory import attached_dump
        dump = attached_dump()
        source = getattr(dump, "vmcoreinfo_source", None) if dump is not None else None
        if source and source != NOTE_SOURCE:
            # only the unusual case is said (VMCOREINFO found in RAM, ramvmcoreinfo.py): the
            # note is the norm, and a key present in one backend only would make the JSON of
            # a live session, a gdb-read dump and a DumpReader-read dump differ
            data["vmcoreinfo"] = source
        if args.log:
            try:
                from ..kernel import printk
                lines = []
                for r in printk.records()[-args.log:]:
                    for line in r.text.decode("utf-8", "replace").splitlines():
                        lines.append(f"[{r.ts_nsec // 1000000000:5d}.{r.ts_nsec // 1000 % 1000000:06d}] {escape(line)}")
                data["log"] = lines[-args.log:]
            except (gdb.error, ValueError):     # no log buffer, or one it cannot decode
                pass
        return data

    def render(self, d, args):
        L = []
        t = d["trap"]
        if t is None:
            L.append("TRAP: none (the selected thread is not in die/panic/crash_kexec)")
        else:
            kind = {"die": "oops (die)", "panic": "panic", "vpanic": "panic"}.get(t["trap"], t["trap"])
            L.append(f"TRAP: {kind}" + (f"  (frame #{t['frame']}, below an interrupt or exception "
                                         f"taken inside it)" if t.get("below_exception") else ""))
            if t.get("message"):
                L.append(f"MESSAGE: {t['message']}")
            if t.get("fault_function"):
                L.append(f"FAULT PC: {t['fault_pc']:#x} {t['fault_function']}")
            if t.get("far") is not None and t["trap"] == "die":
                L.append(f"FAR: {t['far']:#018x} (from {t['far_from']})" if t.get("far_from")
                         else f"FAR_EL1: {t['far']:#018x}")
            if t.get("esr") is not None:
                L.append(f"ESR: {t['esr']:#010x}")
        for h in d.get("hang") or []:           # what hung leads: the panic only says that it did
            L.append(f"HANG: {escape(h)}")
        ex = d.get("explanation")
        if ex is not None:
            if ex.get("far") is not None and (t or {}).get("far") is None:
                L.append(f"FAR: {ex['far']:#018x}")
            if ex.get("instruction", {}).get("text"):
                L.append(f"INSTRUCTION: {ex['instruction']['text']}")
            L.append(f"EXPLANATION: {ex['summary']}" if ex.get("summary")
                     else f"EXPLANATION: unknown: {ex.get('unknown')}")
            L += [f"    - {e}" for e in ex.get("evidence", [])]
        if d.get("task"):
            L.append(f"TASK: {d['task']:#x}  PID: {d['pid']}  COMM: \"{d['comm']}\"")
        if t and t.get("registers"):
            r = t["registers"]
            L.append("REGISTERS (pt_regs at %#x):" % t["pt_regs"] if t.get("pt_regs") is not None
                     else f"REGISTERS ({t.get('registers_from', 'saved')}):")
            names = PT_REGS_NAMES
            for i in range(0, len(names), 3):
                L.append("    " + "  ".join(f"{n:>6}: {r[n]:016x}" for n in names[i:i + 3]))
        L.append("BACKTRACE:")
        for f in d["backtrace"]:
            loc = f" at {f['file']}:{f['line']}" if f.get("file") else ""
            mark = "  [exception]" if f.get("exception") else ""
            mod = f" [{f['module']}]" if f.get("module") else ""
            inl = " (inlined)" if f.get("inlined") else ""
            L.append(f" #{f['level']:<2} {f['pc']:#018x} {f['function']}{inl}{mod}{loc}{mark}")
        nodwarf = {f["module"]: f["debuginfo"] for f in d["backtrace"]
                   if f.get("module") and f.get("debuginfo") not in (None, "dwarf")}
        for mod, why in nodwarf.items():
            L.append(f"    ({mod}: {why})")
        if d.get("backtrace_cut"):
            L.append(f"    ({escape(d['backtrace_cut'])})")
        if d.get("damaged_lists"):
            L.append("DAMAGED LISTS (kd check):")
            L += [f"    {p['line']}" for p in d["damaged_lists"]]
        if d.get("vmcoreinfo"):
            L.append(f"VMCOREINFO: from {d['vmcoreinfo']}")
        if d.get("log"):
            L.append("LOG (last lines):")
            L += ["    " + x for x in d["log"]]
        return "\n".join(L)
