"""Who waits for which lock, and who holds it (mutex, rw_semaphore, semaphore, completion,
wait queue, spin locks): the in-gdb half, which unwinds the tasks and reads their code.

The lock structs, their owner words and the waiter records a blocked task keeps on its
own stack are read by the gdb-free model (gdbkd/model/locks.py, which has the layouts
and versions; the qspinlock word: gdbkd/model/qspinlock.py). What needs gdb stays here:
the lock kind comes from the task's backtrace (``__mutex_lock``,
``rwsem_down_*_slowpath``, ``__down*``, ``wait_for_completion``), and holders that
record no owner (semaphores, reader-held rwsems, spin locks) are found from the code of
the live frames (kernel/lockrefs.py), else — *probable* only — as the tasks whose stack
holds the lock's address.

What cannot be read is said, never taken for "no owner" or "holds nothing": a lock
whose words cannot be decoded carries ``unknown`` (the reason), a task whose frames or
code cannot be read is named with the reason where holders were looked for, and a task
blocked in a lock function whose waiter record is not found waits on a node of its own
("address unknown").
"""

import gdb

from . import tasks as ktasks
from .stack import unwind_task
from .symbolize import lookup
from .memory import kernel
from ..model import qspinlock
from ..model.locks import StackScan, lock_state
from ..model.reader import MemoryFault
from ..model.lockup import sched_clock_now
from .lockrefs import acquisitions, spinning_on, SLOWPATHS

__all__ = ["gather", "wait_graph", "wait_kind", "LOCK_FUNCS"]

LOCK_FUNCS = {
    "mutex": ("__mutex_lock", "mutex_lock", "__mutex_lock_slowpath", "mutex_lock_interruptible",
              "mutex_lock_killable", "__mutex_lock_interruptible_slowpath",
              "__mutex_lock_killable_slowpath", "mutex_lock_nested", "__mutex_lock_common"),
    "rwsem": ("rwsem_down_write_slowpath", "rwsem_down_read_slowpath", "down_write", "down_read",
              "down_read_killable", "down_write_killable", "__down_read", "__down_write",
              "__down_read_common", "__down_write_common", "down_read_interruptible"),
    "semaphore": ("__down", "__down_common", "down", "down_interruptible", "down_killable",
                  "__down_interruptible", "__down_killable", "down_timeout", "__down_timeout"),
    "event": ("wait_for_completion", "__wait_for_common", "wait_for_common",
              "wait_for_completion_interruptible", "wait_for_completion_killable",
              "wait_for_completion_timeout", "wait_for_completion_io"),
}
_SCHED = {"__switch_to", "__schedule", "schedule", "schedule_preempt_disabled", "schedule_timeout",
          "io_schedule", "do_wait_for_common", "io_schedule_timeout", "rt_mutex_schedule"}


def wait_kind(names):
    """(kind, index of the innermost lock function) from a backtrace's function names."""
    for i, n in enumerate(names):
        base = (n or "").split(".")[0]
        for kind, funcs in LOCK_FUNCS.items():
            if base in funcs:
                return kind, i
    return None, None


class _Ctx:
    """One analysis: the model's stack scan (task list, stacks, waiter records) and, per
    task, its gdb frames and the locks its code holds."""

    def __init__(self):
        self.scan = StackScan(kernel(), ktasks.all_tasks())
        self.tasks = self.scan.tasks
        self.size = self.scan.size
        self.by_addr = self.scan.by_addr
        self.frames = {}
        self.held = {}
        self.undecoded = {}     # task -> why its held locks could not be read


def _task_frames(ctx, t):
    fr = ctx.frames.get(t.addr)
    if fr is None:
        try:
            if t.active_cpu is None:
                fr = unwind_task(t).frames
            else:                   # running: from its CPU's registers, through exceptions
                _, regs = ktasks.cpu_thread_regs(t)
                if regs:
                    fr = unwind_task(t, regs).frames
                else:
                    fr = []
                    ctx.undecoded[t.addr] = f"no registers for CPU {t.active_cpu}"
        except gdb.error as e:
            # said, not hidden: a task whose frames cannot be read holds "unknown", not nothing
            fr = []
            ctx.undecoded[t.addr] = f"its frames cannot be read: {e}"
        ctx.frames[t.addr] = fr
    return fr


