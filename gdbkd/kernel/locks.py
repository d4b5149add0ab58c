"""Who waits for which lock, and who holds it (mutex, rw_semaphore, semaphore).

A task blocked in a sleeping lock keeps its waiter record on its own stack,
linked into the lock's ``wait_list``:

- ``struct mutex_waiter {struct list_head list; struct task_struct *task; …}``
- ``struct rwsem_waiter {struct list_head list; struct task_struct *task; enum type; …}``
- ``struct semaphore_waiter {struct list_head list; struct task_struct *task; bool up;}``

(``task`` at offset 16 in all three, v4.x–6.12, without CONFIG_DEBUG_MUTEXES,
which adds a magic pointer before ``task`` in mutex_waiter). The stack is
scanned for a record whose ``task`` is the task itself and whose list links are
consistent; the ring is followed to the node that is not on any task stack:
the lock's ``wait_list``. The lock kind comes from the task's backtrace
(``__mutex_lock``, ``rwsem_down_*_slowpath``, ``__down*``).

Owners:
- mutex: ``owner & ~0x7`` (flags 0x1 WAITERS, 0x2 HANDOFF, 0x4 PICKUP; the owner
  word exists since v4.10, commit 3ca0ff571b09 "locking/mutex: Rework mutex::owner").
- rw_semaphore (v5.3+ encoding, commit 94a9717b3c40): ``count`` bit 0 writer
  locked, bits 8+ reader count; ``owner`` bit 0 READER_OWNED (then the owner
  field only names the last reader to take it), bit 1 NONSPINNABLE.
- semaphore: no owner field. Holders are tasks (other than its waiters) whose
  stack holds the semaphore's address: *probable*. Reader-owned rwsems get the
  same search, plus the owner-field hint.
"""

import gdb

from . import tasks as ktasks
from .stack import unwind_task
from .symbolize import lookup
from .memory import kernel, read_bytes
from .stackranges import thread_size
from .types import field_offset, lookup_type
from ..model.lists import walk_list
from ..model.reader import MemoryFault
from .lockrefs import acquisitions, spinning_on, qspinlock_detail, SLOWPATHS

__all__ = ["gather", "wait_graph", "wait_kind", "LOCK_FUNCS"]

_M = 0xFFFFFFFFFFFFFFFF

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
_STRUCT = {"mutex": "struct mutex", "rwsem": "struct rw_semaphore", "semaphore": "struct semaphore"}
_SCHED = {"__switch_to", "__schedule", "schedule", "schedule_preempt_disabled", "schedule_timeout",
          "io_schedule", "do_wait_for_common", "io_schedule_timeout", "rt_mutex_schedule"}


def _is_kptr(v):
    return v >= 0xFFFF000000000000 and v & 7 == 0


def wait_kind(names):
    """(kind, index of the innermost lock function) from a backtrace's function names."""
    for i, n in enumerate(names):
        base = (n or "").split(".")[0]
        for kind, funcs in LOCK_FUNCS.items():
            if base in funcs:
                return kind, i
    return None, None


class _Ctx:
    def __init__(self):
        self.tasks = [t for t in ktasks.all_tasks()]
        self.size = thread_size()
        self.ranges = [(t.stack, t.stack + self.size) for t in self.tasks if t.stack]
        self.by_addr = {t.addr: t for t in self.tasks}
        self._stacks = {}
        self.frames = {}
        self.held = {}
        self.undecoded = {}     # task -> why its held locks could not be read

    def on_a_stack(self, a):
        return any(lo <= a < hi for lo, hi in self.ranges)

    def stack_bytes(self, t):
        b = self._stacks.get(t.addr)
        if b is None:
            try:
                b = read_bytes(t.stack, self.size) if t.stack else b""
            except gdb.MemoryError:
                b = b""
            self._stacks[t.addr] = b
        return b


def _u64(b, i):
    return int.from_bytes(b[i:i + 8], "little")


