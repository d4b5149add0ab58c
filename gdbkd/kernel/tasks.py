"""Tasks: enumeration, state letters, lookup, and the task a gdb thread stands for.

Enumeration follows crash: the per-CPU idle tasks (``rq->idle``, pid 0; not on
any list), then every thread group on ``init_task.tasks``, each group's threads
from ``signal->thread_head`` / ``task->thread_node`` (that pair exists since
3.14, commit 0c740d0afc3b "introduce for_each_thread() to replace the buggy
while_each_thread()"). Every task_struct is read with one ``read_memory`` and
decoded in Python (see :mod:`.structs`).

Version differences, all handled by probing members:

* ``task_struct.state`` was renamed ``__state`` (and became ``unsigned int``)
  in 5.14, commit 2f064a59a11f ("sched: Change task_struct::state").
* The task's CPU lives in ``task->cpu`` from 4.9 (THREAD_INFO_IN_TASK) and
  back in ``task->thread_info.cpu`` from 5.16 (commit bcf9033e5449, "sched:
  move CPU field back into thread_info if THREAD_INFO_IN_TASK").
* State bits (include/linux/sched.h) have been stable from 4.14 through 6.12:
  RUNNING 0, INTERRUPTIBLE 0x1, UNINTERRUPTIBLE 0x2, __TASK_STOPPED 0x4,
  __TASK_TRACED 0x8, EXIT_DEAD 0x10, EXIT_ZOMBIE 0x20, TASK_PARKED 0x40,
  TASK_DEAD 0x80, TASK_WAKEKILL 0x100, TASK_WAKING 0x200, TASK_NOLOAD 0x400,
  TASK_NEW 0x800; TASK_IDLE = UNINTERRUPTIBLE | NOLOAD (4.2+).
"""

import gdb

from .types import read_ulong, symbol_address, field_offset
from .structs import layout
from .snapshot import memo
from .percpu import per_cpu_addr, possible_cpus, online_cpus, on_thread, cpu_of_thread
from .access import user_thread
from ..textutil import escape

__all__ = ["Task", "all_tasks", "task_by_addr", "find_tasks", "active_tasks", "state_code",
           "STATE_CODES", "thread_size", "thread_task", "thread_regs", "PF_KTHREAD",
           "parse_task_spec", "task_from_arg"]

PF_KTHREAD = 0x00200000
TASK_INTERRUPTIBLE = 0x1
TASK_UNINTERRUPTIBLE = 0x2
TASK_STOPPED = 0x4
TASK_TRACED = 0x8
EXIT_DEAD = 0x10
EXIT_ZOMBIE = 0x20
TASK_PARKED = 0x40
TASK_DEAD = 0x80
TASK_WAKING = 0x200
TASK_NOLOAD = 0x400
TASK_NEW = 0x800

STATE_CODES = {
    "RU": "running or runnable", "IN": "interruptible sleep", "UN": "uninterruptible sleep (D)",
    "ID": "idle kthread sleep (TASK_IDLE)", "ST": "stopped", "TR": "traced", "ZO": "zombie",
    "DE": "dead", "PA": "parked kthread", "WA": "waking", "NE": "new",
}

_TASK_FIELDS = [
    "__state", "state", "exit_state", "flags", "pid", "tgid", "comm", "real_parent",
    "parent", "group_leader", "mm", "active_mm", "stack", "tasks.next", "thread_node.next",
    "signal", "on_cpu", "on_rq", "cpu", "thread_info.cpu", "thread_info.flags", "prio",
    "static_prio", "normal_prio", "rt_priority", "policy", "thread.cpu_context",
    "se.sum_exec_runtime", "se.vruntime", "utime", "stime", "start_time", "nvcsw", "nivcsw",
    "sched_info.last_arrival", "cred", "rss_stat",
]


def task_layout():
    return layout("struct task_struct", _TASK_FIELDS)


def state_code(state: int, exit_state: int) -> str:
    """crash's two-letter state for ``__state``/``state`` and ``exit_state``."""
    if exit_state & EXIT_ZOMBIE:
        return "ZO"
    if exit_state & EXIT_DEAD:
        return "DE"
    if state == 0:
        return "RU"
    if state & TASK_UNINTERRUPTIBLE:
        return "ID" if state & TASK_NOLOAD else "UN"
    if state & TASK_INTERRUPTIBLE:
        return "IN"
    if state & TASK_STOPPED:
        return "ST"
    if state & TASK_TRACED:
        return "TR"
    if state & TASK_PARKED:
        return "PA"
    if state & (TASK_DEAD | EXIT_DEAD):
        return "DE"
    if state & EXIT_ZOMBIE:
        return "ZO"
    if state & TASK_WAKING:
        return "WA"
    if state & TASK_NEW:
        return "NE"
    return "??"


