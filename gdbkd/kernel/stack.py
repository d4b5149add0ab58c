"""arm64 kernel stack unwinding from guest memory (frame records + pt_regs).

Pure memory reading through gdb, so it works for any task, live or from a
dump, whether or not gdb has a thread for it:

* A sleeping task starts from ``task->thread.cpu_context`` (``x19..x28, fp,
  sp, pc`` saved by ``cpu_switch_to``; layout unchanged 3.7 – 6.12): frame 0 is
  ``pc`` (a return address in ``__switch_to``), its frame record is at ``fp``.
* A task running on a gdb thread starts from that thread's ``pc/sp/x29/x30``.
* Frame records (AAPCS64, kernels built with CONFIG_FRAME_POINTER, mandatory on
  arm64): ``[fp] = caller's fp``, ``[fp + 8] = return address``. Return
  addresses may carry pointer-authentication bits (ARM64_PTR_AUTH_KERNEL, 5.7+):
  bits above the kernel VA width are forced back to ones.
* Exception entries: every el1/el0 vector saves a ``struct pt_regs`` at its SP
  and points x29 at ``pt_regs.stackframe`` before calling the C handler. Since
  4.14 (commit 732674980139, "arm64: unwind: reference pt_regs via embedded
  stack frame") that record is ``{x29, elr}`` of the interrupted context; since
  6.13 it is a metadata record ``{0, 0, type}`` (``FRAME_META_TYPE_FINAL`` = 1
  for entries from EL0, ``FRAME_META_TYPE_PT_REGS`` = 2 from EL1). Either way a
  frame whose pc lies in ``.entry.text`` has its pt_regs at
  ``fp - offsetof(struct pt_regs, stackframe)``; the walk continues from
  ``regs->pc`` / ``regs->regs[29]`` and, when the interrupted function had not
  yet set up its frame record (exception in a prologue or a leaf), from
  ``regs->regs[30]`` (lr) — decided by decoding the function's prologue.
* IRQ, overflow and SDEI stacks: ``call_on_irq_stack`` leaves a frame record on
  the task stack, so following fp crosses stacks by itself; each frame is
  tagged with the stack it lies on (per-CPU ``irq_stack_ptr``,
  ``overflow_stack``, ``sdei_stack_*_ptr``). Within one stack fp must grow.
"""

import struct

import gdb

from .memory import read_bytes, kernel
from .percpu import on_thread
from .symbolize import lookup, is_text
from .disasm import frame_record_ready
from ..model.stacks import stack_ranges, stack_of
from ..model.tasks import thread_size
from .vabits import strip_pac
from ..model.frames import pt_regs_layout, read_pt_regs as model_read_pt_regs
from ..model.reader import MemoryFault
from ..arm64.regs import (PC, CPSR, from_user, is_aarch32,
                          saved_pstate_plausible)

__all__ = ["Frame", "Unwind", "unwind", "unwind_task", "read_pt_regs", "pt_regs_valid",
           "scan_exception_frames", "text_words", "entry_text", "gdb_frames", "best_unwind",
           "CUT_SHORT", "entry_text_range", "forget_entry_text", "exception_regs"]

MASK64 = 0xFFFFFFFFFFFFFFFF
FRAME_META_TYPE_FINAL = 1
FRAME_META_TYPE_PT_REGS = 2
#: in a stop reason: the walk ended at memory it could not read (a corrupt or excluded
#: page of a dump, an unmapped stack), not at the end of the stack
CUT_SHORT = "backtrace cut short"


_range = None


def entry_text_range():
    """(start, end) of .entry.text, relocated; None if the symbols are unknown (kept until
    :func:`forget_entry_text`: the exception unwinder calls it when symbol files change)."""
    global _range
    if _range is None:
        from .symbols import vmlinux_symbol_address
        try:
            s = vmlinux_symbol_address("__entry_text_start")
            e = vmlinux_symbol_address("__entry_text_end")
            _range = (s, e) if s is not None and e is not None else (0, 0)
        except gdb.error:
            _range = (0, 0)
    return _range if _range[1] else None


