"""Where did a function's arguments go? The pure half of ``kd bt --args`` / ``kd args``.

No gdb here; the in-gdb half (DWARF, frames, memory) is gdbkd/kernel/args.py.
The code is AArch64 as decoded by capstone (gdbkd/analysis/fault.py's
:func:`decode`). Everything here answers with a proof or with the reason there
is none; nothing is inferred from "usual" code shapes:

* :func:`prologue` — the straight-line start of a function up to a pc: which
  callee-saved registers (x19..x28) it stored, unmodified, and where
  (relative to the function's own x29 once ``mov x29, sp`` / ``add x29, sp, #k``
  has run, or to its entry sp). Only stores executed on every path to the pc
  count: the region ends at the first branch, and no branch may land inside it.
* :func:`last_write` — the instruction that last wrote a register before a
  pc on the only path there, or "the function's entry" when the walk reaches
  the first instruction without a write; a call on the way ends the walk for
  caller-saved registers (AAPCS64: x0..x18, x30 are not preserved). It is kd's
  one backward walk over code: ``kd analyze``'s fault explanation
  (gdbkd/kernel/explain.py) names a base register with it too.
* :func:`writes` — the registers an instruction writes: capstone's list plus
  the destination operands, so that an incomplete capstone answer can only
  make kd say "unknown", never pass a changed register off as unchanged.

AAPCS64 facts used: x19..x28 and x29 are preserved across calls, x0..x7 carry
the first eight integer/pointer arguments; a ``bl`` writes x30.
"""

import re
from dataclasses import dataclass, field

from . import fault as F

__all__ = ["CALLEE_SAVED", "CALLER_SAVED", "Save", "Prologue", "prologue", "last_write",
           "writes", "is_call", "is_branch", "Targets", "branch_targets", "call_target", "mov_source", "mov_imm",
           "add_imm", "written_in"]

CALLEE_SAVED = tuple(f"x{i}" for i in range(19, 29))
CALLER_SAVED = frozenset({f"x{i}" for i in range(19)} | {"x30"})
_CALLS = ("bl", "blr", "blraa", "blrab", "blraaz", "blrabz")
_INDIRECT = ("br", "braa", "brab", "braaz", "brabz")
#: after these control never falls through to the next instruction
_NO_FALL_THROUGH = frozenset(("b", "ret", "retaa", "retab", "eret") + _INDIRECT)
_COND = re.compile(r"^(b\.|cbz|cbnz|tbz|tbnz)")
_NO_DEST = re.compile(r"^(st|cmp|cmn|tst|ccmp|ccmn|prfm|b$|b\.|bl|br|ret|cbz|cbnz|tbz|tbnz|"
                      r"nop|hint|paci|auti|bti|dmb|dsb|isb|msr|eret|brk|hvc|svc|smc|yield|"
                      r"xpaclri|clrex|sev|wfe|wfi|at$|dc$|ic$|tlbi)")
_PAIR_LOAD = re.compile(r"^ld(n|a?x)?p")


def is_call(i) -> bool:
    return i.mnemonic in _CALLS


def is_branch(i) -> bool:
    """Any instruction after which control may not fall through to the next one."""
    m = i.mnemonic
    return (m in ("b", "br", "braa", "brab", "braaz", "brabz", "ret", "retaa", "retab", "eret")
            or bool(_COND.match(m)))


def call_target(i):
    """Absolute target of a direct ``bl``, else None."""
    if i.mnemonic != "bl":
        return None
    m = re.search(r"#(0x[0-9a-f]+|\d+)\s*$", i.op_str)
    return int(m.group(1), 0) if m else None


class Targets(frozenset):
    """The targets of a function's direct branches, and ``indirect``: its first indirect
    branch (``br``…: a jump table, which may land anywhere), or None."""
    indirect = None


def branch_targets(insns) -> Targets:
    """Targets of the direct branches (b, b.cond, cbz, tbz...) of a function."""
    out = set()
    indirect = None
    for i in insns:
        if i.mnemonic == "b" or _COND.match(i.mnemonic):
            m = re.search(r"#(0x[0-9a-f]+|\d+)\s*$", i.op_str)
            if m:
                out.add(int(m.group(1), 0))
        elif indirect is None and i.mnemonic in _INDIRECT:
            indirect = i
    t = Targets(out)
    t.indirect = indirect
    return t


def _op_regs(i):
    return [F.reg_norm(r) for r in re.findall(r"\b([wx]\d+|sp|wsp|fp|lr|xzr|wzr)\b",
                                              i.op_str.split("[")[0])]


def writes(i) -> frozenset:
    """Registers (x0..x30, sp) the instruction writes, erring towards more."""
    if i.may_write is None:
        i.may_write = frozenset(_writes(i))
    return i.may_write


