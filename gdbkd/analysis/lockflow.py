"""Which locks a function holds at a pc, proven from its code: the pure half.

No gdb here; the in-gdb half (frames, symbols, memory) is gdbkd/kernel/spinlocks.py.
The code is AArch64 as decoded by capstone (:func:`gdbkd.analysis.fault.decode`),
the whole function from its first instruction.

A forward *must* analysis over the function's control-flow graph (one node per
instruction): a lock counts as held at a pc only when it is held on every path
from the function's entry to that pc. Along each path it tracks

* constant registers: ``adrp``, ``add/sub #imm``, ``mov #imm``, ``mov`` copies
  (how gcc materialises the address of a global lock); a join keeps a register
  only when every path into it agrees on its value, and a call kills x0..x18,
  x30 (AAPCS64);
* acquisitions:
  - a ``bl`` to a lock-taking function (``_raw_spin_lock``, ``mutex_lock``,
    ``down``, … :data:`ACQUIRE`) or to a spin-lock slow path with ``x0`` known:
    held after the call returns;
  - the inlined qspinlock fast path (``CONFIG_INLINE_SPIN_LOCK``, Debian's arm64
    6.1: ``queued_spin_lock`` → ``atomic_try_cmpxchg_acquire(&lock->val, 0, 1)``):
    LSE ``casa wS, wT, [xL]`` with wS = 0 and wT = 1, or the LL/SC loop
    ``ldaxr wS, [xL] … stxr wN, wT, [xL]`` with wT = 1; the lock is taken on the
    edge of the ``cbz``/``cbnz`` on wS (or a copy of it) that says the old value
    was 0. On the other edge the fast path failed and the code goes on to the
    slow path call, which takes it when (if) it returns. A write-lock fast path
    (new value 0xff, ``_QW_LOCKED``) counts as taking an rwlock;
* releases: a ``bl`` to :data:`RELEASE` with the same ``x0``, or the inlined
  ``queued_spin_unlock`` / ``queued_write_unlock``: ``stlrb wzr|w0=0, [xL]``.

So at a call into a slow path the lock being taken is *not* yet held (the fast
path's failure edge does not take it): a lock that is held there anyway was
taken before, by the same code — an AA deadlock.
"""

import re

from . import args as A
from . import fault as F

__all__ = ["ACQUIRE", "RELEASE", "SLOWPATHS", "Flow", "held_at"]

M64 = (1 << 64) - 1

ACQUIRE = {
    "down": "semaphore", "down_interruptible": "semaphore", "down_killable": "semaphore",
    "down_timeout": "semaphore",
    "down_read": "rwsem", "down_read_killable": "rwsem", "down_read_interruptible": "rwsem",
    "down_write": "rwsem", "down_write_killable": "rwsem",
    "mutex_lock": "mutex", "mutex_lock_interruptible": "mutex", "mutex_lock_killable": "mutex",
    "mutex_lock_nested": "mutex",
    "_raw_spin_lock": "spinlock", "_raw_spin_lock_irq": "spinlock", "_raw_spin_lock_irqsave": "spinlock",
    "_raw_spin_lock_bh": "spinlock", "_raw_read_lock": "rwlock", "_raw_write_lock": "rwlock",
    "_raw_read_lock_irq": "rwlock", "_raw_read_lock_irqsave": "rwlock", "_raw_read_lock_bh": "rwlock",
    "_raw_write_lock_irq": "rwlock", "_raw_write_lock_irqsave": "rwlock", "_raw_write_lock_bh": "rwlock",
}
RELEASE = {
    "up": "semaphore", "up_read": "rwsem", "up_write": "rwsem", "mutex_unlock": "mutex",
    "_raw_spin_unlock": "spinlock", "_raw_spin_unlock_irq": "spinlock",
    "_raw_spin_unlock_irqrestore": "spinlock", "_raw_spin_unlock_bh": "spinlock",
    "_raw_read_unlock": "rwlock", "_raw_write_unlock": "rwlock",
    "_raw_read_unlock_irq": "rwlock", "_raw_read_unlock_irqrestore": "rwlock",
    "_raw_read_unlock_bh": "rwlock", "_raw_write_unlock_irq": "rwlock",
    "_raw_write_unlock_irqrestore": "rwlock", "_raw_write_unlock_bh": "rwlock",
}
#: the out-of-line spin loops (kernel/locking/qspinlock.c, qrwlock.c); x0 is the lock
SLOWPATHS = {"queued_spin_lock_slowpath": "spinlock", "queued_read_lock_slowpath": "rwlock",
             "queued_write_lock_slowpath": "rwlock"}