def _held_by_code(ctx, t):
    h = ctx.held.get(t.addr)
    if h is None:
        try:
            h = acquisitions(_task_frames(ctx, t))
        except (gdb.error, gdb.MemoryError) as e:
            # said, not hidden: a holder that cannot be decoded is not "holds nothing"
            ctx.undecoded[t.addr] = str(e)
            h = []
        ctx.held[t.addr] = h
    return h


def _holders_by_code(ctx, lock_addr, exclude, running_only=False):
    """Tasks whose live call chain took lock_addr and did not release it (``running_only``:
    the tasks on a CPU, for spin locks: their holder cannot sleep or be preempted)."""
    out = []
    for t in ctx.tasks:
        if t.addr in exclude or (t.pid == 0 and t.active_cpu is None):
            continue
        if running_only and t.active_cpu is None:
            continue
        for h in _held_by_code(ctx, t):
            if h["lock"] == lock_addr:
                out.append((t.addr, h["at"]))
                break
    return out


def _where(names, idx, frames):
    """The first frame outside the lock and scheduler code: where the task waits."""
    if idx is None:
        return ""
    for j in range(idx, len(names)):
        base = (names[j] or "").split(".")[0]
        if base and not any(base in f for f in LOCK_FUNCS.values()) and base not in _SCHED:
            s = frames[j].sym(want_line=False)
            return s.label()
    return ""


def _task_info(t, now):
    """A task as the wait-for graph shows it: pid, comm, state, its CPU when running, and
    since when a running task has had its CPU, or a sleeping one last ran (sched_info,
    CONFIG_SCHED_INFO; the same clock as rq->clock)."""
    d = {"pid": t.pid, "comm": t.comm, "state": t.st, "where": ""}
    if t.active_cpu is not None:
        d["cpu"] = t.active_cpu
    la = (t.f or {}).get("sched_info.last_arrival")
    if now is not None and la and la <= now:
        d["since_last_arrival_s"] = round((now - la) / 1e9, 3)
    if t.active_cpu is not None:
        from ..model.lockup import softlockup_stuck_s
        stuck = softlockup_stuck_s(kernel(), t.active_cpu, now)
        if stuck is not None:
            d["watchdog_stuck_s"] = stuck       # the soft-lockup watchdog's "stuck for Ns"
    return d


def _waits_on(locks, waits, t, addr) -> bool:
    """Record that ``t`` waits on ``addr``; True when the lock is already in the graph
    (``t`` joins its waiters), False when the caller describes it."""
    waits[t.addr] = addr
    if addr in locks:
        locks[addr]["waiters"].append(t.addr)
        return True
    return False


def _lock_name(addr) -> str:
    """A lock's symbol (``kdspin_lock_a [kdspin]``), or "" when it has none."""
    s = lookup(addr, want_line=False)
    return s.label() if s.name and not s.name.startswith("[") else ""


def _synthetic(tag, t):
    """A graph node of its own for what ``t`` waits on when no lock address is known: the
    task's address with its top 16 bits replaced by ``tag`` (never a kernel address)."""
    return (tag << 48) | (t.addr & 0xFFFFFFFFFFFF)


