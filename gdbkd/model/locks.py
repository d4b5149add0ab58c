"""Sleeping locks without gdb: who owns a mutex or rw_semaphore, a semaphore's count, the
waiters on a lock's ``wait_list``, and the waiter records a blocked task keeps on its
stack (mutex, rwsem, semaphore, completion, wait queue).

Owner words:

* ``struct mutex``: ``owner`` is an ``atomic_long_t`` holding the owner's task_struct
  with flags in its low 3 bits (0x1 WAITERS, 0x2 HANDOFF, 0x4 PICKUP) since v4.10,
  commit 3ca0ff571b09 ("locking/mutex: Rework mutex::owner"); 5.0 through 6.12 all
  have it.
* ``struct rw_semaphore`` since v5.3 (commit 64489e78004c "locking/rwsem: Implement a
  new locking scheme", probed by the ``owner.counter`` of commit 94a9717b3c40
  "locking/rwsem: Make rwsem->owner an atomic_long_t" in the same series, as drgn
  does): ``count`` bit 0 WRITER_LOCKED, bit 1 WAITERS, bit 2 HANDOFF, bits 8–62 the
  readers (bit 63 READ_FAILED); ``owner`` the writer, or with bit 0 READER_OWNED set
  the last reader to take it (a hint: readers record no owner); bit 1 NONSPINNABLE.
* ``struct rw_semaphore`` before (v4.20 – v5.2, the course's 5.0: the xadd scheme of
  kernel/locking/rwsem-xadd.c): ``owner`` is a ``struct task_struct *``, the writer,
  or ``reader | READER_OWNED (0x1) | ANONYMOUSLY_OWNED (0x2)`` (commit 925b9cd1b89a,
  v4.20), never cleared by the last reader; ``count`` holds the active lockers in its
  low 32 bits (a writer counts 1) and -1 in the high half per "waiters or a writer"
  (RWSEM_WAITING_BIAS), so the count alone cannot tell a writer from one reader with
  waiters: the owner word decides, and a count with no owner recorded is unknown.
* ``struct semaphore`` {``lock``, ``count``, ``wait_list``}: no owner; ``count`` 0 means
  taken (by whom is found elsewhere: kernel/locks.py, from code or stacks).

Waiter records (on the waiting task's stack, linked into the lock's ``wait_list``):
``struct mutex_waiter``, ``struct rwsem_waiter``, ``struct semaphore_waiter``, each
{``list``, ``task``, …} (``task`` at 16 in 4.x – 6.12, taken from the types where
they describe the struct); a completion's (``struct completion {done; wait}``):
``struct swait_queue {task; task_list}`` in its ``swait_queue_head`` since v5.7
(commit a5c6234e1028 "completion: Use simple wait queues"), before that a
``wait_queue_entry {flags; private (the task); func; entry}`` in a
``wait_queue_head {lock; head}`` (the names of v4.13, commit 2055da97389a).

Whatever cannot be read or decoded is said: a :class:`LockState` with ``state``
"unknown" and the reason (a MemoryFault, a member this kernel lacks), never "no
owner". Every member read is named in :data:`gdbkd.model.layout.LAYOUTS`. No gdb import.
"""

from .kernel import per_stop
from .lists import Entries, walk_entries, walk_list
from .reader import MemoryFault
from .tasks import task_list, thread_size

__all__ = ["LockState", "lock_state", "waiter_layout", "lock_waiters",
           "completion_layout", "wait_queue_layout", "StackScan", "KINDS"]

M64 = (1 << 64) - 1
#: the struct of each sleeping-lock kind kd decodes
KINDS = {"mutex": "struct mutex", "rwsem": "struct rw_semaphore", "semaphore": "struct semaphore"}
_WAITER = {"mutex": "struct mutex_waiter", "rwsem": "struct rwsem_waiter",
           "semaphore": "struct semaphore_waiter"}
_MUTEX_FLAGS = ((1, "WAITERS"), (2, "HANDOFF"), (4, "PICKUP"))
_RWSEM_READER_MASK = ((1 << 63) - 1) & ~0xFF        # count bits 8-62 (v5.3+)


