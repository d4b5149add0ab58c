"""Every parameter of every frame, with the chain of evidence that gives its value.

``kd bt --args`` and ``kd args`` walk the frames of :func:`stack.best_unwind` (the one
frame walk of kd) from the innermost outwards and keep, per frame, what is *known*
about each register at the frame's pc, each value with its evidence:

* the innermost frame of a CPU: all of the CPU's registers (gdb's thread);
  a sleeping task: x19..x28, fp and sp from ``task->thread.cpu_context``;
* the frame an exception interrupted: all registers, from the entry's ``pt_regs``;
* a caller: x19..x28 are preserved across calls (AAPCS64), so the caller's value
  is the callee's — unless the callee changed the register, and then the callee
  saved the caller's value first, in its prologue (``stp x19, x20, [sp, #16]``):
  the slot is read at the callee's frame pointer plus the offset the decoded
  prologue gives (gdbkd/analysis/args.py). Caller-saved registers (x0..x18) are
  unknown in callers: the call clobbered them.

Each parameter is then found, in this order:

1. its **DWARF location** at the frame's pc (gdb's ``info scope``; for a caller
   the pc of the call's last byte, as gdb looks it up): a register known as
   above, a constant, register + offset;
2. a **DWARF entry value** (``DW_OP_entry_value(xN)``, gdb's ``x@entry``), or no
   location at all (``<optimized out>``): the value xN had when the function was
   entered, recovered by analysis —
   a. in the function itself: ``mov x19, x0`` before the call, with x0 not yet
      written since the entry, and x19 unchanged up to the call and known in this
      frame (usually from a deeper frame's spill);
   b. at the caller's call site (``bl`` to exactly this function): the caller's
      own definition of xN before the ``bl`` (a move from a known register, a
      constant, ``add xN, sp|xM, #imm``), or the caller's entry value of xN when
      nothing in the caller wrote it.
   When a. and b. both give a value they must agree, else it is unknown.

Nothing else is used: a value is shown only when every link of its chain is
proven by the code, the registers or the memory read; otherwise ``value`` is
None and ``reason`` says which link is missing. Values are the C parameter's
(truncated to its size; signed types sign-extended).

Valid for the arm64 kernels gdbkd supports (AAPCS64; the prologue forms gcc 8–14
emits with and without pointer authentication).
"""

import gdb

from ..analysis import args as A
from ..analysis import fault as F
from .memory import read_bytes
from .symbolize import lookup
from . import stack as kstack
from .vabits import strip_pac
# the fault explanation's DWARF helpers: the function (not inlined) block at a pc, and
# gdb's ``info scope`` parsed (whole location lists with absolute ranges), cached per pc
from .explain import _function_block, _scope

__all__ = ["frame_args", "Known", "FrameCtx", "contexts"]

M64 = (1 << 64) - 1
_MAX_DEPTH = 8
#: what the patchable function entry holds: NOPs, the first one rewritten at boot by ftrace
#: (arm64 DYNAMIC_FTRACE_WITH_REGS: ``mov x9, x30``); neither changes x0..x8 or x19..x29
_ENTRY_PATCH = {(0xd503201f).to_bytes(4, "little"), (0xaa1e03e9).to_bytes(4, "little")}


class Known:
    """A register's (or value's) content with its evidence: ``bits`` low bits are known."""

    __slots__ = ("value", "bits", "steps", "sources")

    def __init__(self, value, steps, sources=(), bits=64):
        self.value = value & ((1 << bits) - 1)
        self.bits = bits
        self.steps = list(steps)
        self.sources = list(sources)

    def then(self, step, value=None, bits=None, source=None):
        k = Known(self.value if value is None else value, self.steps + [step],
                  self.sources + ([source] if source else []),
                  self.bits if bits is None else bits)
        return k


class Unknown(Exception):
    pass


