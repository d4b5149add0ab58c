"""kd task: key fields of a task_struct (crash's task)."""

import gdb

from . import KdError, command
from ._util import KernelCommand, resolve_task
from ..kernel.tasks import all_tasks, STATE_CODES
from ..kernel.types import lookup_type
from ..textutil import escape

__all__ = ["TaskCmd", "TASK_ADDRESSES", "task_data", "task_render"]

PF_FLAGS = [(0x00000002, "PF_IDLE"), (0x00000004, "PF_EXITING"), (0x00000010, "PF_IO_WORKER"),
            (0x00000020, "PF_WQ_WORKER"), (0x00000040, "PF_FORKNOEXEC"),
            (0x00000100, "PF_SUPERPRIV"), (0x00000200, "PF_DUMPCORE"),
            (0x00000400, "PF_SIGNALED"), (0x00000800, "PF_MEMALLOC"),
            (0x00004000, "PF_NOFREEZE"), (0x00008000, "PF_FROZEN"), (0x00020000, "PF_KSWAPD"),
            (0x00200000, "PF_KTHREAD"), (0x00400000, "PF_RANDOMIZE"),
            (0x04000000, "PF_NO_SETAFFINITY"), (0x20000000, "PF_SUSPEND_TASK")]
POLICIES = {0: "SCHED_NORMAL", 1: "SCHED_FIFO", 2: "SCHED_RR", 3: "SCHED_BATCH", 5: "SCHED_IDLE",
            6: "SCHED_DEADLINE"}


#: kd task's address keys
TASK_ADDRESSES = frozenset(("task", "mm", "active_mm", "stack", "pc", "sp", "fp"))


def _flags(v):
    names = [n for bit, n in PF_FLAGS if v & bit]
    return "|".join(names) if names else "0"


def _extra_fields(task, fields):
    out = {}
    v = gdb.Value(task.addr).cast(lookup_type("struct task_struct").pointer()).dereference()
    for f in fields:
        try:
            cur = v
            for part in f.split("."):
                cur = cur[part]
            # gdb already prints guest strings with C escapes; only neutralise raw
            # control characters that might still slip through
            out[f] = "".join(ch if ch == "\n" or (0x20 <= ord(ch) != 0x7f) else f"\\x{ord(ch):02x}"
                             for ch in str(cur))
        except (gdb.error, gdb.MemoryError) as e:
            raise KdError(f"task_struct.{escape(f)}: {e}")
    return out


def task_data(t, fields=()) -> dict:
    f = t.f
    cc = t.cpu_context
    by_addr = {x.addr: x for x in all_tasks()}

    def who(addr):
        x = by_addr.get(addr)
        return {"task": addr, "pid": x.pid if x else None, "comm": x.comm if x else None}

    d = {**t.brief(), "state": t.st, "state_raw": t.state, "exit_state": t.exit_state,
         "flags": f["flags"], "flags_names": _flags(f["flags"]), "tgid": t.tgid,
         "real_parent": who(f.get("real_parent", 0)), "parent": who(f.get("parent", 0)),
         "group_leader": who(f.get("group_leader", 0)),
         "mm": t.mm, "active_mm": f.get("active_mm", 0), "stack": t.stack, "on_cpu": f.get("on_cpu"), "on_rq": f.get("on_rq"),
         "prio": f.get("prio"), "static_prio": f.get("static_prio"),
         "normal_prio": f.get("normal_prio"), "rt_priority": f.get("rt_priority"),
         "policy": POLICIES.get(f.get("policy"), f.get("policy")),
         "utime_ns": f.get("utime"), "stime_ns": f.get("stime"),
         "start_time_ns": f.get("start_time"), "sum_exec_runtime_ns": f.get("se.sum_exec_runtime"),
         "last_arrival_ns": f.get("sched_info.last_arrival"), "nvcsw": f.get("nvcsw"),
         "nivcsw": f.get("nivcsw"),
         "cpu_context": {k: v for k, v in cc.items() if k in ("pc", "sp", "fp")}}
    if fields:
        d["fields"] = _extra_fields(t, fields)
    return d


def task_render(d) -> str:
    t = d
    cpu = t["cpu"]
    lines = [f'PID: {t["pid"]:<7} TASK: {t["task"]:016x}  CPU: {cpu:<3} COMMAND: "{t["comm"]}"'
             + ("  [ACTIVE]" if t["active"] else "")]

    def who(w):
        return f'{w["task"]:016x} (pid {w["pid"]} "{w["comm"]}")' if w["pid"] is not None \
            else f'{w["task"]:016x}'
    rows = [
        ("STATE", f'{d["state"]} ({STATE_CODES.get(d["state"], "?")}); state {d["state_raw"]:#x}, '
                  f'exit_state {d["exit_state"]:#x}'),
        ("FLAGS", f'{d["flags"]:#x} {d["flags_names"]}'),
        ("TGID", d["tgid"]),
        ("REAL_PARENT", who(d["real_parent"])),
        ("PARENT", who(d["parent"])),
        ("GROUP_LEADER", who(d["group_leader"])),
        ("MM", f'{d["mm"]:#x}  ACTIVE_MM: {d["active_mm"]:#x}'),
        ("STACK", f'{d["stack"]:#x}'),
        ("ON_CPU/ON_RQ", f'{d["on_cpu"]} / {d["on_rq"]}'),
        ("PRIO", f'{d["prio"]} (static {d["static_prio"]}, normal {d["normal_prio"]}, '
                 f'rt {d["rt_priority"]}) {d["policy"]}'),
        ("UTIME/STIME", f'{(d["utime_ns"] or 0) / 1e9:.6f}s / {(d["stime_ns"] or 0) / 1e9:.6f}s'),
        ("RUNTIME", f'{(d["sum_exec_runtime_ns"] or 0) / 1e9:.6f}s'),
        ("START_TIME", f'{(d["start_time_ns"] or 0) / 1e9:.6f}s after boot'),
        ("LAST_ARRIVAL", f'{(d["last_arrival_ns"] or 0) / 1e9:.6f}s'),
        ("SWITCHES", f'{d["nvcsw"]} voluntary, {d["nivcsw"]} involuntary'),
        ("CPU_CONTEXT", "  ".join(f"{k}={v:#x}" for k, v in d["cpu_context"].items())),
    ]
    lines += [f"  {k:>13}: {v}" for k, v in rows]
    for k, v in d.get("fields", {}).items():
        lines.append(f"  {k} = {v}")
    return "\n".join(lines)


@command
class TaskCmd(KernelCommand):
    """Show the key task_struct fields of a task (crash's task).

Without a task: the current task of the selected thread. Shows state,
flags, parent, mm, stack, priorities and policy, CPU times, context-switch
counts and the saved cpu_context."""

    name = "task"
    json_addresses = TASK_ADDRESSES

    def add_arguments(self, p):
        p.add_argument("-R", dest="fields", default="", metavar="FIELD[,FIELD...]",
                       help="also print these task_struct members (dotted paths, e.g. se.vruntime)")
        p.add_argument("tasks", nargs="*", metavar="PID|TASK|COMM",
                       help="the tasks (default: the current task of the selected thread)")

    def run(self, args):
        fields = [f.strip() for f in args.fields.split(",") if f.strip()]
        targets = args.tasks or [None]
        return [task_data(resolve_task(a), fields) for a in targets]

    def render(self, data, args):
        return "\n\n".join(task_render(d) for d in data)