def _writes(i) -> set:
    out = {r for r in i.writes if r and (r[0] == "x" or r == "sp")}
    m = i.mnemonic
    if is_call(i):
        out |= CALLER_SAVED
    regs = [r for r in _op_regs(i) if r]
    if not _NO_DEST.match(m) and regs:
        out.add(regs[0])
        if _PAIR_LOAD.match(m) and len(regs) > 1:
            out.add(regs[1])
    if "]!" in i.op_str or re.search(r"\],\s*#", i.op_str):       # writeback
        b = re.search(r"\[(\w+)", i.op_str)
        if b:
            out.add(F.reg_norm(b.group(1)))
    if m.startswith(("stxr", "stlxr", "stxp", "stlxp")) and regs:
        out.add(regs[0])                        # the status register
    return {r for r in out if r}


def written_in(insns, lo, hi, reg) -> object:
    """The first instruction in [lo, hi) (addresses) that writes REG, or None."""
    for i in insns:
        if lo <= i.addr < hi and reg in writes(i):
            return i
    return None


def last_write(insns, pc, reg, start=None, arrived_by_call=False, targets=None):
    """("def", Insn) | ("entry", None) | ("unknown", why): what REG holds at ``pc``
    (before the instruction there runs), from the only path that reaches it.

    INSNS: the whole function, from its first instruction ``start`` (default: the first
    of INSNS). ``arrived_by_call``: pc is a return address, so control came from the
    call just before it (a branch to pc does not make the path ambiguous). TARGETS:
    :func:`branch_targets` of INSNS, when the caller keeps them.

    Walking back from pc, each instruction must be reached only from the one before it:
    not a direct branch's target, not after an instruction control never falls through
    (``b``, ``ret``, ``br``…; a conditional branch falls through), and the function has
    no indirect branch (a jump table's ``br`` may land anywhere). A call writes the
    caller-saved registers; :func:`writes` errs towards more."""
    if start is None:
        start = insns[0].addr if insns else pc
    if targets is None:
        targets = branch_targets(insns)
    ind = targets.indirect
    if ind is not None:
        return "unknown", f"the function has an indirect branch (`{ind.text}` at {ind.addr:#x})"
    at = _insn_at(insns)
    a = pc - 4
    first = True
    while True:
        if a < start:
            return "entry", None
        i = at(a)
        if i is None:
            return "unknown", f"no decoded instruction at {a:#x}"
        if a + 4 in targets and not (first and arrived_by_call):
            return "unknown", (f"{a + 4:#x} is a branch target: more than one path reaches it, "
                               f"{reg} may come from either")
        first = False
        if i.mnemonic in _NO_FALL_THROUGH:
            return "unknown", f"{a + 4:#x} follows `{i.text}`: reached only by a branch"
        if is_call(i):
            if reg in CALLER_SAVED:
                return "unknown", f"{reg} is caller-saved and the call `{i.text}` at {a:#x} may change it"
            a -= 4
            continue
        if reg in writes(i):
            return "def", i
        a -= 4


def _insn_at(insns):
    """addr -> the Insn of INSNS there, or None. A64 instructions are 4 bytes: a list
    decoded in one run (:func:`gdbkd.analysis.fault.decode`) is indexed directly."""
    if insns and insns[-1].addr - insns[0].addr == 4 * (len(insns) - 1):
        base, n = insns[0].addr, len(insns)

        def at(a):
            k = (a - base) >> 2
            return insns[k] if 0 <= k < n and not (a - base) & 3 else None
        return at
    return {i.addr: i for i in insns}.get


def mov_source(i):
    """(source register, bits) of a copy of a register's low ``bits`` bits into another,
    zero-extended: ``mov xD, xS`` (64), ``mov wD, wS`` (32), ``and xD|wD, S, #2^n-1``,
    ``uxtb``/``uxth`` (8/16); else None."""
    m = i.mnemonic
    ops = i.op_str.replace(" ", "")
    if m == "mov":
        r = re.fullmatch(r"([wx])(\d+),([wx]\d+|sp|wsp)", ops)
        if r:
            return F.reg_norm(r.group(3)), (64 if r.group(1) == "x" else 32)
        return None
    if m == "and":
        r = re.fullmatch(r"([wx])\d+,([wx]\d+),#(0x[0-9a-f]+|\d+)", ops)
        if r:
            mask = int(r.group(3), 0)
            if mask and mask & (mask + 1) == 0:
                return F.reg_norm(r.group(2)), mask.bit_length()
        return None
    if m in ("uxtb", "uxth"):
        r = re.fullmatch(r"[wx]\d+,([wx]\d+)", ops)
        if r:
            return F.reg_norm(r.group(1)), 8 if m == "uxtb" else 16
    return None


def mov_imm(i):
    """(value, bits) of ``mov xD, #imm`` / ``mov wD, #imm`` (capstone's alias for movz/movn/orr),
    else None. The value is what the destination register holds (32-bit moves zero-extend)."""
    if i.mnemonic != "mov":
        return None
    m = re.fullmatch(r"([wx])\d+,\s*#(-?(?:0x[0-9a-f]+|\d+))", i.op_str.strip())
    if not m:
        return None
    bits = 64 if m.group(1) == "x" else 32
    return int(m.group(2), 0) & ((1 << bits) - 1), bits