def gather():
    """(tasks, locks, waits) for waitgraph.analyze: every UN task and what it waits on."""
    ctx = _Ctx()
    by_addr = {t.addr: t for t in ctx.tasks}
    tasks, locks, waits = {}, {}, {}

    now = sched_clock_now(kernel())

    def tinfo(t, where=""):
        d = tasks.get(t.addr)
        if d is None:
            d = tasks[t.addr] = _task_info(t, now)
        if where:
            d["where"] = where
        return d

    for t in ctx.tasks:
        if t.st != "UN":
            continue
        frames = _task_frames(ctx, t)
        names = [f.sym(want_line=False).name for f in frames]
        kind, idx = wait_kind(names)
        tinfo(t, _where(names, idx, frames))
        if not frames and t.addr in ctx.undecoded:
            # said, not dropped: a blocked task whose frames cannot be read waits on
            # something unknown (a node of its own, no owner)
            ev = _synthetic(0xE0E0, t)
            why = ctx.undecoded[t.addr]
            locks[ev] = {"name": "", "kind": "event", "owners": [], "probable": False,
                         "detail": f"what it waits for is unknown: {why}", "unknown": why,
                         "waiters": [t.addr]}
            waits[t.addr] = ev
            continue
        if kind is None:
            # no lock function: a wait_event() (a macro, inlined into its caller) leaves
            # only its wait_queue_entry on the stack, linked into the queue's head
            wq = ctx.scan.wait_queue(t)
            if wq is not None and not _waits_on(locks, waits, t, wq):
                tasks[t.addr]["where"] = _where(names, 0, frames)
                locks[wq] = {"name": _lock_name(wq) or ctx.scan.on_stack_name(wq), "kind": "wait queue",
                             "owners": [], "probable": False,
                             "detail": "no owner is recorded: whoever would wake it up",
                             "waiters": [t.addr]}
            continue
        if kind == "event":
            comp = ctx.scan.completion(t)
            if comp is None:
                ev = _synthetic(0xE0E0, t)      # a node per waiter: no owner
                locks[ev] = {"name": names[idx], "kind": "event", "owners": [], "probable": False,
                             "detail": "waiting for an event (completion/wait queue): which one "
                                       "is unknown (no waiter record found on its stack)",
                             "waiters": [t.addr]}
                waits[t.addr] = ev
                continue
            if _waits_on(locks, waits, t, comp):
                continue
            name = _lock_name(comp) or ctx.scan.on_stack_name(comp)
            locks[comp] = {"name": name, "kind": "completion", "owners": [], "probable": False,
                           "detail": "no owner is recorded: whoever would call complete()",
                           "waiters": [t.addr]}
            continue
        try:
            lock, waiters = ctx.scan.lock_wait(kind, t)
        except MemoryFault as e:            # this kernel's types lack the lock's wait_list
            lock, waiters, why = None, None, e.reason
        else:
            why = ctx.scan.unreadable.get(t.addr) or "no waiter record found on its stack"
        if lock is None:
            # said, not dropped: the task waits on a lock of this kind whose address is unknown
            node = _synthetic(0xE2E2, t)
            locks[node] = {"name": names[idx], "kind": kind, "owners": [], "probable": False,
                           "detail": f"address unknown: {why}", "unknown": why,
                           "waiters": [t.addr]}
            waits[t.addr] = node
            continue
        waits[t.addr] = lock
        if lock not in locks:
            st = lock_state(kernel(), kind, lock)
            owners, probable, detail = st.owners, st.probable, st.detail
            taken = {}
            if probable:
                # the strongest evidence first: code that took this lock in a live frame
                by_code = _holders_by_code(ctx, lock, set(waiters))
                if by_code:
                    taken = dict(by_code)
                    owners = list(dict.fromkeys(owners + [a for a, _ in by_code]))
                    detail += "; holder found by its code"
                    probable = False
                else:
                    owners = list(dict.fromkeys(owners + ctx.scan.holders_by_stack(lock, set(waiters))))
                    detail += _not_searched(ctx, set(waiters))
            else:
                for o in owners:
                    for h in _held_by_code(ctx, by_addr[o]) if o in by_addr else []:
                        if h["lock"] == lock:
                            taken[o] = h["at"]
            name = _lock_name(lock)
            locks[lock] = {"name": name, "kind": kind, "owners": owners, "probable": probable,
                           "detail": detail, "waiters": waiters,
                           "taken_at": {f"{a:#x}": at for a, at in taken.items()}}
            if st.unknown and not owners:
                locks[lock]["unknown"] = st.unknown
    _gather_spinners(ctx, tasks, locks, waits, tinfo)
    for l in locks.values():
        for o in l["owners"]:
            if o in by_addr:
                tinfo(by_addr[o])
    return tasks, locks, waits


def _not_searched(ctx, exclude) -> str:
    """"; not searched: T (why), …" for the tasks whose code or stack could not be read
    while looking for a holder (``exclude``: the lock's waiters), else ""."""
    why = {**ctx.scan.unreadable, **ctx.undecoded}
    parts = [f"{by_addr_comm(ctx, a)}: {w}" for a, w in why.items() if a not in exclude]
    return f"; not searched: {'; '.join(parts)}" if parts else ""


def _spin_site(frames, spin):
    """(index of the frame that called the slow path, its label)."""
    i = spin[3]
    at = i + 1 if (frames[i].sym(want_line=False).name or "").split(".")[0] in SLOWPATHS else i
    return at, frames[at].sym(want_line=False).label() if at < len(frames) else ""