def forget_entry_text():
    global _range
    _range = None


def entry_text():
    """(start, end) of .entry.text (one cache, shared with the exception unwinder)."""
    return entry_text_range() or (0, 0)


def in_entry_text(pc: int) -> bool:
    a, b = entry_text()
    return a <= pc < b


def read_pt_regs(addr: int) -> dict:
    """struct pt_regs at ``addr`` (:func:`gdbkd.model.frames.read_pt_regs`)."""
    from .memory import kernel
    try:
        return model_read_pt_regs(kernel(), addr)
    except MemoryFault as e:
        raise gdb.MemoryError(str(e))


def pt_regs_valid(regs: dict, strict=False) -> bool:
    """Plausible saved context: a known PSTATE mode; EL1 contexts have a kernel-text pc;
    ``strict`` also wants the embedded stackframe to match (4.14–6.12 ``{x29, pc}``,
    6.13+ metadata ``{0, 0, 1|2}``)."""
    ps = regs["pstate"]
    if not saved_pstate_plausible(ps):
        return False
    el1 = not from_user(ps)
    if el1:
        ok = is_text(strip_pac(regs["pc"]))
    else:                                # EL0 (AArch32 EL0: a compat task, any pc)
        ok = is_aarch32(ps) or not regs["pc"] >> 55 & 1
    if not ok or not strict:
        return ok
    sf = regs["stackframe"]
    if el1 and sf[0] == regs["x29"] and sf[1] == regs["pc"]:
        return True
    if sf[0] == 0 and sf[1] == 0:
        return sf[2] in (FRAME_META_TYPE_FINAL, FRAME_META_TYPE_PT_REGS) or not el1
    return False


def exception_regs(fp: int, sp=None, strict=False):
    """The pt_regs an exception-entry frame (pc in ``.entry.text``) saved, or None: the
    one whose embedded frame record ``fp`` (the frame's x29) points at — every entry since
    4.14 sets x29 = ``&regs->stackframe`` — else, given ``sp``, the one at the frame's sp.
    ``strict``: see :func:`pt_regs_valid`. The frame-record walk, kd bt over gdb's frames and
    the unwinder gdbkd gives gdb all take an exception frame's registers from here. (x29
    matters where sp does not hold them: 5.0–5.10's ``el1_irq`` calls its handler on the
    IRQ stack, keeping the task stack's sp, the pt_regs, only in x19.)"""
    off = pt_regs_layout(kernel())["stackframe"]
    for base in ((fp - off) if fp else None, sp):
        if not base:
            continue
        try:
            regs = read_pt_regs(base)
        except gdb.MemoryError:
            continue
        if pt_regs_valid(regs, strict=strict):
            return regs
    return None


class Frame:
    """One unwound frame.

    ``kind``: "exact" (pc where the CPU is/was: a gdb thread's pc or an exception's
    ``regs->pc``), "return" (a return address read from a frame record or
    cpu_context), "lr" (taken from the link register of an interrupted leaf/prologue).
    ``regs``: the pt_regs dict when this frame is an exception entry."""

    __slots__ = ("level", "pc", "fp", "sp", "kind", "stack", "regs", "lr", "inline_of", "name")

    def __init__(self, pc, fp, sp=None, kind="return", lr=None):
        self.level = 0
        self.pc = pc
        self.fp = fp
        self.sp = sp
        self.kind = kind
        self.stack = None
        self.regs = None
        self.lr = lr
        self.inline_of = None
        self.name = None

    def lookup_pc(self) -> int:
        """Address to symbolize: the call instruction for return addresses."""
        return self.pc - 4 if self.kind in ("return", "lr") else self.pc

    def sym(self, want_line=True):
        return lookup(self.lookup_pc(), want_line)

    def gdb_name(self, s):
        """gdb's name for this frame (an inlined function's, from DWARF) where it is the
        one to show, else None: a module frame without the module's DWARF is named by
        kallsyms (``s``: this frame's :meth:`sym`), not by gdb's minimal symbol."""
        if not self.name or (s.module and not (self.inline_of and s.debuginfo == "dwarf")):
            return None
        return self.name