def _find_wait_list(ctx, t, task_off=16, list_off=0):
    """The wait list head reached from t's waiter record on its own stack, and the ring.
    The record holds ``t`` at ``task_off`` and its list_head at ``list_off`` (a lock
    waiter: 16 and 0; a completion's swait_queue: 0 and 8)."""
    st = ctx.stack_bytes(t)
    for i in range(0, len(st) - max(task_off, list_off + 8) - 8, 8):
        if _u64(st, i + task_off) != t.addr:
            continue
        nxt, prv = _u64(st, i + list_off), _u64(st, i + list_off + 8)
        if not (_is_kptr(nxt) and _is_kptr(prv)):
            continue
        me = t.stack + i + list_off
        try:
            if int.from_bytes(read_bytes(nxt + 8, 8), "little") != me:
                continue
        except gdb.MemoryError:
            continue
        # the one walker (gdbkd/model/lists.py): a ring that does not come back to the
        # waiter (a loop elsewhere, NULL, poison, an unreadable link) is no wait list
        w = walk_list(kernel().reader, me, limit=512)
        if w.stop:
            continue
        ring = [me] + w.nodes
        heads = [n for n in ring if not ctx.on_a_stack(n)]
        if not heads:
            # the head is on a stack too (a completion declared on its waker's or its own
            # stack, DECLARE_COMPLETION_ONSTACK): the one node that is no waiter record
            heads = [n for n in ring if not _is_waiter(ctx, n - list_off + task_off)]
        if len(heads) == 1:
            return heads[0], ring
    return None, None


def _is_waiter(ctx, task_field):
    try:
        return int.from_bytes(read_bytes(task_field, 8), "little") in ctx.by_addr
    except gdb.MemoryError:
        return False


def _task_frames(ctx, t):
    fr = ctx.frames.get(t.addr)
    if fr is None:
        try:
            if t.active_cpu is None:
                fr = unwind_task(t).frames
            else:                   # running: from its CPU's registers, through exceptions
                _, regs = ktasks.cpu_thread_regs(t)
                fr = unwind_task(t, regs).frames if regs else []
        except gdb.error:
            fr = []
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


def _holders_by_stack(ctx, lock_addr, exclude):
    needle = lock_addr.to_bytes(8, "little")
    out = []
    for t in ctx.tasks:
        if t.addr in exclude or t.pid == 0:
            continue
        st = ctx.stack_bytes(t)
        i = st.find(needle)
        while i != -1:
            if i % 8 == 0:
                out.append(t.addr)
                break
            i = st.find(needle, i + 1)
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


def _read_lock(kind, addr):
    s = _STRUCT[kind]
    w = lambda f: int.from_bytes(read_bytes(addr + field_offset(s, f), 8), "little")
    if kind == "mutex":
        owner = w("owner")
        flags = [n for b, n in ((1, "WAITERS"), (2, "HANDOFF"), (4, "PICKUP")) if owner & b]
        return [owner & ~0x7 & _M] if owner & ~0x7 else [], False, \
            f"owner={owner:#x}" + (f" flags={'|'.join(flags)}" if flags else "")
    if kind == "rwsem":
        count, owner = w("count"), w("owner")
        readers = count >> 8
        if count & 1:
            return [owner & ~0x7 & _M], False, f"write-locked, count={count:#x}"
        hint = [owner & ~0x7 & _M] if owner & 1 and owner & ~0x7 else []
        return hint, True, f"read-locked by {readers} reader(s), count={count:#x}, owner hint={owner:#x}"
    cnt = int.from_bytes(read_bytes(addr + field_offset(s, "count"), 4), "little", signed=True)
    return [], True, f"count={cnt}"


def _completion(ctx, t):
    """The struct completion ``t`` waits for, from its waiter record on its own stack
    linked into the completion's wait list; None when not found. struct completion is
    {done; wait} throughout; ``wait`` is a swait_queue_head (waiter: struct swait_queue
    {task; task_list}) since v5.7 (commit a5c6234e1028 "completion: Use simple wait
    queues"), a wait_queue_head before (waiter: wait_queue_entry {flags; private; func;
    entry})."""
    try:
        wait = field_offset("struct completion", "wait")
        kind = lookup_type("struct completion")["wait"].type.strip_typedefs().tag
        if kind == "swait_queue_head":
            head = field_offset("struct swait_queue_head", "task_list")
            task_off, list_off = field_offset("struct swait_queue", "task"), \
                field_offset("struct swait_queue", "task_list")
        else:
            head = field_offset("struct wait_queue_head", "head")
            task_off, list_off = field_offset("struct wait_queue_entry", "private"), \
                field_offset("struct wait_queue_entry", "entry")
    except gdb.error:
        return None
    h, _ = _find_wait_list(ctx, t, task_off, list_off)
    return None if h is None else h - head - wait


