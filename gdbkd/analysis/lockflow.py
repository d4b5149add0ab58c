"""Which locks a function holds at a pc, proven from its code: the pure half.

No gdb here; the in-gdb half (frames, symbols, memory) is gdbkd/kernel/lockrefs.py.
The code is AArch64 as decoded by capstone (:func:`gdbkd.analysis.fault.decode`),
the whole function from its first instruction.

A forward *must* analysis over the function's control-flow graph (one node per
instruction): a lock counts as held at a pc only when it is held on every path
from the function's entry to that pc. Along each path it tracks

* constant registers: ``adrp``, ``add/sub #imm``, ``mov #imm``, ``mov`` copies
  (how gcc materialises the address of a global lock); a join keeps a register
  only when every path into it agrees on its value, and a call kills x0..x18,
  x30 (AAPCS64);
* constant stack slots (code built -O0, as the course's 5.0 tree builds modules: a
  lock's address is spilled to ``[sp, #n]`` and loaded back into x0 for the call):
  a 64-bit ``str``/``stp`` of a known register to ``[sp|x29, #n]`` makes the slot known,
  ``ldr`` from it makes the register known; a narrower ``strb``/``strh``/``str wN`` of a
  known value makes a slot of that size known, read back by the zero-extending load of the
  same size (``ldrb``/``ldrh``/``ldr wN``: the unlock's 0 in 5.0's inlined
  ``queued_spin_unlock``, ``smp_store_release`` through a byte local, its kernel being
  built that way too); a local's address (``add xN, sp, #m``) is tracked as that slot,
  so stores through it fill slots too; any other store that may overlap it, a write
  to its base register, a store through an unknown pointer, and a call that is passed
  a local's address (or any call, once a local's address was stored to memory outside
  the stack slots) forget it;
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


_SLOT = re.compile(r"^\[(sp|x29)(?:,#(-?0x[0-9a-f]+|-?\d+))?\]$")
_MEM = re.compile(r"\[(\w+)")
_STORE_SIZE = {"str": None, "stur": None, "strb": 1, "sturb": 1, "strh": 2, "sturh": 2,
               "stp": None, "stnp": None, "stlr": None, "stlrb": 1, "stlrh": 2}
#: zero-extending loads from a slot: size in bytes (None: that of the destination register)
_LOAD_SIZE = {"ldr": None, "ldur": None, "ldrb": 1, "ldurb": 1, "ldrh": 2, "ldurh": 2}


def _num(v):
    """A tracked value that is a number (not a local's address), else None."""
    return v if isinstance(v, int) else None


def _slot_operand(ops, consts=None):
    """The stack slot ``(base, offset)`` a memory operand without writeback addresses:
    ``[sp, #n]``; ``[xN, #n]`` with xN holding a local's address (``add xN, sp, #m``,
    ``mov x29, sp``) as an sp slot; ``[x29, #n]`` with x29's relation to sp unknown as an
    x29 slot. Else None."""
    m = re.search(r"(\[[^\]]*\])(!?)(,#.*)?$", ops)
    if not m or m.group(2) or m.group(3):
        return None
    mm = re.match(r"^\[(sp|x\d+)(?:,#(-?0x[0-9a-f]+|-?\d+))?\]$", m.group(1))
    if not mm:
        return None
    base, off = mm.group(1), int(mm.group(2) or "0", 0)
    v = (consts or {}).get(base)
    if isinstance(v, tuple):
        return (v[0], v[1] + off)
    if base in ("sp", "x29"):
        return (base, off)
    return None


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
            if r in ("sp", "x29"):          # its slots, and local addresses, are elsewhere now
                self.kill_slots(lambda k: k[0] == r)
                for k in [k for k, v in self.consts.items() if isinstance(v, tuple) and v[0] == r]:
                    del self.consts[k]

    def kill_slots(self, which=lambda k: True):
        for k in [k for k in self.consts if isinstance(k, tuple) and which(k)]:
            del self.consts[k]


def _target(i):
    m = re.search(r"#(0x[0-9a-f]+|\d+)\s*$", i.op_str)
    return int(m.group(1), 0) if m else None


class Flow:
    """The must-analysis of one function. ``callee_of(addr) -> name`` names a call target
    (through module PLT veneers; compiler suffixes such as ``.constprop.0`` stripped)."""

    def __init__(self, insns, callee_of, inline_acquires=()):
        self.insns = insns
        self.callee_of = callee_of
        # [(lo, hi, lock, kind, at)]: an inlined lock function (queued_spin_lock …) spans
        # [lo, hi); it returns only with ``lock`` held, so every edge leaving it takes it
        # (code built -O0 calls its atomics out of line: no fast path to see)
        self.inline_acquires = list(inline_acquires)
        self.index = {i.addr: k for k, i in enumerate(insns)}
        # a local's address stored to memory that is no stack slot: a callee may then
        # write any slot (found by a first solve; the second then forgets slots at calls)
        self.escapes = False
        self._load = None
        self.calls = {}                 # insn addr -> (callee name, x0 or None)
        self.states = {}                # insn addr -> _State before it
        if insns:
            self._solve()
            if self.escapes:
                self.calls.clear()
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
            lock, new = _num(s.consts.get(base)), _num(s.consts.get(wt)) if wt else 0
            old = _num(s.consts.get(ws)) if ws else 0
            if lock is not None and old == 0 and new in _FAST_NEW:
                return ws, lock, _FAST_NEW[new]
            return None
        if _LDX.match(i.mnemonic):
            m = _REGS2.match(ops)
            if not m or not m.group(1).startswith("w"):
                return None
            ws, base = F.reg_norm(m.group(1)), F.reg_norm(m.group(2))
            lock = _num(s.consts.get(base))
            if lock is None or ws is None:
                return None
            for j in self.insns[k + 1:k + 7]:         # the loop's store-exclusive
                if _STX.match(j.mnemonic):
                    m2 = _STX3.match(j.op_str.replace(" ", ""))
                    if m2 and F.reg_norm(m2.group(3)) == base:
                        wt = F.reg_norm(m2.group(2))
                        new = _num(s.consts.get(wt)) if wt else 0
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
            x0 = _num(s.consts.get("x0"))
            name = None
            if m == "bl":
                t = _target(i)
                name = self.callee_of(t) if t is not None else None
            self.calls[i.addr] = (name, x0)
            s.kill(A.CALLER_SAVED)
            if self.escapes or any(isinstance(s.consts.get(f"x{n}"), tuple) for n in range(8)):
                s.kill_slots()              # the callee may write our locals
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
                lock = _num(s.consts.get(base))
                if lock is not None and (v is None or s.consts.get(v) == 0) and lock in s.held \
                        and s.held[lock][0] in ("spinlock", "rwlock"):
                    s.held.pop(lock)
        self._memory(i, ops, s)
        fp = self._fast_path(k, i, s)
        dest = A.writes(i)
        src = A.mov_source(i)
        imm = A.mov_imm(i)
        ai = A.add_imm(i)
        val = None
        alias = None
        if src is not None and src[0] in s.consts:
            v = s.consts[src[0]]
            val = v & ((1 << src[1]) - 1) if isinstance(v, int) else (v if src[1] == 64 else None)
        if src is not None and src[0] in s.pending:
            alias = s.pending[src[0]]
        if imm is not None:
            val = imm[0]
        if ai is not None and ai[0] in s.consts and ai[2] == 64:
            v = s.consts[ai[0]]
            val = (v + ai[1]) & M64 if isinstance(v, int) else (v[0], v[1] + ai[1])
        elif ai is not None and ai[0] in ("sp", "x29") and ai[2] == 64:
            val = (ai[0], ai[1])            # the address of a local: its slot, not a number
        elif src is not None and src[0] == "sp" and src[1] == 64:
            val = ("sp", 0)
        first = F.reg_norm(re.split(r"[,\[]", i.op_str)[0].strip()) if i.op_str else None
        s.kill(dest)
        load, self._load = self._load, None
        if load is not None and load[1] is not None:
            s.consts[load[0]] = load[1]
        if fp is not None:
            ws, lock, kind = fp
            s.pending[ws] = (lock, kind, i.addr)
        elif first in dest and (src is not None or imm is not None or ai is not None):
            if val is not None:
                s.consts[first] = val
            if alias is not None:
                s.pending[first] = alias
        return s

    def _memory(self, i, ops, s):
        """Stack slots: a store fills or forgets them (before the writes of ``i`` are
        applied; a load's destination is set after them, in :meth:`_step`)."""
        m = i.mnemonic
        if m in _STORE_SIZE:
            slot = _slot_operand(ops, s.consts)
            regs = [F.reg_norm(r) if r not in ("xzr", "wzr") else "zr"
                    for r in re.findall(r"\b([xw]\d+|[xw]zr)\b", ops.split("[")[0])]
            if slot is None:
                if any(isinstance(s.consts.get(r), tuple) for r in regs):
                    self.escapes = True     # a local's address leaves the frame
                base = _MEM.search(ops)
                b = F.reg_norm(base.group(1)) if base else None
                if not (_num(s.consts.get(b)) or 0) >> 63 and b not in ("sp", "x29"):
                    s.kill_slots()          # through a pointer that may lead to the stack
                elif b in ("sp", "x29"):
                    s.kill_slots(lambda k: k[0] == b)
                return
            base, off = slot
            other = "x29" if base == "sp" else "sp"
            s.kill_slots(lambda k: k[0] == other)     # sp and an unrelated x29 may alias
            wide = ops.split("[")[0].strip(",").split(",")
            sizes = [8 if w.strip().startswith("x") else 4 for w in wide if w.strip()]
            n = _STORE_SIZE[m] or (sum(sizes) if m in ("stp", "stnp") else sizes[0] if sizes else 8)
            s.kill_slots(lambda k: k[0] == base and k[1] < off + n and off < k[1] + 8)
            if all(z == 8 for z in sizes) and _STORE_SIZE[m] is None:
                for j, r in enumerate(regs[:len(sizes)]):
                    v = 0 if r == "zr" else s.consts.get(r)
                    if v is not None:
                        s.consts[(base, off + 8 * j)] = v
            elif n < 8 and len(regs) == 1 and m not in ("stp", "stnp"):
                # a narrow slot (base, off, size): -O0's inlined queued_spin_unlock stores
                # the 0 it releases with to a byte local, then `ldrb w1` / `stlrb w1, [x0]`
                v = 0 if regs[0] == "zr" else _num(s.consts.get(regs[0]))
                if v is not None:
                    s.consts[(base, off, n)] = v & ((1 << 8 * n) - 1)
            return
        if m in _LOAD_SIZE:
            slot = _slot_operand(ops, s.consts)
            dst = ops.split(",")[0]
            n = _LOAD_SIZE[m] or (8 if dst.startswith("x") else 4)
            if slot is None or not dst.startswith(("x", "w")):
                return
            if n == 8:
                self._load = (F.reg_norm(dst), s.consts.get(slot))
                return
            v = s.consts.get(slot + (n,))
            if v is None and _num(s.consts.get(slot)) is not None:
                v = s.consts[slot] & ((1 << 8 * n) - 1)      # the low bytes (little-endian)
            self._load = (F.reg_norm(dst), v)     # zero-extended into the x register
        return

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
                for lo, hi, lock, kind, at in self.inline_acquires:
                    if lo <= a < hi and not lo <= b < hi and lock not in st.held:
                        st = st.copy()
                        st.held[lock] = (kind, at)
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
        return name, _num(s.consts.get("x0"))


def held_at(insns, callee_of, addr):
    """Shorthand: the locks held before the insn at ``addr`` (see :meth:`Flow.held_before`)."""
    return Flow(insns, callee_of).held_before(addr)