_CAS = re.compile(r"^cas(a|al|l)?$")
_LDX = re.compile(r"^ld(a)?xr$")
_STX = re.compile(r"^st(l)?xr$")
_REGS3 = re.compile(r"^([wx]\d+|[wx]zr),\s*([wx]\d+|[wx]zr),\s*\[(\w+)\]$")
_REGS2 = re.compile(r"^([wx]\d+|[wx]zr),\s*\[(\w+)\]$")
_STX3 = re.compile(r"^(w\d+),\s*([wx]\d+|[wx]zr),\s*\[(\w+)\]$")
_FAST_NEW = {1: "spinlock", 0xFF: "rwlock"}      # _Q_LOCKED_VAL, _QW_LOCKED


class _State:
    __slots__ = ("consts", "pending", "held")

    def __init__(self, consts=None, pending=None, held=None):
        self.consts = dict(consts or {})      # reg -> value
        self.pending = dict(pending or {})    # reg -> (lock, kind, insn addr): a fast path's old value
        self.held = dict(held or {})          # lock -> (kind, insn addr where taken)

    def copy(self):
        return _State(self.consts, self.pending, self.held)

    def join(self, o):
        return _State({k: v for k, v in self.consts.items() if o.consts.get(k) == v},
                      {k: v for k, v in self.pending.items() if o.pending.get(k) == v},
                      {k: min(v, o.held[k], key=lambda x: x[1]) for k, v in self.held.items()
                       if k in o.held and o.held[k][0] == v[0]})

    def same(self, o):
        return self.consts == o.consts and self.pending == o.pending and self.held == o.held

    def kill(self, regs):
        for r in regs:
            self.consts.pop(r, None)
            self.pending.pop(r, None)


def _target(i):
    m = re.search(r"#(0x[0-9a-f]+|\d+)\s*$", i.op_str)
    return int(m.group(1), 0) if m else None


