"""Tasks without gdb: enumeration, state letters, selection.

Enumeration follows crash: the per-CPU idle tasks (``rq->idle``, pid 0, on no
list) for every possible CPU, then every thread group on ``init_task.tasks``,
each group's threads from ``signal->thread_head`` / ``task->thread_node``
(v3.14+, commit 0c740d0afc3b; before that ``task->thread_group``, which v6.7
removed, commit 8e1f385104ac). Every task_struct is read with one read and
decoded from it (:class:`gdbkd.model.layout.StructLayout`).

Version differences, all handled by probing members:

* ``task_struct.state`` was renamed ``__state`` (and became ``unsigned int``)
  in 5.14, commit 2f064a59a11f ("sched: Change task_struct::state").
* The task's CPU lives in ``task->cpu`` from 4.9 (THREAD_INFO_IN_TASK) and
  back in ``task->thread_info.cpu`` from 5.16 (commit bcf9033e5449).
* The task a CPU runs: arm64 keeps ``current`` in ``SP_EL0`` while the CPU is in
  the kernel (v4.10, commit 6cdf9c7ca687, with THREAD_INFO_IN_TASK the thread_info
  it stores is the task), else that CPU's ``rq->curr`` (:func:`current_task`).
  An idle task's gdb thread id is ``IDLE_TID_BASE + cpu`` (:attr:`Task.tid`).
* State bits (include/linux/sched.h), stable from 4.14 through 6.12:
  RUNNING 0, INTERRUPTIBLE 0x1, UNINTERRUPTIBLE 0x2, __TASK_STOPPED 0x4,
  __TASK_TRACED 0x8, EXIT_DEAD 0x10, EXIT_ZOMBIE 0x20, TASK_PARKED 0x40,
  TASK_DEAD 0x80, TASK_WAKEKILL 0x100, TASK_WAKING 0x200, TASK_NOLOAD 0x400,
  TASK_NEW 0x800; TASK_IDLE = UNINTERRUPTIBLE | NOLOAD (4.2+).

A corrupt page must not sink the list: an unreadable task_struct is skipped
and counted; a list that loops, hits NULL, poison or an unreadable node is
walked back from its head (each task kept once) and every back link is
checked against the walk. What was wrong is kept in :attr:`TaskList.damage`
(:class:`gdbkd.model.lists.ListProblem`, one per damaged list, naming the
task whose link is wrong) and, as lines, in :attr:`TaskList.problems`.
"""

from .kernel import per_stop
from .lists import walk_entries
from .percpu import per_cpu_addr, possible_cpus, present_cpus
from .reader import MemoryFault
from ..textutil import escape
from ..arm64.regs import decode_cpu_context, exception_level

__all__ = ["Task", "TaskList", "task_list", "all_tasks", "read_task", "active_tasks",
           "state_code", "STATE_CODES", "thread_size", "parse_task_spec", "select_tasks",
           "PF_KTHREAD", "IDLE_TID_BASE", "is_state", "ps_letter", "tasks_by_addr",
           "current_task", "kernel_mode"]

PF_KTHREAD = 0x00200000
IDLE_TID_BASE = 4194304        # thread id of CPU n's idle task: PID_MAX_LIMIT + n
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


def is_state(word: str) -> bool:
    return word in STATE_CODES


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


def ps_letter(state: int) -> str:
    """``ps``'s one letter for ``__state``/``state`` (R, S, D, T, t, Z, X, I; ``?``): what
    the dump server and the live proxy show in a thread's name (TASK_IDLE, 0x402, is I)."""
    if state == 0:
        return "R"
    for bit, ch in ((TASK_UNINTERRUPTIBLE, "D"), (TASK_INTERRUPTIBLE, "S"), (TASK_STOPPED, "T"),
                    (TASK_TRACED, "t"), (EXIT_ZOMBIE, "Z"), (EXIT_DEAD, "X"),
                    (TASK_UNINTERRUPTIBLE | TASK_NOLOAD, "I")):
        if state & bit:
            idle = TASK_UNINTERRUPTIBLE | TASK_NOLOAD
            return "I" if state & idle == idle else ch
    return "?"