def _gather_spinners(ctx, tasks, locks, waits, tinfo):
    """Every CPU in a spin-lock slow path: the lock it spins on and who holds it, proven
    from the running tasks' code (a spinner holding its own lock: AA). A CPU whose
    innermost slow path runs in an interrupt taken while it spun in another (5.0's
    soft-lockup report printing, queued on ``logbuf_lock``), on a lock whose word says
    nobody holds it, waits for nobody there: it was about to take it when stopped, and
    returns to the outer spin. Its wait is the outer one, and the inner is said."""
    for t in ctx.tasks:
        if t.active_cpu is None:
            continue
        frames = _task_frames(ctx, t)
        spin = spinning_on(frames)
        if spin is None:
            continue
        at, caller = _spin_site(frames, spin)
        passed = []
        while spin[1] is not None:
            free = qspinlock.free_spin(kernel(), spin[0], spin[1])
            outer = spinning_on(frames, at + 1) if free is not None else None
            if outer is None:
                break
            name = _lock_name(spin[1]) or f"{spin[1]:#x}"
            passed.append(f"{spin[0]} {name} at {caller}, which nobody holds ({free})")
            spin = outer
            at, caller = _spin_site(frames, spin)
        kind, lock, why, i = spin
        d = tinfo(t, caller)
        if passed:
            d["inner_spins"] = passed
        if lock is None:
            node = _synthetic(0xE1E1, t)        # a lock of unknown address: no owner
            locks[node] = {"name": "", "kind": kind, "owners": [], "probable": False,
                           "detail": f"address unknown: {why}", "waiters": [t.addr]}
            waits[t.addr] = node
            continue
        if _waits_on(locks, waits, t, lock):
            continue
        name = _lock_name(lock)
        by_code = _holders_by_code(ctx, lock, set(), running_only=True)
        detail = qspinlock.describe_spin(kernel(), kind, lock)
        free = qspinlock.free_spin(kernel(), kind, lock) is not None
        if by_code and free:
            # the word is the lock: code that seems to hold it missed a release (or the
            # holder dropped it as the CPUs stopped): no holder is proven
            detail += ("; nobody holds it by its word, though the code analysis names "
                       + ", ".join(f"{by_addr_comm(ctx, a)} (at {at})" for a, at in by_code)
                       + ": not proven (a release the analysis did not see, or the word re-initialised)")
            by_code = []
        elif not by_code:
            why_not = "; ".join(f"{by_addr_comm(ctx, a)}: {e}" for a, e in ctx.undecoded.items())
            detail += "; no running task's code holds it" + (f" ({why_not})" if why_not else "")
        elif kind == "spinlock" and len(by_code) > 1:
            # one holder at most: evidence that names several is wrong somewhere (a release
            # the analysis did not see), so it proves none of them
            detail += ("; owner unknown: the code analysis names " + ", ".join(
                f"{by_addr_comm(ctx, a)} (at {at})" for a, at in by_code) + ", and a spin lock has one")
            by_code = []
        locks[lock] = {"name": name, "kind": kind, "owners": [a for a, _ in by_code],
                       "probable": False, "detail": detail, "waiters": [t.addr],
                       "taken_at": {f"{a:#x}": at for a, at in by_code}}
        if free:
            locks[lock]["free"] = True


def by_addr_comm(ctx, addr):
    t = ctx.by_addr.get(addr)
    return f"{t.comm} (pid {t.pid})" if t else f"task {addr:#x}"


def wait_graph() -> dict:
    """kd deadlock's analysis: the wait-for graph (analysis/waitgraph.py) of what
    :func:`gather` finds, with the running RCU grace period when it has stalled ("rcu")."""
    from ..analysis import waitgraph
    from ..model import rcu
    tasks, lks, waits = gather()
    r = waitgraph.analyze(tasks, lks, waits)
    k = kernel()
    now = sched_clock_now(kernel())
    try:
        gp = rcu.grace_period(k)
    except MemoryFault as e:
        gp = {"stalled": None, "problems": [f"rcu_state: {e}"], "cpus": [], "tasks": []}
    if gp and gp["stalled"] is not False:
        by_addr = {t.addr: t for t in ktasks.all_tasks()}
        for t in [a for _, a in gp["cpus"] if a] + gp["tasks"]:
            if t in by_addr and t not in tasks:
                tasks[t] = _task_info(by_addr[t], now)
        r["rcu"] = gp
    if any(t.get("watchdog_stuck_s") or (a in waits and t.get("cpu") is not None)
           for a, t in tasks.items()):
        from ..model.lockup import HARD_LOCKUP_UNKNOWN
        r["hard_lockup"] = HARD_LOCKUP_UNKNOWN      # a CPU spins or is stuck: with interrupts off? unknown
    return r
