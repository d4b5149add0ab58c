"""The arm64 frame-record walk step by step (lab 8), and recovery past a broken record.

The walk itself is :func:`stack.unwind` (kd's one frame-record walker); this module
re-reads each record it followed and says what was checked:

* ``x29`` (fp) points at the frame record ``{[fp] = caller's fp, [fp + 8] = lr}``;
* fp is 16-byte aligned, lies on a known stack (task, IRQ, overflow, SDEI), and the
  caller's fp is above it on the same stack (or on another stack: a stack switch);
* lr (pointer-authentication bits stripped) is kernel text, the instruction before
  it is a ``bl``/``blr`` — the call — and a ``bl``'s target is the function of the
  frame below (else a tail call or a veneer came in between);
* the caller's prologue (decoded) says where its record is in its frame:
  ``stp x29, x30, [sp, #-N]!`` puts it N bytes below its entry sp.

When a record is garbage (lab 8: an overflow wrote over ``lab8_submit``'s record),
the walk is resumed from the stack, and the frames found so are marked
``recovered``:

1. the broken frame's own prologue gives its entry sp (= its x29 minus the x29
   offset): the caller's frame starts there;
2. from there upwards, the first 16-byte aligned pair ``{fp', lr'}`` where fp' is 0 or
   a higher address on the same stack, lr' is text and the instruction before lr' is
   a ``bl``/``blr`` is taken as the caller's frame record: lr' returns into the
   caller's caller;
3. the caller itself (whose return address was in the broken record) is named only
   when it is certain: the broken frame's function is called by exactly one
   ``bl`` in its module's text; otherwise it is shown as unknown.
"""

import gdb

from ..analysis import args as A
from ..analysis import fault as F
from . import stack as kstack
from .symbolize import lookup, is_text, module_ranges
from .memory import read_bytes
from ..model.stacks import stack_of
from .vabits import strip_pac

__all__ = ["explain_unwind"]

_SCAN = 4096


def _u64(b, off=0):
    return int.from_bytes(b[off:off + 8], "little")


def _insn_before(addr):
    """The decoded instruction at addr - 4, or None."""
    try:
        ins = F.decode(read_bytes(addr - 4, 4), addr - 4)
    except gdb.MemoryError:
        return None
    return ins[0] if ins else None


def _func_bounds(pc):
    """(start, end or None) of the function holding pc (ELF/kallsyms start, DWARF end)."""
    s = lookup(pc, want_line=False)
    if s.start is None:
        return None, None
    end = None
    try:
        b = gdb.block_for_pc(s.start + 8) or gdb.block_for_pc(pc)
        while b is not None and b.function is None and not b.is_global:
            b = b.superblock
        if b is not None and b.function is not None:
            end = b.end
    except RuntimeError:
        pass
    return s.start, end


def _prologue(pc, exact):
    start, end = _func_bounds(pc if exact else pc - 4)
    if start is None:
        return None, "no symbol"
    stop = end if end is not None and end > pc else pc + 4
    try:
        insns = F.decode(read_bytes(start, min(stop, start + 256) - start), start)
    except gdb.MemoryError as e:
        return None, str(e)
    return A.prologue(insns, start, pc), None


def _record_checks(f, nxt, ranges):
    """Checks of the frame record at f.fp that led to frame nxt."""
    out = []
    fp = f.fp
    here = stack_of(fp, ranges)
    out.append({"check": "fp 16-byte aligned", "ok": fp % 16 == 0})
    out.append({"check": f"fp on a known stack ({here or 'none'})", "ok": here is not None})
    if nxt.fp:
        there = stack_of(nxt.fp, ranges)
        if there == here:
            out.append({"check": "caller's fp above this one on the same stack", "ok": nxt.fp > fp})
        else:
            out.append({"check": f"caller's fp on another stack ({there}): a stack switch",
                        "ok": there is not None})
    out.append({"check": "lr is kernel text", "ok": is_text(nxt.pc)})
    return out