class Task:
    """One task_struct, decoded from a single read. ``fields`` holds the raw members
    (:data:`gdbkd.model.layout.LAYOUTS`); ``active_cpu`` is the CPU it was running on
    (``rq->curr``) or None; ``idle_cpu`` the CPU whose idle task it is, or None."""

    __slots__ = ("addr", "fields", "ppid", "active_cpu", "idle_cpu")

    def __init__(self, addr: int, fields: dict):
        self.addr = addr
        self.fields = fields
        self.ppid = None
        self.active_cpu = None
        self.idle_cpu = None

    @property
    def f(self):
        """``fields`` (the short name older commands use)."""
        return self.fields

    @property
    def pid(self):
        return self.fields["pid"]

    @property
    def tgid(self):
        return self.fields["tgid"]

    @property
    def tid(self) -> int:
        """The gdb thread id of this task: its pid, or IDLE_TID_BASE + cpu for an idle task."""
        if self.pid == 0 and self.idle_cpu is not None:
            return IDLE_TID_BASE + self.idle_cpu
        return self.pid

    @property
    def comm_bytes(self) -> bytes:
        return self.fields["comm"].split(b"\0", 1)[0]

    @property
    def name(self) -> str:
        """The command name decoded (not escaped: escape before printing)."""
        return self.comm_bytes.decode("utf-8", "replace")

    @property
    def comm(self) -> str:
        """The command name, escaped for terminals."""
        return escape(self.comm_bytes)

    @property
    def state(self) -> int:
        return self.fields.get("__state", self.fields.get("state", 0)) & 0xFFFFFFFF

    @property
    def exit_state(self) -> int:
        return self.fields.get("exit_state", 0)

    @property
    def state_code(self) -> str:
        return state_code(self.state, self.exit_state)

    st = state_code

    @property
    def cpu(self) -> int:
        if "cpu" in self.fields:
            return self.fields["cpu"]
        return self.fields.get("thread_info.cpu", 0)

    @property
    def is_kthread(self) -> bool:
        return bool(self.fields["flags"] & PF_KTHREAD)

    @property
    def mm(self) -> int:
        return self.fields.get("mm", 0)

    @property
    def stack(self) -> int:
        return self.fields.get("stack", 0)

    @property
    def cpu_context(self) -> dict:
        """Callee-saved registers stored by cpu_switch_to: x19..x28, fp, sp, pc
        (:func:`gdbkd.arm64.regs.decode_cpu_context`); {} when not read."""
        return decode_cpu_context(self.fields.get("thread.cpu_context", b""))

    def name_for_display(self) -> str:
        return f"[{self.comm}]" if self.is_kthread else self.comm

    @property
    def run_cpu(self) -> int:
        """The CPU this task runs on (``active_cpu``), else the one it last ran or is queued
        on (:attr:`cpu`): the CPU kd's headers and the thread lists show."""
        return self.active_cpu if self.active_cpu is not None else self.cpu

    def header(self) -> str:
        return f'PID: {self.pid:<7} TASK: {self.addr:016x}  CPU: {self.run_cpu:<3} COMMAND: "{self.comm}"'

    def brief(self) -> dict:
        return {"pid": self.pid, "tgid": self.tgid, "task": self.addr, "comm": self.comm,
                "state": self.st, "cpu": self.cpu, "active": self.active_cpu is not None}


class TaskList(list):
    """The tasks, sorted by pid (idle tasks by CPU), with ``problems``: one line per
    part of the lists that could not be read, and ``damage``: the damaged lists among
    them as :class:`gdbkd.model.lists.ListProblem`."""

    def __init__(self, tasks=(), problems=(), damage=()):
        super().__init__(tasks)
        self.problems = list(problems)
        self.damage = list(damage)


