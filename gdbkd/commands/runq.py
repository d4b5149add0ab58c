"""kd runq: per-CPU runqueues (crash's runq)."""

from ._util import KernelCommand, problem_lines
from . import KdError, command
from ..kernel.memory import kernel
from ..model.percpu import present_cpus
from ..model.runqueue import runqueues

__all__ = ["Runq"]


def _tj(t, prio=None):
    d = t.brief()
    d["prio"] = t.f.get("prio") if prio is None else prio
    return d


def _cfs_json(items):
    out = []
    for it in items:
        if "group" in it:
            out.append({"group": it["group"], "cfs_rq": it["cfs_rq"], "tasks": _cfs_json(it["tasks"])})
        else:
            out.append(_tj(it["task"]))
    return out


@command
class Runq(KernelCommand):
    """Show each CPU's runqueue: the current task, queued RT and CFS tasks (crash's runq).

CFS tasks are listed in vruntime order (the rb-tree walked left to right);
task groups (CONFIG_FAIR_GROUP_SCHED) are shown with their own tasks
indented. [PRIO] is task->prio (100..139 for CFS, 0..99 RT). A CFS tree that
loops or reaches an unreadable node, or a damaged RT list, is said in one line
under its CPU ("problems" in --json)."""

    name = "runq"
    json_addresses = frozenset(("rq", "task", "rt_array", "cfs_root", "group", "cfs_rq"))

    def add_arguments(self, p):
        p.add_argument("-c", dest="cpus", default="", metavar="CPU[,CPU...]", help="only these CPUs")

    def run(self, args):
        cpus = None
        if args.cpus:
            try:
                cpus = [int(c) for c in args.cpus.split(",")]
            except ValueError:
                raise KdError("-c wants CPU numbers, e.g. -c 0,1")
            bad = [c for c in cpus if c not in present_cpus(kernel())]
            if bad:
                raise KdError(f"CPU {bad[0]} is not present (present: {present_cpus(kernel())})")
        out = []
        for rq in runqueues(kernel(), cpus):
            out.append({"cpu": rq["cpu"], "online": rq["online"], "rq": rq["rq"],
                        "nr_running": rq["nr_running"],
                        "current": _tj(rq["curr"]), "rt_array": rq["rt_array"],
                        "rt": [_tj(x["task"], x["prio"]) for x in rq["rt"]],
                        "cfs_root": rq["cfs_root"], "cfs": _cfs_json(rq["cfs"]),
                        "problems": [p.to_json() for p in rq["problems"]]})
        return out

    def render(self, data, args):
        lines = []

        def task_line(t, indent):
            return f"{indent}[{t['prio']:3}] PID: {t['pid']:<6} TASK: {t['task']:016x}  COMMAND: \"{t['comm']}\""

        def cfs_lines(items, indent):
            for it in items:
                if "group" in it:
                    lines.append(f"{indent}<group se {it['group']:016x} cfs_rq {it['cfs_rq']:016x}>")
                    cfs_lines(it["tasks"], indent + "   ")
                else:
                    lines.append(task_line(it, indent))

        for rq in data:
            c = rq["current"]
            off = "" if rq.get("online", True) else "  [offline: stopped by the panic or hotplug]"
            lines.append(f"CPU {rq['cpu']} RUNQUEUE: {rq['rq']:016x}  (nr_running {rq['nr_running']}){off}")
            lines.append(f"  CURRENT: PID: {c['pid']:<6} TASK: {c['task']:016x}  COMMAND: \"{c['comm']}\"")
            lines.append(f"  RT PRIO_ARRAY: {rq['rt_array']:016x}")
            if rq["rt"]:
                for t in rq["rt"]:
                    lines.append(task_line(t, "     "))
            else:
                lines.append("     [no tasks queued]")
            lines.append(f"  CFS RB_ROOT: {rq['cfs_root']:016x}")
            if rq["cfs"]:
                cfs_lines(rq["cfs"], "     ")
            else:
                lines.append("     [no tasks queued]")
            lines += problem_lines(self.name, rq["problems"])
            lines.append("")
        return "\n".join(lines).rstrip()