class FrameCtx:
    """One real (not inlined) frame of the walk with what is known at its pc."""

    def __init__(self, frame, exact):
        self.frame = frame
        self.pc = frame.pc
        self.exact = exact                   # pc is where the CPU was, not a return address
        self.regs = {}                       # reg -> Known, valid at pc
        self.sp = None                       # Known
        self.sym = lookup(frame.pc if exact else frame.pc - 4, want_line=False)
        self.lookup_pc = self.pc if exact else self.pc - 1   # gdb looks a caller up at pc - 1
        self.block = _function_block(self.lookup_pc)
        if self.block is None and exact:
            self._past_entry_nops()
        self.start = self.sym.start
        self.end = self.block.end if self.block is not None else None
        self._insns = None
        self._prologue = None
        self.caller = None
        self.callee = None
        self.why_no_code = None
        self.why_no_regs = None
        self._targets = None

    def _past_entry_nops(self):
        """A pc on the patchable-entry instructions (ftrace, 5.5+) before the function's DWARF
        low_pc (a breakpoint on the ELF symbol): the registers are still the entry's, so
        look DWARF up at the first instruction after the NOPs."""
        try:
            code = read_bytes(self.pc, 8)
        except gdb.MemoryError:
            return
        a = self.pc
        for k in range(2):
            if code[4 * k:4 * k + 4] not in _ENTRY_PATCH:
                break
            a += 4
            b = _function_block(a)
            if b is not None and b.start == a:
                self.block, self.lookup_pc = b, a
                return

    @property
    def name(self):
        if self.block is not None and self.block.function is not None:
            return self.block.function.name
        return self.sym.name or f"{self.pc:#x}"

    def insns(self):
        if self._insns is None:
            self._insns = []
            if self.start is None or self.end is None:
                self.why_no_code = f"{self.name}: no function bounds (no DWARF for it)"
            elif kstack.in_entry_text(self.pc):
                self.why_no_code = f"{self.name} is exception entry code"
            elif self.end - self.start > 64 * 1024 or self.end <= self.pc - (0 if self.exact else 4):
                self.why_no_code = f"{self.name}: DWARF bounds {self.start:#x}-{self.end:#x} do not hold pc"
            else:
                try:
                    self._insns = F.decode(read_bytes(self.start, self.end - self.start), self.start)
                except gdb.MemoryError as e:
                    self.why_no_code = f"cannot read {self.name}'s code: {e}"
        return self._insns

    def targets(self):
        if self._targets is None:
            self._targets = A.branch_targets(self.insns())
        return self._targets

    def prologue(self):
        if self._prologue is None and self.insns():
            self._prologue = A.prologue(self.insns(), self.start, self.pc)
        return self._prologue

    def entry_sp(self):
        """Known sp at this function's entry (= the caller's sp at the call), or None."""
        p = self.prologue()
        if p is None:
            return None
        if p.x29_off is not None and self.frame.fp:
            return Known(self.frame.fp - p.x29_off,
                         [f"{self.name}'s sp at entry = its x29 {self.frame.fp:#x} - ({p.x29_off}) "
                          f"(prologue: `{p.x29_insn}`)"], ["prologue"])
        if self.sp is not None and p.sp_off is not None and p.why_end == "the pc":
            return self.sp.then(f"{self.name}'s sp at entry = sp - ({p.sp_off}) (straight-line "
                                f"prologue up to the pc)", self.sp.value - p.sp_off)
        return None


def _thread_registers(thread):
    from .percpu import on_thread

    def read(fr):
        out = {}
        for r in [f"x{i}" for i in range(31)] + ["sp", "pc"]:
            try:
                out[r] = int(fr.read_register(r)) & M64
            except (gdb.error, ValueError):
                pass
        return out
    return on_thread(thread, read)


def contexts(u, task, thread=None):
    """[FrameCtx] for the real frames of Unwind ``u`` (same order), each with the
    registers known at its pc."""
    real = [f for f in u.frames if not f.inline_of]
    out = []
    for k, f in enumerate(real):
        prev = real[k - 1] if k else None
        exact = (k == 0 and f.kind == "exact") or f.kind == "exact" or \
            (prev is not None and prev.regs is not None and strip_pac(prev.regs["pc"]) == f.pc)
        ctx = FrameCtx(f, exact)
        if out:
            ctx.callee = out[-1]
            out[-1].caller = ctx
        out.append(ctx)
    if not out:
        return out
    _seed(out[0], u, task, thread)
    for k in range(1, len(out)):
        _propagate(out[k - 1], out[k])
    return out