def add_imm(i):
    """(source register or "sp", signed immediate, bits) of ``add/sub xD, xS|sp, #imm``, else None."""
    if i.mnemonic not in ("add", "sub"):
        return None
    m = re.fullmatch(r"([wx]|(?=sp)|(?=wsp))(?:\d+|sp|wsp),\s*([wx]\d+|sp|wsp),\s*#(0x[0-9a-f]+|\d+)"
                     r"(?:,\s*lsl #(\d+))?", i.op_str.strip())
    if not m:
        return None
    imm = int(m.group(3), 0) << int(m.group(4) or 0)
    return F.reg_norm(m.group(2)), (imm if i.mnemonic == "add" else -imm), \
        (32 if m.group(1) == "w" else 64)


@dataclass
class Save:
    """A callee-saved register stored in the prologue: at ``x29 + off`` (``base`` "x29")
    or ``entry sp + off`` (``base`` "entry_sp")."""
    reg: str
    base: str
    off: int
    insn: str
    addr: int


@dataclass
class Prologue:
    start: int
    saves: dict = field(default_factory=dict)     # reg -> Save
    x29_off: int = None       # x29 - entry sp, once x29 is set before the pc
    x29_insn: str = None
    sp_off: int = 0           # sp - entry sp at the end of the region (None: untracked)
    record_insn: str = None   # the instruction storing {x29, x30}
    record_off: int = None    # where that record is, relative to entry sp
    end: int = 0              # first address not in the region
    why_end: str = ""
    written: dict = field(default_factory=dict)   # callee-saved reg -> first write in the region

    @property
    def frame_size(self):
        """Bytes between entry sp and the frame record (the caller's sp = this record + size)."""
        return -self.record_off if self.record_off is not None else None


def prologue(insns, start, pc) -> Prologue:
    """The straight-line region of a function from ``start`` up to ``pc`` (exclusive)
    and what it saved. INSNS: the function's instructions."""
    targets = branch_targets(insns)
    p = Prologue(start)
    sp = 0
    for i in insns:
        if i.addr < start:
            continue
        if i.addr >= pc:
            p.end, p.why_end = i.addr, "the pc"
            break
        if i.addr != start and i.addr in targets:
            p.end, p.why_end = i.addr, f"{i.addr:#x} is a branch target"
            break
        if is_branch(i) or is_call(i):
            p.end, p.why_end = i.addr, f"`{i.text}` at {i.addr:#x}"
            break
        st = _store(i)
        if st is not None:
            regs, base, disp, pre, post = st
            if base == "sp" and sp is not None:
                addr = sp + (disp if not post else 0)
                where = ("entry_sp", addr)
                if pre or post:
                    sp += disp
            elif base == "x29" and p.x29_off is not None:
                where = ("entry_sp", p.x29_off + disp)
                if pre or post:
                    where = None
            else:
                where = None
            if where is not None:
                for k, r in enumerate(regs):
                    off = where[1] + 8 * k
                    if r in CALLEE_SAVED and r not in p.saves and r not in p.written:
                        p.saves[r] = Save(r, "entry_sp", off, i.text, i.addr)
                    if regs[:2] == ["x29", "x30"] and k == 0 and p.record_off is None:
                        p.record_off, p.record_insn = off, i.text
            elif base == "sp":
                pass
            continue
        w = writes(i)
        if "sp" in w:
            a = add_imm(i)
            if a is not None and a[0] == "sp" and sp is not None:
                sp += a[1]
            else:
                sp = None
        if "x29" in w:
            a = add_imm(i) if i.mnemonic in ("add", "sub") else None
            if i.mnemonic == "mov" and i.op_str.replace(" ", "") == "x29,sp" and sp is not None:
                p.x29_off, p.x29_insn = sp, i.text
            elif a is not None and a[0] == "sp" and sp is not None:
                p.x29_off, p.x29_insn = sp + a[1], i.text
            else:
                p.x29_off, p.x29_insn = None, None
        for r in w:
            if r in CALLEE_SAVED and r not in p.written:
                p.written[r] = i
    else:
        p.end, p.why_end = (insns[-1].addr + 4 if insns else start), "the function's end"
    p.sp_off = sp
    # saves relative to x29 when it is set
    if p.x29_off is not None:
        for s in p.saves.values():
            s.base, s.off = "x29", s.off - p.x29_off
    return p


def _store(i):
    """(data registers, base, disp, pre-index writeback, post-index) of an x-register store
    ``str/stp xA[, xB], [base, #d]{!}`` / ``[base], #d``, else None."""
    if i.mnemonic not in ("str", "stp", "stur"):
        return None
    m = re.fullmatch(r"(x\d+|xzr|fp|lr)(?:,\s*(x\d+|xzr|fp|lr))?,\s*\[(sp|x29|fp)(?:,\s*#(-?(?:0x[0-9a-f]+|\d+)))?\]"
                     r"(!)?(?:,\s*#(-?(?:0x[0-9a-f]+|\d+)))?", i.op_str.strip())
    if not m:
        return None
    regs = [F.reg_norm(m.group(1))] + ([F.reg_norm(m.group(2))] if m.group(2) else [])
    base = F.reg_norm(m.group(3))
    if m.group(6) is not None:
        return regs, base, int(m.group(6), 0), False, True
    return regs, base, int(m.group(4) or "0", 0), bool(m.group(5)), False