class Task:
    """One task_struct, decoded from a single read."""

    __slots__ = ("addr", "f", "ppid", "active_cpu")

    def __init__(self, addr: int, fields: dict):
        self.addr = addr
        self.f = fields
        self.ppid = None
        self.active_cpu = None

    @property
    def pid(self):
        return self.f["pid"]

    @property
    def tgid(self):
        return self.f["tgid"]

    @property
    def comm_bytes(self) -> bytes:
        return self.f["comm"].split(b"\0", 1)[0]

    @property
    def comm(self) -> str:
        """The command name, escaped for terminals."""
        return escape(self.comm_bytes)

    @property
    def state(self) -> int:
        return self.f.get("__state", self.f.get("state", 0)) & 0xFFFFFFFF

    @property
    def exit_state(self) -> int:
        return self.f.get("exit_state", 0)

    @property
    def st(self) -> str:
        return state_code(self.state, self.exit_state)

    @property
    def cpu(self) -> int:
        if "cpu" in self.f:
            return self.f["cpu"]
        return self.f.get("thread_info.cpu", 0)

    @property
    def is_kthread(self) -> bool:
        return bool(self.f["flags"] & PF_KTHREAD)

    @property
    def mm(self) -> int:
        return self.f.get("mm", 0)

    @property
    def stack(self) -> int:
        return self.f.get("stack", 0)

    @property
    def cpu_context(self) -> dict:
        """Callee-saved registers stored by cpu_switch_to (arm64 ``struct cpu_context``:
        x19..x28, fp, sp, pc — unchanged from 3.7 through 6.12)."""
        raw = self.f.get("thread.cpu_context", b"")
        words = [int.from_bytes(raw[i:i + 8], "little") for i in range(0, len(raw) - 7, 8)]
        if len(words) < 13:
            return {}
        d = {f"x{19 + i}": words[i] for i in range(10)}
        d.update(fp=words[10], sp=words[11], pc=words[12])
        return d

    def name_for_display(self) -> str:
        return f"[{self.comm}]" if self.is_kthread else self.comm

    def header(self) -> str:
        cpu = self.active_cpu if self.active_cpu is not None else self.cpu
        return f'PID: {self.pid:<7} TASK: {self.addr:016x}  CPU: {cpu:<3} COMMAND: "{self.comm}"'

    def brief(self) -> dict:
        return {"pid": self.pid, "tgid": self.tgid, "task": f"{self.addr:#x}", "comm": self.comm,
                "state": self.st, "cpu": self.cpu, "active": self.active_cpu is not None}


def thread_size() -> int:
    """THREAD_SIZE: sizeof(init_stack) (16 KiB on arm64 with 4K pages, 32 KiB with KASAN)."""
    def f():
        try:
            return int(gdb.parse_and_eval("sizeof(init_stack)"))
        except gdb.error:
            return 16384
    return memo("thread_size", f)


def read_task(addr: int) -> Task:
    return Task(addr, task_layout().read(addr))


def _rq_field_addr(cpu: int, field: str) -> int:
    return per_cpu_addr(symbol_address("runqueues"), cpu) + field_offset("struct rq", field)


def active_tasks() -> dict:
    """{cpu: task address} of ``rq->curr`` for every online CPU."""
    def f():
        out = {}
        for cpu in online_cpus():
            try:
                out[cpu] = read_ulong(_rq_field_addr(cpu, "curr"))
            except (gdb.error, gdb.MemoryError):
                pass
        return out
    return memo("active_tasks", f)


def _walk(head_addr: int, link_off: int, limit=1 << 20):
    """Addresses of the containers on the list at ``head_addr`` (link at ``link_off``)."""
    seen = set()
    node = read_ulong(head_addr)
    while node != head_addr and node and len(seen) < limit:
        if node in seen:
            raise gdb.GdbError(f"task list loops at {node:#x}")
        seen.add(node)
        yield node - link_off
        node = read_ulong(node)