class LockState:
    """What a lock's own words say. ``state``: "unlocked", "locked" (mutex, semaphore),
    "write-locked", "read-locked" (rwsem) or "unknown"; ``owners``: task addresses proven
    (a mutex's or a writer's owner word) or, with ``probable``, hinted; ``hint``: the
    owner word's task of a reader-owned rwsem (the last reader), else None; ``detail``:
    the words as kd prints them; ``count``: the count word (rwsem: unsigned, semaphore:
    signed), None for a mutex; ``unknown``: why the state could not be read, or None."""

    __slots__ = ("kind", "addr", "state", "owners", "probable", "detail", "hint", "count",
                 "unknown")

    def __init__(self, kind, addr, state, owners=(), probable=False, detail="", hint=None,
                 count=None, unknown=None):
        self.kind, self.addr, self.state = kind, addr, state
        self.owners, self.probable, self.detail = list(owners), probable, detail
        self.hint, self.count, self.unknown = hint, count, unknown

    @classmethod
    def failed(cls, kind, addr, why):
        return cls(kind, addr, "unknown", unknown=why)


def _need(k, typename, *paths):
    """The offsets of ``paths`` in ``typename``; raises MemoryFault naming what is missing."""
    offs = [k.offset(typename, p) for p in paths]
    missing = [p for p, o in zip(paths, offs) if o is None]
    if missing:
        raise MemoryFault(0, f"this kernel's {typename} has no {', '.join(missing)}")
    return offs


def _mutex(k, addr):
    off, = _need(k, "struct mutex", "owner")
    owner = k.reader.u64(addr + off)
    task = owner & ~0x7 & M64
    flags = [n for b, n in _MUTEX_FLAGS if owner & b]
    detail = f"owner={owner:#x}" + (f" flags={'|'.join(flags)}" if flags else "")
    return LockState("mutex", addr, "locked" if task else "unlocked", [task] if task else [],
                     detail=detail)


def _rwsem(k, addr):
    count_off, owner_off = _need(k, "struct rw_semaphore", "count", "owner")
    r = k.reader
    count, owner = r.u64(addr + count_off), r.u64(addr + owner_off)
    task = owner & ~0x7 & M64
    if k.offset("struct rw_semaphore", "owner.counter") is not None:      # v5.3+
        if count & 1:
            return LockState("rwsem", addr, "write-locked", [task] if task else [],
                             detail=f"write-locked, count={count:#x}", count=count)
        readers = (count & _RWSEM_READER_MASK) >> 8
        if not readers:
            return LockState("rwsem", addr, "unlocked", detail=f"unlocked, count={count:#x}", count=count)
        hint = task if owner & 1 and task else None
        return LockState("rwsem", addr, "read-locked", [hint] if hint else [], True,
                         f"read-locked by {readers} reader(s), count={count:#x}, "
                         f"owner hint={owner:#x}", hint=hint, count=count)
    # v4.20 - v5.2: the xadd count, a task pointer owner (module docstring)
    if not count:
        return LockState("rwsem", addr, "unlocked", detail=f"unlocked, count={count:#x}", count=count)
    active = count & 0xFFFFFFFF
    if owner & 1:
        hint = task or None
        return LockState("rwsem", addr, "read-locked", [hint] if hint else [], True,
                         f"read-locked by {active} reader(s), count={count:#x}, "
                         f"owner hint={owner:#x}", hint=hint, count=count)
    if task:
        return LockState("rwsem", addr, "write-locked", [task],
                         detail=f"write-locked, count={count:#x}", count=count)
    return LockState("rwsem", addr, "unknown", detail=f"count={count:#x}, owner={owner:#x}", count=count,
                     unknown="the count says taken but no owner is recorded (a writer between "
                             "taking the count and setting the owner, or only waiters counted)")


def _semaphore(k, addr):
    off, = _need(k, "struct semaphore", "count")
    cnt = k.reader.s32(addr + off)
    return LockState("semaphore", addr, "locked" if cnt <= 0 else "unlocked", [], True,
                     f"count={cnt}", count=cnt)