def _seed(ctx, u, task, thread):
    src = u.start.get("source")
    if src in ("cpu registers", "gdb frames") and thread is not None:
        regs = _thread_registers(thread)
        if regs.get("pc") == ctx.pc:
            for r, v in regs.items():
                if r[0] == "x":
                    ctx.regs[r] = Known(v, [f"{r} = {v:#x}: the CPU's register"], ["cpu"])
            if "sp" in regs:
                ctx.sp = Known(regs["sp"], [f"sp = {regs['sp']:#x}: the CPU's register"], ["cpu"])
    elif src == "thread.cpu_context":
        cc = task.cpu_context
        for r in A.CALLEE_SAVED:
            if r in cc:
                ctx.regs[r] = Known(cc[r], [f"{r} = {cc[r]:#x}: saved by cpu_switch_to in "
                                            f"task->thread.cpu_context"], ["cpu_context"])
        ctx.regs["x29"] = Known(cc["fp"], ["fp from thread.cpu_context"], ["cpu_context"])
        ctx.sp = Known(cc["sp"], [f"sp = {cc['sp']:#x}: thread.cpu_context"], ["cpu_context"])


def _propagate(callee, caller):
    """The registers known at the caller's pc, from what is known in its callee."""
    f = callee.frame
    if f.regs is not None:                 # an exception entry: the interrupted context
        if caller.exact:
            for i in range(31):
                v = f.regs[f"x{i}"]
                caller.regs[f"x{i}"] = Known(v, [f"x{i} = {v:#x}: saved in the exception's "
                                                 f"pt_regs at {f.regs['addr']:#x}"], ["pt_regs"])
            caller.sp = Known(f.regs["sp"], [f"sp = {f.regs['sp']:#x}: pt_regs"], ["pt_regs"])
        return
    if caller.frame.fp:
        caller.regs["x29"] = Known(caller.frame.fp, [f"x29 = {caller.frame.fp:#x}: the frame record"],
                                   ["frame record"])
    insns = callee.insns()
    if not insns:
        caller.why_no_regs = callee.why_no_code
        return
    p = callee.prologue()
    caller.sp = callee.entry_sp()
    leaves = any(t < callee.start or t >= callee.end for t in callee.targets())
    for r in A.CALLEE_SAVED:
        s = p.saves.get(r)
        if s is not None:
            if s.base == "x29" and f.fp:
                addr = f.fp + s.off
                base = f"{callee.name}'s x29 {f.fp:#x} + {s.off:#x}"
            elif s.base == "entry_sp" and callee.sp is not None and p.sp_off is not None \
                    and p.why_end == "the pc":
                addr = callee.sp.value - p.sp_off + s.off
                base = f"{callee.name}'s entry sp + {s.off:#x}"
            else:
                continue
            try:
                v = int.from_bytes(read_bytes(addr, 8), "little")
            except gdb.MemoryError:
                continue
            caller.regs[r] = Known(v, [f"{r} = {v:#x}: {callee.name} saved its caller's {r} with "
                                       f"`{s.insn}` at {s.addr:#x} (prologue, before its pc "
                                       f"{callee.pc:#x}), slot {addr:#x} = {base}"],
                                   ["callee-saved spill"])
            continue
        known = callee.regs.get(r)
        if known is None:
            continue
        if r in p.written:
            continue
        if p.why_end == "the pc" and callee.exact:
            caller.regs[r] = known.then(f"{callee.name} does not write {r} before its pc {callee.pc:#x}")
            continue
        w = next((i for i in insns if r in A.writes(i)), None)
        if w is None and not leaves:
            caller.regs[r] = known.then(f"{callee.name} never writes {r}: the caller's {r} is the same")