class Flow:
    """The must-analysis of one function. ``callee_of(addr) -> name`` names a call target
    (through module PLT veneers; compiler suffixes such as ``.constprop.0`` stripped)."""

    def __init__(self, insns, callee_of):
        self.insns = insns
        self.callee_of = callee_of
        self.index = {i.addr: k for k, i in enumerate(insns)}
        self.calls = {}                 # insn addr -> (callee name, x0 or None)
        self.states = {}                # insn addr -> _State before it
        if insns:
            self._solve()

    # -- transfer ------------------------------------------------------------------------
    def _fast_path(self, k, i, s):
        """(old-value register, lock, kind) when insn k starts a qspinlock/qrwlock fast path."""
        ops = i.op_str.replace(" ", "")
        if _CAS.match(i.mnemonic):
            m = _REGS3.match(ops)
            if not m or not m.group(1).startswith("w"):
                return None
            ws, wt, base = (F.reg_norm(g) for g in m.groups())
            lock, new = s.consts.get(base), s.consts.get(wt) if wt else 0
            old = s.consts.get(ws) if ws else 0
            if lock is not None and old == 0 and new in _FAST_NEW:
                return ws, lock, _FAST_NEW[new]
            return None
        if _LDX.match(i.mnemonic):
            m = _REGS2.match(ops)
            if not m or not m.group(1).startswith("w"):
                return None
            ws, base = F.reg_norm(m.group(1)), F.reg_norm(m.group(2))
            lock = s.consts.get(base)
            if lock is None or ws is None:
                return None
            for j in self.insns[k + 1:k + 7]:         # the loop's store-exclusive
                if _STX.match(j.mnemonic):
                    m2 = _STX3.match(j.op_str.replace(" ", ""))
                    if m2 and F.reg_norm(m2.group(3)) == base:
                        wt = F.reg_norm(m2.group(2))
                        new = s.consts.get(wt) if wt else 0
                        if new in _FAST_NEW:
                            return ws, lock, _FAST_NEW[new]
                    return None
        return None

    def _step(self, k, i, s):
        """The state after insn k on its fall-through/only path (conditional edges: _edges)."""
        s = s.copy()
        m = i.mnemonic
        ops = i.op_str.replace(" ", "")
        if A.is_call(i):
            x0 = s.consts.get("x0")
            name = None
            if m == "bl":
                t = _target(i)
                name = self.callee_of(t) if t is not None else None
            self.calls[i.addr] = (name, x0)
            s.kill(A.CALLER_SAVED)
            if name and x0 is not None:
                kind = ACQUIRE.get(name) or SLOWPATHS.get(name)
                if kind:
                    s.held.setdefault(x0, (kind, i.addr))
                elif name in RELEASE:
                    s.held.pop(x0, None)
            return s
        if m == "adrp":
            mm = re.fullmatch(r"(x\d+),#(0x[0-9a-f]+|\d+)", ops)
            if mm:
                s.kill([F.reg_norm(mm.group(1))])
                s.consts[F.reg_norm(mm.group(1))] = int(mm.group(2), 0) & M64
                return s
        if m in ("stlrb", "strb"):
            mm = _REGS2.match(ops)
            if mm:
                v, base = F.reg_norm(mm.group(1)), F.reg_norm(mm.group(2))
                lock = s.consts.get(base)
                if lock is not None and (v is None or s.consts.get(v) == 0) and lock in s.held \
                        and s.held[lock][0] in ("spinlock", "rwlock"):
                    s.held.pop(lock)
        fp = self._fast_path(k, i, s)
        dest = A.writes(i)
        src = A.mov_source(i)
        imm = A.mov_imm(i)
        ai = A.add_imm(i)
        val = None
        alias = None
        if src is not None and src[0] in s.consts:
            val = s.consts[src[0]] & ((1 << src[1]) - 1)
        if src is not None and src[0] in s.pending:
            alias = s.pending[src[0]]
        if imm is not None:
            val = imm[0]
        if ai is not None and ai[0] in s.consts and ai[2] == 64:
            val = (s.consts[ai[0]] + ai[1]) & M64
        first = F.reg_norm(re.split(r"[,\[]", i.op_str)[0].strip()) if i.op_str else None
        s.kill(dest)
        if fp is not None:
            ws, lock, kind = fp
            s.pending[ws] = (lock, kind, i.addr)
        elif first in dest and (src is not None or imm is not None or ai is not None):
            if val is not None:
                s.consts[first] = val
            if alias is not None:
                s.pending[first] = alias
        return s

    def _edges(self, k, i, s):
        """[(successor addr, state)] of insn k from the state before it."""
        m = i.mnemonic
        nxt = self.insns[k + 1].addr if k + 1 < len(self.insns) else None
        if m in ("ret", "retaa", "retab", "br", "braa", "brab", "braaz", "brabz", "eret"):
            return []
        if m == "b":
            t = _target(i)
            return [(t, s)] if t in self.index else []
        if A.is_branch(i):
            t = _target(i)
            taken, fall = s.copy(), s.copy()
            reg = F.reg_norm(i.op_str.split(",")[0].strip())
            if m in ("cbz", "cbnz") and reg in s.pending:
                lock, kind, at = s.pending[reg]
                ok, bad = (taken, fall) if m == "cbz" else (fall, taken)
                ok.held.setdefault(lock, (kind, at))
                for st in (taken, fall):
                    for r in [r for r, v in st.pending.items() if v[0] == lock]:
                        del st.pending[r]
            out = []
            if t in self.index:
                out.append((t, taken))
            if nxt is not None:
                out.append((nxt, fall))
            return out
        after = self._step(k, i, s)
        return [(nxt, after)] if nxt is not None else []

    def _solve(self):
        start = self.insns[0].addr
        self.states = {start: _State()}
        work = [start]
        rounds = 0
        while work and rounds < 200000:
            rounds += 1
            a = work.pop()
            k = self.index[a]
            for b, st in self._edges(k, self.insns[k], self.states[a]):
                old = self.states.get(b)
                new = st if old is None else old.join(st)
                if old is None or not new.same(old):
                    self.states[b] = new
                    work.append(b)

    # -- queries -------------------------------------------------------------------------
    def held_before(self, addr):
        """{lock: (kind, taken at)} held on every path to the insn at ``addr`` (before it
        runs), or None when no path from the entry reaches it."""
        s = self.states.get(addr)
        return None if s is None else dict(s.held)

    def call_x0(self, addr):
        """(callee name, x0 proven on every path) of the call at ``addr``, else (None, None)."""
        s = self.states.get(addr)
        i = self.insns[self.index[addr]] if addr in self.index else None
        if s is None or i is None or not A.is_call(i):
            return None, None
        name = None
        if i.mnemonic == "bl":
            t = _target(i)
            name = self.callee_of(t) if t is not None else None
        return name, s.consts.get("x0")


def held_at(insns, callee_of, addr):
    """Shorthand: the locks held before the insn at ``addr`` (see :meth:`Flow.held_before`)."""
    return Flow(insns, callee_of).held_before(addr)