def lock_state(k, kind: str, addr: int) -> LockState:
    """The :class:`LockState` of the ``kind`` ("mutex", "rwsem", "semaphore") at ``addr``;
    never raises for a lock it cannot read: its state is then "unknown" with the reason."""
    try:
        return {"mutex": _mutex, "rwsem": _rwsem, "semaphore": _semaphore}[kind](k, addr)
    except MemoryFault as e:
        return LockState.failed(kind, addr, e.reason if e.addr == 0 else str(e))


@per_stop
def waiter_layout(k, kind: str):
    """(offset of the lock's ``wait_list``, of the waiter record's ``list``, of its
    ``task``) for ``kind``; raises MemoryFault when this kernel's types lack one."""
    wl, = _need(k, KINDS[kind], "wait_list")
    lst, task = (k.offset(_WAITER[kind], p) for p in ("list", "task"))
    if lst is None or task is None:
        # the waiter structs are private to kernel/locking/; a vmlinux whose DWARF lacks
        # them has the layout every version from 4.x to 6.12 has (module docstring)
        lst, task = 0, 16
    return wl, lst, task


def lock_waiters(k, kind: str, addr: int) -> Entries:
    """The tasks on the ``wait_list`` of the lock at ``addr``, in queue order, each once
    (an :class:`gdbkd.model.lists.Entries`: ``damage`` says what is wrong with the list);
    raises MemoryFault when the list head cannot be read."""
    wl, lst, task = waiter_layout(k, kind)
    w = walk_entries(k.reader, addr + wl, lst, limit=1 << 16)
    out = Entries(damage=w.problems(f"{kind} {addr:#x} wait_list"))
    for rec in w.entries():
        out.append(k.reader.u64(rec + task))
    return out


@per_stop
def completion_layout(k):
    """(offset of ``completion.wait``, of the head's list in it, of the waiter record's
    task, of its list_head), or None when this kernel's types do not say (see the module
    docstring: swait since v5.7, a wait_queue_head before)."""
    wait = k.offset("struct completion", "wait")
    if wait is None:
        return None
    if k.offset("struct completion", "wait.task_list") is not None:        # v5.7+: swait
        offs = (k.offset("struct swait_queue_head", "task_list"),
                k.offset("struct swait_queue", "task"), k.offset("struct swait_queue", "task_list"))
    elif k.offset("struct completion", "wait.head") is not None:
        offs = wait_queue_layout(k)
    else:
        return None
    return None if offs is None or None in offs else (wait,) + tuple(offs)


@per_stop
def wait_queue_layout(k):
    """(offset of ``wait_queue_head.head``, of ``wait_queue_entry.private``, of its
    ``entry``), or None."""
    offs = (k.offset("struct wait_queue_head", "head"),
            k.offset("struct wait_queue_entry", "private"),
            k.offset("struct wait_queue_entry", "entry"))
    return None if None in offs else offs


def _is_kptr(v):
    return v >= 0xFFFF000000000000 and v & 7 == 0