def _call_check(ret, callee_pc, callee_exact):
    """What the instruction before the return address says about the call."""
    i = _insn_before(ret)
    if i is None:
        return {"check": "instruction before lr readable", "ok": False}, None
    if i.mnemonic == "bl":
        tgt = A.call_target(i)
        cs = lookup(callee_pc if callee_exact else callee_pc - 4, want_line=False).start
        same = tgt is not None and cs is not None and tgt == cs
        note = "" if same else " (not the callee's start: a tail call or a veneer in between)"
        return {"check": f"lr - 4 is `{i.text}` → {lookup(tgt, False).label() if tgt else '?'}{note}",
                "ok": True}, i.text
    if A.is_call(i):
        return {"check": f"lr - 4 is `{i.text}` (an indirect call: can reach any function)",
                "ok": True}, i.text
    return {"check": f"lr - 4 is `{i.text}`, not a call", "ok": False}, i.text


def _frame_json(f, recovered=False, note=None):
    s = f.sym(False)
    return {"level": f.level, "pc": f.pc, "fp": f.fp or None, "kind": f.kind, "stack": f.stack,
            "function": s.name, "offset": s.offset, "module": s.module, "label": s.label(),
            "recovered": recovered, "note": note, "checks": [], "call": None, "record": None,
            "prologue": None}


def _describe_prologue(d, f):
    p, why = _prologue(f.pc, f.kind == "exact")
    if p is None:
        d["prologue"] = {"error": why}
        return None
    d["prologue"] = {"start": p.start, "record_insn": p.record_insn, "frame_size": p.frame_size,
                     "x29_insn": p.x29_insn, "x29_off": p.x29_off}
    return p


def _direct_callers(func_start, module):
    """Addresses of every ``bl func_start`` in the text of MODULE (None: not a module)."""
    if not module:
        return None
    out = []
    for lo, hi, name in module_ranges():
        if name != module:
            continue
        try:
            code = read_bytes(lo, hi - lo)
        except gdb.MemoryError:
            continue
        for off in range(0, len(code) - 3, 4):
            w = int.from_bytes(code[off:off + 4], "little")
            if w >> 26 == 0b100101:                       # BL imm26
                imm = w & 0x3FFFFFF
                if imm >> 25:
                    imm -= 1 << 26
                if lo + off + 4 * imm == func_start:
                    out.append(lo + off)
    return out


def _recover(last, task, ranges):
    """((caller Frame, note), steps, why not, Unwind of the rest) past LAST, whose frame
    record is broken."""
    steps = []
    p, why = _prologue(last.pc, last.kind == "exact")
    if p is None or p.x29_off is None or not last.fp:
        return None, steps, f"the prologue of {last.sym(False).label()} gives no frame size ({why or 'x29 not set'})", None
    entry_sp = last.fp - p.x29_off
    steps.append(f"{last.sym(False).name}'s prologue `{p.record_insn}` / `{p.x29_insn}`: its x29 is "
                 f"{-p.x29_off:#x} below its entry sp, so its caller's frame starts at "
                 f"{last.fp:#x} + {-p.x29_off:#x} = {entry_sp:#x}")
    st = stack_of(entry_sp, ranges)
    hi = next((h for n, lo, h in ranges if n == st), entry_sp + _SCAN)
    try:
        raw = read_bytes(entry_sp, min(hi, entry_sp + _SCAN) - entry_sp)
    except gdb.MemoryError as e:
        return None, steps, f"cannot read the stack above {entry_sp:#x}: {e}", None
    found = None
    for off in range(0, len(raw) - 15, 8):
        a = entry_sp + off
        if a % 16:
            continue
        pfp, lr = _u64(raw, off), strip_pac(_u64(raw, off + 8))
        if not is_text(lr):
            continue
        if pfp and not (pfp > a and stack_of(pfp, ranges) == st):
            continue
        i = _insn_before(lr)
        if i is None or not A.is_call(i):
            steps.append(f"[{a + 8:#x}] = {lr:#x} ({lookup(lr - 4, False).label()}) is text but "
                         f"not after a call: skipped")
            continue
        found = (a, pfp, lr, i)
        break
    if found is None:
        return None, steps, f"no frame record candidate in {len(raw)} bytes above {entry_sp:#x}", None
    a, pfp, lr, i = found
    steps.append(f"frame record candidate at {a:#x}: [{a:#x}] = {pfp:#x} (higher, same stack), "
                 f"[{a + 8:#x}] = {lr:#x}, a return into {lookup(lr - 4, False).label()} after `{i.text}`")
    sym = last.sym(False)
    callers = _direct_callers(sym.start, sym.module) if sym.start is not None else None
    caller = kstack.Frame(0, a, None, "return")
    note = None
    if callers is not None and len(callers) == 1:
        caller.pc = callers[0] + 4
        note = (f"the only `bl {sym.name}` in {sym.module}'s text is at "
                f"{lookup(callers[0], False).label()}: its return address, overwritten in the "
                f"broken record, is {callers[0] + 4:#x}")
    else:
        note = (f"the caller of {sym.name} (its return address was in the broken record) is not "
                f"known: " + ("not a module function" if callers is None else
                              f"{len(callers)} direct calls to it in {sym.module}"))
    steps.append(note)
    caller.stack = stack_of(a, ranges)
    rest = kstack.unwind(lr, pfp, a + 16, None, "return", task)
    steps.append(f"the chain continues from {lr:#x} with fp {pfp:#x}: {len(rest.frames)} more "
                 f"frames ({rest.stop})")
    return (caller, note), steps, None, rest