def _enumerate() -> list:
    lay = task_layout()
    tasks = {}
    order = []

    def get(addr):
        t = tasks.get(addr)
        if t is None:
            t = tasks[addr] = read_task(addr)
            order.append(t)
        return t

    # idle tasks first (pid 0), one per possible CPU
    try:
        for cpu in possible_cpus():
            idle = read_ulong(_rq_field_addr(cpu, "idle"))
            if idle:
                get(idle)
    except (gdb.error, gdb.MemoryError):
        pass
    init = symbol_address("init_task")
    get(init)
    tasks_off = lay.offset("tasks.next")
    tn_off = lay.offset("thread_node.next") if "thread_node.next" in lay else None
    th_off = field_offset("struct signal_struct", "thread_head") if tn_off is not None else None
    leaders = [init] + list(_walk(init + tasks_off, tasks_off))
    for leader in leaders:
        try:
            lt = get(leader)
            if tn_off is None or not lt.f.get("signal"):
                continue
            for t in _walk(lt.f["signal"] + th_off, tn_off, limit=1 << 16):
                get(t)
        except (gdb.MemoryError, gdb.error):
            continue
    for cpu, cur in active_tasks().items():
        if cur in tasks:
            tasks[cur].active_cpu = cpu
    by_addr = tasks
    for t in order:
        p = by_addr.get(t.f.get("real_parent", 0))
        t.ppid = p.pid if p is not None else 0
    order.sort(key=lambda t: (t.pid, t.cpu if t.pid == 0 else 0))
    return order


def all_tasks() -> list:
    """Every task (idle tasks, processes, threads), sorted by pid; cached per stop."""
    return memo("all_tasks", _enumerate)


def task_by_addr(addr: int):
    for t in all_tasks():
        if t.addr == addr:
            return t
    return None


def parse_task_spec(s: str):
    """("pid", n) | ("task", addr) | ("comm", name): crash's rules — a decimal number
    is a pid, a hex number (0x… or ≥ 16 hex digits) a task address, anything else a
    command name."""
    if s.isdigit():
        return ("pid", int(s))
    t = s.lower()
    if t.startswith("0x"):
        try:
            return ("task", int(t, 16))
        except ValueError:
            pass
    elif len(t) >= 9 and all(c in "0123456789abcdef" for c in t):
        return ("task", int(t, 16))
    return ("comm", s)


def find_tasks(spec) -> list:
    kind, v = spec
    out = []
    for t in all_tasks():
        if kind == "pid" and t.pid == v:
            out.append(t)
        elif kind == "task" and t.addr == v:
            out.append(t)
        elif kind == "comm" and (t.comm_bytes == v.encode() or t.comm == v):
            out.append(t)
    if kind == "task" and not out:
        # not on the lists (exited, or a stale pointer): decode it anyway
        try:
            out.append(read_task(v))
        except (gdb.MemoryError, gdb.error):
            pass
    return out


def task_from_arg(arg: str, error):
    """The single task named by ``arg`` (pid, task address or comm); calls ``error(msg)``."""
    spec = parse_task_spec(arg)
    found = find_tasks(spec)
    if not found:
        error(f"no task {escape(arg)}")
    if spec[0] == "pid" and spec[1] == 0 and len(found) > 1:
        return found[0]
    if len(found) > 1 and spec[0] == "comm":
        pids = ", ".join(str(t.pid) for t in found[:8])
        error(f"{len(found)} tasks named {escape(arg)} (pids {pids}…): give a pid")
    return found[0]


_REGS = ("pc", "sp", "x29", "x30", "cpsr", "SP_EL0")


def thread_regs(thread=None) -> dict:
    """pc, sp, fp, lr, cpsr (and SP_EL0 if the target has it) of a gdb thread's newest frame."""
    thread = thread or user_thread()
    if thread is None:
        raise gdb.GdbError("no thread selected (is a target connected?)")

    def read(fr):
        out = {}
        for r in _REGS:
            try:
                out[r] = int(fr.read_register(r)) & 0xFFFFFFFFFFFFFFFF
            except (gdb.error, ValueError):
                pass
        return out
    regs = on_thread(thread, read)
    regs["fp"] = regs.pop("x29", 0)
    regs["lr"] = regs.pop("x30", 0)
    return regs


def thread_task(thread=None):
    """(Task, regs) for the task a gdb thread is running.

    Live: ``SP_EL0`` holds ``current`` while the CPU is in EL1 (arm64 since 4.10);
    otherwise the task whose stack holds ``sp``; otherwise ``rq->curr`` of the
    thread's CPU."""
    thread = thread or user_thread()
    regs = thread_regs(thread)
    tasks = all_tasks()
    by_addr = {t.addr: t for t in tasks}
    el = (regs.get("cpsr", 0) >> 2) & 3
    cur = regs.get("SP_EL0")
    if el >= 1 and cur in by_addr:
        return by_addr[cur], regs
    sp = regs.get("sp", 0)
    size = thread_size()
    for t in tasks:
        if t.stack and t.stack <= sp < t.stack + size:
            return t, regs
    cpu = cpu_of_thread(thread)
    if cpu is not None:
        a = active_tasks().get(cpu)
        if a in by_addr:
            return by_addr[a], regs
    raise gdb.GdbError("cannot tell which task the selected thread is running")