def task_layout(k):
    return k.layout("struct task_struct")


def read_task(k, addr: int) -> Task:
    """The task_struct at ``addr`` (raises MemoryFault)."""
    return Task(addr, task_layout(k).read(k.reader, addr))


@per_stop
def thread_size(k) -> int:
    """THREAD_SIZE: sizeof(init_stack) (16 KiB on arm64 with 4K pages, 32 KiB with KASAN;
    32 KiB on the course's 5.0, whose MIN_THREAD_SHIFT is 15). ``init_stack`` is a
    symbol of the linker script since v4.16 (commit 0500871f21b2), typed only by an
    extern declaration: gdb sizes it, a type source that skips declarations (drgn) has
    no answer. Then, as drgn does, the init stack's bounds in the linker script:
    ``__start_init_task``/``__end_init_task`` (v4.16 – v6.9), renamed
    ``__start_init_stack``/``__end_init_stack`` in v6.10 (commit 8f69cba096b5c)."""
    n = k.sizeof("init_stack")
    if n:
        return n
    for start, end in (("__start_init_stack", "__end_init_stack"),
                       ("__start_init_task", "__end_init_task")):
        a, b = k.sym(start), k.sym(end)
        if a is not None and b is not None and b > a:
            return b - a
    return 16384


def _rq(k, cpu):
    return per_cpu_addr(k, k.need_sym("runqueues"), cpu)


@per_stop
def active_tasks(k) -> dict:
    """{cpu: task address} of ``rq->curr`` for every present CPU (see percpu.py)."""
    out = {}
    off = k.offset("struct rq", "curr")
    for cpu in present_cpus(k):
        try:
            out[cpu] = k.reader.u64(_rq(k, cpu) + off)
        except (MemoryFault, IndexError):
            pass
    return out


@per_stop
def tasks_by_addr(k) -> dict:
    """{task address: Task} of :func:`task_list`."""
    return {t.addr: t for t in task_list(k)}


def kernel_mode(cpsr) -> bool:
    """Whether a CPU with this ``cpsr`` (PSTATE) is in EL1 or above, where its ``SP_EL0``
    is ``current``."""
    return cpsr is not None and exception_level(cpsr) >= 1


def current_task(k, regs: dict, cpu=None):
    """The listed Task a CPU runs, from its registers (``cpsr``, ``SP_EL0``): ``SP_EL0``
    while it is in EL1 or above, else ``rq->curr`` of CPU (when given); None when neither
    names a task on the list."""
    by_addr = tasks_by_addr(k)
    if kernel_mode(regs.get("cpsr")):
        t = by_addr.get(regs.get("SP_EL0"))
        if t is not None:
            return t
    if cpu is None:
        return None
    return by_addr.get(active_tasks(k).get(cpu))