def _describe(fs, ranges, level, first_note=None):
    """JSON of the walked frames FS (levels from LEVEL), each with its record's checks;
    FIRST_NOTE marks the first one as recovered."""
    out = []
    for k, f in enumerate(fs):
        f.level = level + k
        d = _frame_json(f, bool(first_note) and k == 0, first_note if k == 0 else None)
        _describe_prologue(d, f)
        nxt = fs[k + 1] if k + 1 < len(fs) else None
        if f.regs is not None:
            d["exception"] = {"pt_regs": f.regs["addr"], "pc": f.regs["pc"], "x29": f.regs["x29"],
                              "lr": f.regs["x30"], "sp": f.regs["sp"]}
        elif nxt is not None and nxt.kind == "lr":
            d["lr_frame"] = True     # interrupted before its record: the caller is in lr
        elif nxt is not None and f.fp:
            d["record"] = {"at": f.fp, "caller_fp": nxt.fp, "lr": nxt.pc}
            d["checks"] = _record_checks(f, nxt, ranges)
            c, txt = _call_check(nxt.pc, f.pc, f.kind == "exact")
            d["checks"].append(c)
            d["call"] = txt
        out.append(d)
    return out


def explain_unwind(task, regs=None):
    """The frame-record walk of TASK from REGS (a CPU's) or its cpu_context, each step
    with its checks; recovery past a broken record."""
    u = kstack.unwind_task(task, regs)
    ranges = u.ranges
    frames = _describe(u.frames, ranges, 0)
    out = {**task.brief(), "source": u.start.get("source"), "frames": frames,
           "stop": u.stop, "broken": False, "recovery": None}
    if _clean_stop(u.stop) or not u.frames:
        return out
    last = u.frames[-1]
    out["broken"] = True
    try:
        raw = read_bytes(last.fp, 16) if last.fp else b""
    except gdb.MemoryError:
        raw = b""
    if raw:
        frames[-1]["record"] = {"at": last.fp, "caller_fp": _u64(raw), "lr": _u64(raw, 8),
                                "broken": True}
    caller, steps, why, rest = _recover(last, task, ranges)
    out["recovery"] = {"steps": steps, "failed": why}
    if why:
        return out
    cf, note = caller
    d = _frame_json(cf, True, note)
    d["level"] = len(frames)
    if not cf.pc:
        d.update(pc=None, function=None, offset=None, label="??")
    else:
        _describe_prologue(d, cf)
    if rest.frames:
        nxt = rest.frames[0]
        d["record"] = {"at": cf.fp, "caller_fp": nxt.fp, "lr": nxt.pc, "found_by_scan": True}
        d["checks"] = _record_checks(cf, nxt, ranges)
        c, d["call"] = _call_check(nxt.pc, cf.pc or nxt.pc, False)
        d["checks"].append(c)
    frames.append(d)
    frames.extend(_describe(rest.frames, ranges, len(frames), "its return address is the lr of the "
                                                                "record found by the stack scan"))
    out["stop"] = rest.stop
    return out


def _clean_stop(stop):
    return stop.startswith("end of stack") or "user space" in stop