class Unwind:
    def __init__(self, frames, stop, ranges, start):
        self.frames = frames
        self.stop = stop          # why the walk ended
        self.ranges = ranges
        self.start = start        # {"pc","fp","sp","lr","source"}

    @property
    def cut_short(self) -> bool:
        """The walk ended because memory could not be read (``stop`` says where and why)."""
        return CUT_SHORT in (self.stop or "")


def _record_returns_to(fp, ret) -> bool:
    """The frame record at ``fp`` already returns to ``ret`` (the interrupted code had
    pushed its record: lr adds no frame of its own)."""
    if not fp or fp & 7:
        return False
    try:
        return strip_pac(int.from_bytes(read_bytes(fp + 8, 8), "little")) == ret
    except gdb.MemoryError:
        return False


def _in_vectors(pc: int) -> bool:
    """``pc`` in the exception vector table (arch/arm64/kernel/entry.S ``vectors``, 2 KiB):
    an exception just taken, before kernel_entry saved pt_regs."""
    return lookup(pc, want_line=False).name == "vectors"


def unwind(pc, fp, sp=None, lr=None, kind="return", task=None, max_frames=256, elr=None) -> Unwind:
    """Walk from ``pc``/``fp`` (``elr``: the CPU's ELR_EL1, live, for a walk that starts in
    the exception entry before pt_regs were saved)."""
    ranges = stack_ranges(kernel(), task)
    frames = []
    cur = Frame(strip_pac(pc), fp, sp, kind, lr)
    seen = set()
    stop = "too many frames"
    while len(frames) < max_frames:
        cur.level = len(frames)
        cur.stack = stack_of(cur.fp, ranges) if cur.fp else (stack_of(cur.sp, ranges) if cur.sp else None)
        frames.append(cur)
        # exception entry: pt_regs below the embedded frame record (not yet in the vector
        # table itself, where nothing is saved and x29 is still the interrupted code's)
        if in_entry_text(cur.pc) and cur.fp and not (cur.kind == "exact" and _in_vectors(cur.pc)):
            regs = exception_regs(cur.fp)
            if regs is not None:
                cur.regs = regs
                if from_user(regs["pstate"]):
                    stop = "exception from user space (end of kernel stack)"
                    break
                cur = Frame(strip_pac(regs["pc"]), regs["x29"], regs["sp"], "exact", regs["x30"])
                continue
        # an exception just taken, pt_regs not saved yet (the vectors, kernel_entry): the
        # interrupted pc is only in ELR_EL1, fp and lr are still the interrupted code's
        if elr is not None and len(frames) == 1 and cur.kind == "exact" and in_entry_text(cur.pc):
            e = strip_pac(elr)
            elr = None
            if is_text(e) and not in_entry_text(e):
                cur = Frame(e, cur.fp, cur.sp, "exact", cur.lr)
                continue
        # interrupted prologue or leaf: its caller is only in lr
        if cur.kind == "exact" and cur.lr is not None:
            s = lookup(cur.pc, want_line=False)
            ready = frame_record_ready(s.start, cur.pc) if s.start is not None else True
            lr = strip_pac(cur.lr)
            if ready is not True and is_text(lr) and lr != cur.pc and not _record_returns_to(cur.fp, lr):
                cur = Frame(lr, cur.fp, None, "lr")
                continue
        if not cur.fp:
            stop = "end of stack"
            break
        if cur.fp & 7:
            stop = f"misaligned frame pointer {cur.fp:#x}"
            break
        if cur.fp in seen:
            stop = f"frame pointer loop at {cur.fp:#x}"
            break
        seen.add(cur.fp)
        try:
            raw = read_bytes(cur.fp, 16)
        except gdb.MemoryError as e:
            stop = f"{CUT_SHORT}: frame record at {cur.fp:#x}: {e}"
            break
        prev_fp = int.from_bytes(raw[:8], "little")
        ret = int.from_bytes(raw[8:], "little")
        if prev_fp == 0 and ret == 0:
            stop = "end of stack (final frame record)"
            break
        ret = strip_pac(ret)
        if not is_text(ret):
            stop = f"return address {ret:#x} at {cur.fp + 8:#x} is not kernel text"
            break
        if prev_fp:
            here, there = stack_of(cur.fp, ranges), stack_of(prev_fp, ranges)
            if here is not None and here == there and prev_fp <= cur.fp:
                stop = f"frame pointer goes backwards ({prev_fp:#x} <= {cur.fp:#x})"
                break
        cur = Frame(ret, prev_fp, cur.fp + 16, "return")
    return Unwind(frames, stop, ranges, {"pc": pc, "fp": fp, "sp": sp, "lr": lr})