class StackScan:
    """The task stacks of one stop, for finding waiter records: ``tasks`` (the task list),
    each stack read once (:meth:`stack_bytes`); a stack that cannot be read is kept in
    ``unreadable`` ({task address: reason}) so that "found nothing on it" is never said
    of it."""

    def __init__(self, k, tasks=None):
        self.k = k
        self.tasks = list(task_list(k) if tasks is None else tasks)
        self.size = thread_size(k)
        self.ranges = [(t.stack, t.stack + self.size) for t in self.tasks if t.stack]
        self.by_addr = {t.addr: t for t in self.tasks}
        self._stacks = {}
        self.unreadable = {}

    def on_a_stack(self, a) -> bool:
        return any(lo <= a < hi for lo, hi in self.ranges)

    def stack_of(self, addr):
        """The task whose stack holds ``addr``, or None."""
        return next((t for t in self.tasks if t.stack and t.stack <= addr < t.stack + self.size),
                    None)

    def stack_bytes(self, t) -> bytes:
        b = self._stacks.get(t.addr)
        if b is None:
            b = b""
            if t.stack:
                try:
                    b = self.k.reader.read(t.stack, self.size)
                except MemoryFault as e:
                    self.unreadable[t.addr] = f"its stack is unreadable: {e}"
            self._stacks[t.addr] = b
        return b

    def _u64(self, a):
        return self.k.reader.u64(a)

    def find_wait_list(self, t, task_off=16, list_off=0):
        """(the wait list head reached from ``t``'s waiter record on its own stack, the
        ring of list_heads) or (None, None). The record holds ``t`` at ``task_off`` and
        its list_head at ``list_off``."""
        st = self.stack_bytes(t)
        u = lambda i: int.from_bytes(st[i:i + 8], "little")
        for i in range(0, len(st) - max(task_off, list_off + 8) - 8, 8):
            if u(i + task_off) != t.addr:
                continue
            nxt, prv = u(i + list_off), u(i + list_off + 8)
            if not (_is_kptr(nxt) and _is_kptr(prv)):
                continue
            me = t.stack + i + list_off
            try:
                if self._u64(nxt + 8) != me:
                    continue
            except MemoryFault:
                continue
            # the one walker: a ring that does not come back to the waiter (a loop
            # elsewhere, NULL, poison, an unreadable link) is no wait list
            w = walk_list(self.k.reader, me, limit=512)
            if w.stop:
                continue
            ring = [me] + w.nodes
            heads = [n for n in ring if not self.on_a_stack(n)]
            if not heads:
                # the head is on a stack too (a completion declared on its waker's or its
                # own stack, DECLARE_COMPLETION_ONSTACK): the one node that is no record
                heads = [n for n in ring if not self._is_waiter(n - list_off + task_off)]
            if len(heads) == 1:
                return heads[0], ring
        return None, None

    def _is_waiter(self, task_field) -> bool:
        try:
            return self._u64(task_field) in self.by_addr
        except MemoryFault:
            return False

    def lock_wait(self, kind, t):
        """(lock address, [waiter tasks] in ring order from ``t``) of the ``kind`` lock
        ``t`` waits on, from its waiter record, or (None, None) when none is found. A
        waiter record that cannot be read is left out of the waiters."""
        wl, lst, task = waiter_layout(self.k, kind)
        head, ring = self.find_wait_list(t, task, lst)
        if head is None:
            return None, None
        waiters = []
        for n in ring:
            if n == head:
                continue
            try:
                waiters.append(self._u64(n - lst + task))
            except MemoryFault:
                continue
        return head - wl, waiters

    def completion(self, t):
        """The struct completion ``t`` waits for, from its waiter record on its own stack
        linked into the completion's wait list; None when not found."""
        lay = completion_layout(self.k)
        if lay is None:
            return None
        wait, head, task_off, list_off = lay
        h, _ = self.find_wait_list(t, task_off, list_off)
        return None if h is None else h - head - wait

    def wait_queue(self, t):
        """The struct wait_queue_head ``t`` sleeps on, from its wait_queue_entry on its own
        stack linked into the head's list, or None."""
        lay = wait_queue_layout(self.k)
        if lay is None:
            return None
        head, task_off, list_off = lay
        h, _ = self.find_wait_list(t, task_off, list_off)
        return None if h is None else h - head

    def holders_by_stack(self, lock_addr, exclude) -> list:
        """Tasks (not in ``exclude``, not idle) whose stack holds ``lock_addr``, 8-aligned:
        *probable* holders only."""
        needle = lock_addr.to_bytes(8, "little")
        out = []
        for t in self.tasks:
            if t.addr in exclude or t.pid == 0:
                continue
            st = self.stack_bytes(t)
            i = st.find(needle)
            while i != -1:
                if i % 8 == 0:
                    out.append(t.addr)
                    break
                i = st.find(needle, i + 1)
        return out

    def on_stack_name(self, addr) -> str:
        """``ADDR (on the stack of COMM (pid N))`` for an object on a task's stack, else ""."""
        owner = self.stack_of(addr)
        return f"{addr:#x} (on the stack of {owner.comm} (pid {owner.pid}))" if owner else ""