def _wait_queue(ctx, t):
    """The struct wait_queue_head ``t`` sleeps on, from its wait_queue_entry {flags; private
    (the task); func; entry} on its own stack linked into the head's list (v4.13+ names;
    the layout is older), or None."""
    try:
        head = field_offset("struct wait_queue_head", "head")
        task_off = field_offset("struct wait_queue_entry", "private")
        list_off = field_offset("struct wait_queue_entry", "entry")
    except gdb.error:
        return None
    h, _ = _find_wait_list(ctx, t, task_off, list_off)
    return None if h is None else h - head


def _on_stack_name(ctx, addr) -> str:
    """``ADDR (on the stack of COMM (pid N))`` for an object on a task's stack, else ""."""
    owner = next((x for x in ctx.tasks if x.stack and x.stack <= addr < x.stack + ctx.size), None)
    return f"{addr:#x} (on the stack of {owner.comm} (pid {owner.pid}))" if owner else ""


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


def _now():
    from ..model.lockup import sched_clock_now
    return sched_clock_now(kernel())


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

    now = _now()

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
        if kind is None:
            # no lock function: a wait_event() (a macro, inlined into its caller) leaves
            # only its wait_queue_entry on the stack, linked into the queue's head
            wq = _wait_queue(ctx, t)
            if wq is not None and not _waits_on(locks, waits, t, wq):
                tasks[t.addr]["where"] = _where(names, 0, frames)
                locks[wq] = {"name": _lock_name(wq) or _on_stack_name(ctx, wq), "kind": "wait queue",
                             "owners": [], "probable": False,
                             "detail": "no owner is recorded: whoever would wake it up",
                             "waiters": [t.addr]}
            continue
        if kind == "event":
            comp = _completion(ctx, t)
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
            name = _lock_name(comp) or _on_stack_name(ctx, comp)
            locks[comp] = {"name": name, "kind": "completion", "owners": [], "probable": False,
                           "detail": "no owner is recorded: whoever would call complete()",
                           "waiters": [t.addr]}
            continue
        head, ring = _find_wait_list(ctx, t)
        if head is None:
            continue
        lock = head - field_offset(_STRUCT[kind], "wait_list")
        waits[t.addr] = lock
        if lock not in locks:
            owners, probable, detail = _read_lock(kind, lock)
            waiters = []
            for n in ring:
                if n == head:
                    continue
                try:
                    wt = int.from_bytes(read_bytes(n + 16, 8), "little")
                except gdb.MemoryError:
                    continue
                waiters.append(wt)
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
                    owners = list(dict.fromkeys(owners + _holders_by_stack(ctx, lock, set(waiters))))
            else:
                for o in owners:
                    for h in _held_by_code(ctx, by_addr[o]) if o in by_addr else []:
                        if h["lock"] == lock:
                            taken[o] = h["at"]
            name = _lock_name(lock)
            locks[lock] = {"name": name, "kind": kind, "owners": owners, "probable": probable,
                           "detail": detail, "waiters": waiters,
                           "taken_at": {f"{a:#x}": at for a, at in taken.items()}}
    _gather_spinners(ctx, tasks, locks, waits, tinfo)
    for l in locks.values():
        for o in l["owners"]:
            if o in by_addr:
                tinfo(by_addr[o])
    return tasks, locks, waits


def _spin_detail(kind, lock):
    if kind == "spinlock":
        return qspinlock_detail(lock)
    try:
        w = int.from_bytes(read_bytes(lock, 4), "little")
    except gdb.MemoryError as e:
        return f"lock word unreadable ({e})"
    from ..model.qspinlock import describe_qrwlock
    return describe_qrwlock(w)


def _word_free(kind, lock):
    """The lock word in words when it proves that nobody holds the lock, else None: a
    qspinlock whose locked byte is 0 (its holder always has it set: pending and queued
    waiters do not), a qrwlock with no writer and no reader (``cnts`` 0 but for the
    waiting-writer bit)."""
    try:
        w = int.from_bytes(read_bytes(lock, 4), "little")
    except gdb.MemoryError:
        return None
    if kind == "spinlock":
        return qspinlock_detail(lock) if not w & 0xFF else None
    return _spin_detail(kind, lock) if not w & ~0x100 else None


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
            free = _word_free(spin[0], spin[1])
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
        detail = _spin_detail(kind, lock)
        free = _word_free(kind, lock) is not None
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
    now = _now()
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