def unwind_task(task, regs=None, max_frames=256) -> Unwind:
    """Unwind ``task`` from ``regs`` (a gdb thread's registers: pc, sp, fp, lr) if given,
    else from its saved ``cpu_context``."""
    if regs is not None:
        u = unwind(regs["pc"], regs.get("fp", 0), regs.get("sp"), regs.get("lr"), "exact",
                   task, max_frames, elr=regs.get("ELR_EL1"))
        u.start["source"] = "cpu registers"
        return u
    cc = task.cpu_context
    if not cc:
        raise gdb.GdbError("task_struct has no thread.cpu_context (not an arm64 kernel?)")
    u = unwind(cc["pc"], cc["fp"], cc["sp"], None, "return", task, max_frames)
    u.start["source"] = "thread.cpu_context"
    return u


def gdb_frames(thread, task, max_frames=256):
    """Frames of gdb's own unwinder (DWARF CFI, inline frames, the exception-frame
    unwinder) for the task running on ``thread``; returns an Unwind or None."""

    def walk(fr):
        out = []
        stop = "end of stack"
        while fr is not None and len(out) < max_frames:
            try:
                pc = int(fr.pc()) & MASK64
                fp = int(fr.read_register("x29")) & MASK64
                sp = int(fr.read_register("sp")) & MASK64
            except (gdb.error, ValueError):
                stop = "gdb cannot read this frame's registers"
                break
            f = Frame(pc, fp, sp, "exact" if not out else "return")
            if fr.type() == gdb.INLINE_FRAME:
                f.inline_of = True
            f.name = fr.name()
            f.level = len(out)
            out.append(f)
            try:
                nxt = fr.older()
            except gdb.MemoryError as e:
                stop = f"gdb: {e} ({CUT_SHORT}: unreadable memory)"
                break
            except gdb.error as e:
                stop = f"gdb: {e}"
                break
            if nxt is None:
                r = fr.unwind_stop_reason()
                if r == gdb.FRAME_UNWIND_MEMORY_ERROR:
                    stop = f"gdb: {gdb.frame_stop_reason_string(r)} ({CUT_SHORT}: unreadable memory)"
                elif r not in (gdb.FRAME_UNWIND_NO_REASON, gdb.FRAME_UNWIND_OUTERMOST):
                    stop = f"gdb: {gdb.frame_stop_reason_string(r)}"
                break
            fr = nxt
        return out, stop
    frames, stop = on_thread(thread, walk)
    if not frames:
        return None
    ranges = stack_ranges(kernel(), task)
    for f in frames:
        f.stack = stack_of(f.sp, ranges)
        if in_entry_text(f.pc) and not f.inline_of:
            # show the exception's saved registers like the frame-record walk does
            f.regs = exception_regs(f.fp, f.sp, strict=True)
    return Unwind(frames, stop, ranges, {"pc": frames[0].pc, "fp": frames[0].fp,
                                         "sp": frames[0].sp, "source": "gdb frames"})