# -- values ------------------------------------------------------------------------------------
def _value_at(ctx, point, reg, depth=0):
    """Known value of REG at address POINT (before it runs) in ctx's function, or raise Unknown."""
    if depth > _MAX_DEPTH:
        raise Unknown("the chain of moves is too long")
    if reg == "sp":
        return _sp_at(ctx, point)
    insns = ctx.insns()
    if not insns:
        raise Unknown(ctx.why_no_code or f"no code for {ctx.name}")
    targets = ctx.targets()
    known = ctx.regs.get(reg)
    if known is not None:
        if point == ctx.pc:
            return known
        kind, d = A.last_write(insns, ctx.pc, reg, ctx.start, not ctx.exact, targets)
        if kind == "entry" or (kind == "def" and d.addr < point):
            return known.then(f"{reg} is not written between {point:#x} and the pc {ctx.pc:#x}")
    arrived = not ctx.exact and point == ctx.pc
    kind, d = A.last_write(insns, point, reg, ctx.start, arrived, targets)
    if kind == "unknown":
        raise Unknown(f"{reg} at {point:#x} in {ctx.name}: {d}")
    if kind == "entry":
        if reg not in [f"x{i}" for i in range(8)]:
            raise Unknown(f"{reg} at {point:#x} in {ctx.name} is its caller's {reg}, not an argument")
        k = _entry_value(ctx, reg, depth + 1)
        return k.then(f"nothing in {ctx.name} writes {reg} from its entry to {point:#x}")
    return _def_value(ctx, d, reg, depth)


def _straight(insns, lo, hi, targets):
    """Every instruction in (lo, hi] is reached only from its predecessor."""
    return not any(lo < t <= hi for t in targets) and \
        not any(lo <= i.addr < hi and A.is_branch(i) for i in insns)


def _def_value(ctx, d, reg, depth):
    src = A.mov_source(d)
    if src is not None:
        k = _value_at(ctx, d.addr, src[0], depth + 1)
        bits = min(k.bits, src[1])
        return k.then(f"`{d.text}` at {d.addr:#x} copies {src[0]} into {reg}", bits=bits,
                      value=k.value & ((1 << bits) - 1), source="move")
    imm = A.mov_imm(d)
    if imm is not None:
        return Known(imm[0], [f"`{d.text}` at {d.addr:#x} sets {reg} = {imm[0]:#x}"], ["constant"])
    ai = A.add_imm(d)
    if ai is not None:
        k = _value_at(ctx, d.addr, ai[0], depth + 1)
        bits = min(k.bits, ai[2]) if ai[2] == 32 else k.bits
        if ai[2] == 32 and k.bits < 32:
            raise Unknown(f"`{d.text}`: only {k.bits} bits of {ai[0]} are known")
        v = (k.value + ai[1]) & ((1 << bits) - 1)
        return k.then(f"`{d.text}` at {d.addr:#x}: {reg} = {ai[0]} {ai[1]:+#x}", value=v, bits=bits,
                      source="move")
    raise Unknown(f"{reg} was last set by `{d.text}` at {d.addr:#x} in {ctx.name}, which kd does "
                  f"not evaluate")


def _sp_at(ctx, point):
    if ctx.sp is None:
        raise Unknown(f"sp of {ctx.name} is not known")
    insns = ctx.insns()
    if point != ctx.pc:
        w = A.written_in(insns, point, ctx.pc, "sp")
        if w is not None or not _straight(insns, point, ctx.pc, ctx.targets()):
            raise Unknown(f"sp of {ctx.name} at {point:#x} is not proven equal to sp at its pc")
    return ctx.sp


def _arg_regs(params):
    """{name: x register} for the parameters passed in x0..x7 (AAPCS64), as far as certain."""
    out = {}
    n = 0
    for name, typ in params:
        t = typ.strip_typedefs()
        if t.code in (gdb.TYPE_CODE_PTR, gdb.TYPE_CODE_INT, gdb.TYPE_CODE_ENUM, gdb.TYPE_CODE_BOOL,
                      gdb.TYPE_CODE_CHAR) and t.sizeof <= 8:
            if n >= 8:
                break
            out[name] = f"x{n}"
            n += 1
        else:
            break            # structs, floats, ...: kd does not place the later ones
    return out