@per_stop
def task_list(k) -> TaskList:
    """Every task (idle tasks, processes, threads), sorted by pid; kept per stop."""
    lay = task_layout(k)
    tasks = {}
    order = []
    problems = []
    damage = []

    def get(addr, idle_cpu=None):
        t = tasks.get(addr)
        if t is None and addr not in tasks:
            try:
                t = read_task(k, addr)
            except MemoryFault as e:
                problems.append(f"task {addr:#x} unreadable: {e.reason}")
                tasks[addr] = None
                return None
            tasks[addr] = t
            order.append(t)
        if t is not None and idle_cpu is not None and t.idle_cpu is None:
            t.idle_cpu = idle_cpu
        return t

    idle_off = k.offset("struct rq", "idle")
    for cpu in possible_cpus(k):
        try:
            idle = k.reader.u64(_rq(k, cpu) + idle_off)
        except (MemoryFault, IndexError) as e:
            problems.append(f"CPU {cpu}'s runqueue unreadable: {e}")
            continue
        if idle:
            get(idle, idle_cpu=cpu)
    init = k.need_sym("init_task")
    get(init)
    tasks_off = lay.offset("tasks")

    def tasks_head(node):
        # the walk reads each task whole (it is read for the list anyway); an unreadable
        # task_struct still gives its list_head alone, so the walk goes on past it. A
        # list_head that cannot be read either is the list's damage (a wild pointer, or a
        # corrupt page), said by the walk; the task's own line (the dump server's warnings)
        # gives the page's reason.
        t = get(node - tasks_off)
        head_raw = t.fields.get("tasks") if t is not None else None
        if head_raw is not None and len(head_raw) >= 16:
            return head_raw
        return k.reader.read(node, 16)

    def describe(addr):
        t = tasks.get(addr)
        return f"pid {t.pid} ({t.comm})" if t is not None else None

    w = walk_entries(k.reader, init + tasks_off, tasks_off, limit=1 << 22, read_head=tasks_head)
    for p in w.problems("task list (init_task.tasks)", describe):
        damage.append(p)
        problems.append(p.line())
    leaders = [init] + w.entries()
    tn_off = lay.get_offset("thread_node")
    th_off = k.offset("struct signal_struct", "thread_head") if tn_off is not None else None
    tg_off = lay.get_offset("thread_group")
    for leader in leaders:
        lt = get(leader)
        if lt is None:
            continue
        if tn_off is not None and th_off is not None:
            sig = lt.fields.get("signal")
            if not sig:
                continue
            head, link = sig + th_off, tn_off
        elif tg_off is not None:
            head, link = leader + tg_off, tg_off
        else:
            continue
        if _alone(lt, head, "thread_node" if link == tn_off else "thread_group"):
            continue
        # the walk reads each thread's list_head; the tasks are read after it, so
        # name the owners from the task_structs where they are read already
        tw = walk_entries(k.reader, head, link, limit=1 << 16)
        for e in tw.entries():
            get(e)
        for p in tw.problems(f"thread list of pid {lt.pid} ({lt.comm})", describe):
            damage.append(p)
            problems.append(p.line())
    for cpu, cur in active_tasks(k).items():
        t = tasks.get(cur)
        if t is not None:
            t.active_cpu = cpu
    for t in order:
        p = tasks.get(t.fields.get("real_parent", 0))
        t.ppid = p.pid if p is not None else 0
    order.sort(key=lambda t: (t.pid, t.idle_cpu if t.idle_cpu is not None else t.cpu
                              if t.pid == 0 else 0))
    return TaskList(order, problems, damage)


def _alone(task, head, member) -> bool:
    """Whether the thread list at HEAD holds only TASK, seen from TASK's own list_head
    (already read with the task): its next and prev both point at the head. Most thread
    groups have one thread; this spares reading each group's signal_struct."""
    raw = task.fields.get(member)
    if not raw or len(raw) < 16:
        return False
    return int.from_bytes(raw[:8], "little") == head == int.from_bytes(raw[8:16], "little")


def all_tasks(k) -> TaskList:
    return task_list(k)


def parse_task_spec(s: str):
    """("pid", n) | ("task", addr) | ("comm", name): crash's rules — a decimal number
    is a pid, a hex number (0x… or ≥ 9 hex digits) a task address, anything else a
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


def _matches(t, spec) -> bool:
    kind, v = spec
    if kind == "pid":
        return t.pid == v
    if kind == "task":
        return t.addr == v
    return t.comm_bytes == v.encode() or t.comm == v


def select_tasks(tasks, specs=(), states=(), kernel=False, user=False, active=False):
    """The one task selector (ps, foreach, bt, task): tasks matching any of ``specs``
    (parse_task_spec results; none = all), in one of ``states`` (none = any),
    kernel threads only / user tasks only, running on a CPU only."""
    out = []
    for t in tasks:
        if states and t.st not in states:
            continue
        if kernel and not t.is_kthread or user and t.is_kthread:
            continue
        if active and t.active_cpu is None:
            continue
        if specs and not any(_matches(t, s) for s in specs):
            continue
        out.append(t)
    return out