def _repeats_a_frame(frames) -> bool:
    """gdb unwound a frame into itself: two outer (not inlined) frames in a row at one pc
    (its prologue guess in a module function interrupted in an inlined spin_lock)."""
    outer = [f.pc for f in frames if not f.inline_of]
    return any(a == b for a, b in zip(outer, outer[1:]))


def best_unwind(task, regs=None, thread=None, fp_only=False) -> Unwind:
    """The one frame walk of kd (``kd bt``, ``kd analyze``): gdb's own unwinder for a
    task on a gdb thread (DWARF CFI, inline frames), unless it stops short or leaves
    text where frame records do not — gdb has no unwind info for asm entry code or
    for a module whose .ko is not loaded, and then guesses from prologues —, else
    frame records from ``regs`` or the task's saved ``cpu_context``."""
    u = None
    if thread is not None and regs is not None and not fp_only:
        u = gdb_frames(thread, task)
        # ... or the newest frame is in the vector table (an interrupt just taken, e.g. in
        # panic's delay loop, pt_regs not saved yet), which gdb's prologue guess cannot leave
        if u is not None and (u.stop.startswith("gdb") or
                              any(not f.name or not is_text(f.pc) or _unnamed_module_frame(f)
                                  for f in u.frames) or
                              _in_vectors(u.frames[0].pc)):
            fp_u = unwind_task(task, regs)
            if len(fp_u.frames) >= len([f for f in u.frames if not f.inline_of]) or \
                    any(_unnamed_module_frame(f) for f in u.frames) or _repeats_a_frame(u.frames):
                u = fp_u
    if u is None:
        u = unwind_task(task, regs)
    return u


def _unnamed_module_frame(f) -> bool:
    """A frame gdb unwound through module code it has no DWARF for (its caller is a
    prologue-analysis guess)."""
    s = lookup(f.pc, want_line=False)
    return bool(s.module) and s.debuginfo != "dwarf" and not f.inline_of


def scan_exception_frames(task) -> list:
    """Every plausible pt_regs on the task's stack (crash's ``bt -e``): blocks whose
    embedded stackframe matches (see :func:`pt_regs_valid`), plus the user-mode
    registers at the top of the stack (``task_pt_regs``)."""
    if not task.stack:
        return []
    size = thread_size(kernel())
    lay = pt_regs_layout(kernel())
    data = read_bytes(task.stack, size)
    words = struct.unpack(f"<{size // 8}Q", data)
    out = []
    sf = lay["stackframe"] // 8
    last = (size - lay["size"]) // 8
    for i in range(last + 1):
        if not saved_pstate_plausible(words[i + CPSR]):
            continue
        x29, pc = words[i + 29], words[i + PC]
        s0, s1 = words[i + sf], words[i + sf + 1]
        top = i == last
        if not ((s0 == x29 and s1 == pc and pc) or (s0 == 0 and s1 == 0 and top)):
            continue
        regs = read_pt_regs(task.stack + 8 * i)
        if pt_regs_valid(regs, strict=not top) or (top and pt_regs_valid(regs)):
            out.append(regs)
    return out


def text_words(task, start: int = None) -> list:
    """[(stack address, value)] of every word on the task stack (from ``start``, default
    the saved sp) that points into kernel or module text (crash's ``bt -t``)."""
    if not task.stack:
        return []
    size = thread_size(kernel())
    lo = task.stack
    if start is not None and lo <= start < lo + size:
        lo = start & ~7
    data = read_bytes(lo, task.stack + size - lo)
    out = []
    for i in range(0, len(data) - 7, 8):
        v = int.from_bytes(data[i:i + 8], "little")
        if v >> 48 == 0xFFFF or (v >> 55) & 1:
            sv = strip_pac(v)
            if is_text(sv):
                out.append((lo + i, v))
    return out