def _entry_value(ctx, reg, depth=0):
    """Known value REG (x0..x7) had when ctx's function was entered."""
    if depth > _MAX_DEPTH:
        raise Unknown("the chain of moves is too long")
    got, why = [], []
    try:
        got.append(_entry_from_callee_saved(ctx, reg, depth))
    except Unknown as e:
        why.append(str(e))
    try:
        got.append(_entry_from_call_site(ctx, reg, depth))
    except Unknown as e:
        why.append(str(e))
    if not got:
        raise Unknown("; ".join(why))
    if len(got) == 2:
        a, b = got
        bits = min(a.bits, b.bits)
        m = (1 << bits) - 1
        if a.value & m != b.value & m:
            raise Unknown(f"{reg} at {ctx.name}'s entry: two chains disagree ({a.value:#x} from "
                          f"{ctx.name}'s own code, {b.value:#x} from its caller's call site)")
        best = a if a.bits >= b.bits else b
        other = b if best is a else a
        return best.then(f"(agrees with: {other.steps[-1]})")
    return got[0]


def _entry_from_callee_saved(ctx, reg, depth):
    insns = ctx.insns()
    if not insns:
        raise Unknown(ctx.why_no_code or f"no code for {ctx.name}")
    targets = ctx.targets()
    if ctx.exact and reg in ctx.regs:
        kind, d = A.last_write(insns, ctx.pc, reg, ctx.start, False, targets)
        if kind == "entry":
            return ctx.regs[reg].then(f"nothing in {ctx.name} writes {reg} between its entry and the pc")
    reasons = []
    for r in A.CALLEE_SAVED:
        k = ctx.regs.get(r)
        if k is None:
            continue
        kind, d = A.last_write(insns, ctx.pc, r, ctx.start, not ctx.exact, targets)
        if kind != "def":
            continue
        src = A.mov_source(d)
        if src is None or src[0] != reg:
            continue
        k2, d2 = A.last_write(insns, d.addr, reg, ctx.start, False, targets)
        if k2 != "entry":
            reasons.append(f"`{d.text}` at {d.addr:#x}, but {reg} may have changed before it")
            continue
        bits = min(src[1], k.bits)
        return k.then(f"`{d.text}` at {d.addr:#x} in {ctx.name} copied {reg} as it was at the entry "
                      f"(nothing writes {reg} before it) into {r}, which is not written again "
                      f"before the pc {ctx.pc:#x}", value=k.value & ((1 << bits) - 1), bits=bits,
                      source="move before call")
    raise Unknown(f"{ctx.name} keeps no copy of {reg} in a known callee-saved register"
                  + (f" ({'; '.join(reasons)})" if reasons else ""))


def _entry_from_call_site(ctx, reg, depth):
    c = ctx.caller
    if c is None:
        raise Unknown(f"{ctx.name} has no caller frame")
    insns = c.insns()
    if not insns:
        raise Unknown(c.why_no_code or f"no code for {c.name}")
    if c.exact:
        raise Unknown(f"{c.name} was interrupted at {c.pc:#x}, it did not call {ctx.name}")
    call = next((i for i in insns if i.addr == c.pc - 4), None)
    if call is None or not A.is_call(call):
        raise Unknown(f"the instruction before {c.name}'s return address {c.pc:#x} is not a call")
    tgt = A.call_target(call)
    starts = {ctx.start}
    if ctx.block is not None:
        starts.add(ctx.block.start)
    if tgt is None:
        raise Unknown(f"{c.name} calls through `{call.text}` at {call.addr:#x}: the callee is not "
                      f"proven to be {ctx.name}")
    if tgt not in starts:
        raise Unknown(f"`{call.text}` at {call.addr:#x} in {c.name} does not call {ctx.name} "
                      f"directly (a tail call or a veneer in between)")
    k = _value_at(c, call.addr, reg, depth + 1)
    return k.then(f"at {c.name}'s call `{call.text}` at {call.addr:#x}, {reg} = {k.value:#x}",
                  source="call site")


# -- parameters --------------------------------------------------------------------------------
def _fit(k: Known, typ):
    """The C value of the parameter from a known register value (None if too few bits)."""
    size = typ.strip_typedefs().sizeof or 8
    bits = min(size * 8, 64)
    if k.bits < bits:
        return None
    v = k.value & ((1 << bits) - 1)
    t = typ.strip_typedefs()
    if t.code in (gdb.TYPE_CODE_INT, gdb.TYPE_CODE_CHAR) and getattr(t, "is_signed", False) \
            and v >> (bits - 1):
        v -= 1 << bits
    return v


def _how(k: Known, first: str):
    parts = [first]
    for s in k.sources:
        if s not in parts and s not in ("cpu", "frame record"):
            parts.append(s)
    return " + ".join(parts)


def _one_param(ctx, name, typ, sv, areg):
    d = {"name": name, "type": str(typ), "value": None, "how": None, "evidence": [], "reason": None}
    loc = sv.at(ctx.lookup_pc) if sv is not None else None
    dwarf = None
    if sv is None:
        dwarf = "no DWARF location"
    elif loc is None:
        dwarf = f"DWARF gives no location at {ctx.lookup_pc:#x}"
    try:
        k, first, entry = None, None, False
        if loc is not None:
            kind, det = loc
            if kind == "reg":
                k = _value_at(ctx, ctx.pc, det)
                first = f"DWARF location ({det})"
                k = k.then(f"DWARF: {name} is in {det} at {ctx.lookup_pc:#x}")
            elif kind == "const":
                k = Known(det, [f"DWARF: {name} is the constant {det:#x} at {ctx.lookup_pc:#x}"])
                first = "DWARF location (constant)"
            elif kind == "reg_plus":
                r, off = det
                k0 = _value_at(ctx, ctx.pc, r)
                k = k0.then(f"DWARF: {name} = {r} {off:+#x} at {ctx.lookup_pc:#x}", value=k0.value + off)
                first = f"DWARF location ({r}{off:+#x})"
            elif kind == "entry_value":
                k = _entry_value(ctx, det)
                k = k.then(f"DWARF: {name} is DW_OP_entry_value({det}) at {ctx.lookup_pc:#x}")
                first, entry = f"DWARF entry value ({det}@entry)", True
            elif kind == "optimized out":
                dwarf = f"DWARF: optimized out at {ctx.lookup_pc:#x}"
            else:
                raise Unknown(f"DWARF location at {ctx.lookup_pc:#x} is one kd does not evaluate: "
                              f"{str(det).splitlines()[0][:80]}")
        if k is None:
            if areg is None:
                raise Unknown(f"{dwarf}; kd does not know which register carried it")
            k = _entry_value(ctx, areg)
            k = k.then(f"{dwarf}; {name} arrived in {areg} (AAPCS64) and is not assigned in "
                       f"{ctx.name}: its value at the entry is the parameter's")
            first, entry = f"recovered ({areg}@entry)", True
        v = _fit(k, typ)
        if v is None:
            raise Unknown(f"only the low {k.bits} bits of {name} are known")
        d.update(value=v, how=_how(k, first), evidence=k.steps, at_entry=entry)
    except Unknown as e:
        d["reason"] = str(e)
    return d


def frame_args(ctx):
    """{"function", "args": [...], "reason"} for one FrameCtx."""
    out = {"function": ctx.name, "args": [], "reason": None}
    if ctx.block is None or ctx.block.function is None:
        why = ctx.sym.debuginfo if ctx.sym.module and ctx.sym.debuginfo != "dwarf" else \
            f"no DWARF for {ctx.name}"
        out["reason"] = why
        return out
    params = [(s.name, s.type) for s in ctx.block if s.is_argument]
    scope = {}
    dup = set()
    for sv in _scope(ctx.block.start):
        if sv.name in scope:
            dup.add(sv.name)
        scope[sv.name] = sv
    aregs = _arg_regs(params)
    for name, typ in params:
        if name in dup:
            out["args"].append({"name": name, "type": str(typ), "value": None, "how": None,
                                "evidence": [], "reason": "two symbols of this name in scope"})
            continue
        out["args"].append(_one_param(ctx, name, typ, scope.get(name), aregs.get(name)))
    return out
