"""A gdb frame unwinder for arm64 kernel exception entries.

gdb's own unwinders stop at the el1 exception vectors' C-less entry code
(``el1h_64_sync``: "previous frame identical to this frame"). Every el1
exception entry saves a ``struct pt_regs`` at the stack pointer before calling
its C handler, so for a frame whose pc lies in ``.entry.text``
(``__entry_text_start`` … ``__entry_text_end``, the section holding all of
arch/arm64/kernel/entry.S's vector handlers) the caller's registers are read
from the pt_regs at that frame's SP. That continues the backtrace into the
interrupted (faulting) function.

The pt_regs layout (``user_pt_regs`` first: x0..x30, sp, pc, pstate) and the
exception level of its pstate are :mod:`gdbkd.arm64.regs`'s. An exception not taken
from EL1 (from user space) ends the trace, as there is no kernel caller.
"""

import gdb
from gdb.unwinder import Unwinder, register_unwinder

from .memory import read_bytes
from .stack import entry_text_range, forget_entry_text, exception_regs
from ..arm64.regs import USER_PT_REGS, PT_REGS_NAMES, CPSR, decode_pt_regs, exception_level

__all__ = ["register", "exact_pc_function", "is_exception_frame"]

_M = 0xFFFFFFFFFFFFFFFF

_irq_switch = None


def _reset(_event=None):
    global _irq_switch
    _irq_switch = None
    forget_entry_text()


def irq_stack_switch():
    """Address of ``call_on_irq_stack`` (arm64, v5.14+: commit f8c7d8b0fa0c "arm64: entry:
    move irq stack switching into call_on_irq_stack" era) or None. It pushes a frame
    record {x29, x30} on the task stack, points x29 at it, switches sp to the IRQ
    stack and calls the handler; its DWARF-less body stops gdb's unwinder."""
    global _irq_switch
    if _irq_switch is None:
        from .symbols import vmlinux_symbol_address
        try:
            _irq_switch = vmlinux_symbol_address("call_on_irq_stack") or 0
        except gdb.error:
            _irq_switch = 0
    return _irq_switch or None


class _FrameId:
    # gdb 13 has no gdb.unwinder.FrameId: any object whose .sp and .pc are
    # gdb.Value (plain ints are rejected) works.
    def __init__(self, sp, pc):
        self.sp = sp
        self.pc = pc


class ExceptionFrameUnwinder(Unwinder):
    def __init__(self):
        super().__init__("gdbkd-arm64-el1-exception")

    def _from_irq_stack(self, pending_frame):
        """A frame in call_on_irq_stack after its call: the caller's frame record is at x29
        (on the task stack): caller fp = [x29], pc = [x29 + 8], sp = x29 + 16."""
        return self._from_frame_record(pending_frame)

    def _from_frame_record(self, pending_frame, skip_own_return=False):
        """The caller from the frame record at x29: fp = [x29], pc = [x29 + 8] (its
        pointer-auth signature stripped), sp = x29 + 16; None when that is no kernel text.
        ``skip_own_return``: when that record returns to this very frame's pc, it is its
        callee's (gdb handed down the callee's x29): take the next one out."""
        from .vabits import strip_pac
        from .symbolize import is_text
        fp = int(pending_frame.read_register("x29")) & _M
        try:
            raw = read_bytes(fp, 16)
            if skip_own_return and strip_pac(int.from_bytes(raw[8:], "little")) == \
                    int(pending_frame.read_register("pc")) & _M:
                fp = int.from_bytes(raw[:8], "little")
                raw = read_bytes(fp, 16)
        except gdb.MemoryError:
            return None
        prev_fp = int.from_bytes(raw[:8], "little")
        lr = strip_pac(int.from_bytes(raw[8:], "little"))
        if lr >> 48 != 0xFFFF or not is_text(lr):
            return None
        u64 = gdb.lookup_type("unsigned long")
        info = pending_frame.create_unwind_info(
            _FrameId(pending_frame.read_register("sp"), pending_frame.read_register("pc")))
        info.add_saved_register("x29", gdb.Value(prev_fp).cast(u64))
        info.add_saved_register("x30", gdb.Value(lr).cast(u64))
        # the caller's sp: right above the record for call_on_irq_stack (a 16-byte frame);
        # for a function's frame, not knowable from the record: its caller set x29 = sp
        # after pushing its own (arm64 gcc's prologue), so that is the best value there is
        sp = prev_fp if skip_own_return and prev_fp > fp else fp + 16
        info.add_saved_register("sp", gdb.Value(sp).cast(u64))
        info.add_saved_register("pc", gdb.Value(lr).cast(u64))
        return info

    def _module_frame(self, pending_frame, pc):
        """A frame in a module function whose frame record is set up: the caller from the
        record (caller fp = [x29], pc = [x29 + 8], sp = x29 + 16). Modules carry no CFI
        gdb reads, and its prologue guess at an interrupted module function (an inlined
        spin_lock calling the slow path) made the function its own caller."""
        from .symbolize import lookup
        from .disasm import frame_record_ready
        s = lookup(pc - 4, want_line=False)         # a return address: the call before it
        if s.start is None or frame_record_ready(s.start, pc) is not True:
            return None
        return self._from_frame_record(pending_frame, skip_own_return=True)

    def __call__(self, pending_frame):
        try:
            if pending_frame.level() == 0:
                return None
            rng = entry_text_range()
            if not rng:
                return None
            pc = int(pending_frame.read_register("pc")) & _M
            irq = irq_stack_switch()
            if irq and irq < pc < irq + 0x80:
                return self._from_irq_stack(pending_frame)
            if not rng[0] <= pc < rng[1]:
                from .symbolize import text_ranges
                module = any(lo <= pc < hi and what.startswith("module ") for lo, hi, what in text_ranges())
                return self._module_frame(pending_frame, pc) if module else None
            sp = int(pending_frame.read_register("sp")) & _M
            fp = int(pending_frame.read_register("x29")) & _M
            # the frame-record walk's own rule (kernel/stack.py exception_regs): the pt_regs
            # whose embedded frame record x29 points at — 5.x's el1_irq runs its handler on
            # the IRQ stack, so its sp is not the pt_regs there — else the pt_regs at sp
            regs = exception_regs(fp, sp, strict=True)
            if regs is None:
                regs = decode_pt_regs(read_bytes(sp, USER_PT_REGS.size))
        except (gdb.error, gdb.MemoryError, ValueError, OverflowError):
            return None
        if exception_level(regs["pstate"]) != 1:       # not taken from EL1: stop here
            return None
        u64 = gdb.lookup_type("unsigned long")
        if regs["pc"] == 0:
            return None
        info = pending_frame.create_unwind_info(
            _FrameId(pending_frame.read_register("sp"), pending_frame.read_register("pc")))
        for name in PT_REGS_NAMES[:CPSR]:         # x0..x30, sp, pc
            info.add_saved_register(name, gdb.Value(regs[name]).cast(u64))
        return info


_registered = False


def register():
    global _registered
    if _registered:
        return
    gdb.events.new_objfile.connect(_reset)
    try:
        gdb.events.clear_objfiles.connect(_reset)
    except AttributeError:
        pass
    register_unwinder(None, ExceptionFrameUnwinder(), replace=True)
    _register_filter()
    _registered = True


def exact_pc_function(pc: int):
    """(name, symtab_line) for a pc that is an exact instruction address, not a return address."""
    name = None
    try:
        b = gdb.block_for_pc(pc)
        while b is not None and b.function is None:
            b = b.superblock
        if b is not None:
            name = b.function.name
    except RuntimeError:
        pass
    return name, gdb.find_pc_line(pc)


def is_exception_frame(frame) -> bool:
    rng = entry_text_range()
    try:
        return bool(rng) and rng[0] <= (frame.pc() & _M) < rng[1]
    except gdb.error:
        return False


try:
    from gdb.FrameDecorator import FrameDecorator

    class _Arg:
        """A frame argument for gdb's frame-filter printer. gdb 13 aborts the whole
        frame line when reading an argument fails on that path ("Python Exception
        <class 'gdb.MemoryError'>", e.g. vpanic's va_list passed by reference), where
        its plain printer shows ``<error: ...>``: read it here and show the same."""

        def __init__(self, frame, sym):
            self._frame, self._sym = frame, sym

        def symbol(self):
            return self._sym

        def value(self):
            try:
                v = self._frame.read_var(self._sym)
                v.fetch_lazy()
                return None          # readable: gdb reads and prints it as usual
            except (gdb.error, gdb.MemoryError, ValueError, RuntimeError) as e:
                return f"<error: {e}>"

    class _Frame(FrameDecorator):
        """Every frame gdb prints while the filter is on: safe arguments; and the frame
        an exception interrupted named by its exact pc (the faulting instruction
        itself; gdb would look up pc-1, as for a return address)."""

        def __init__(self, fobj, interrupted):
            super().__init__(fobj)
            f = fobj.inferior_frame()
            self._name, self._sal = exact_pc_function(f.pc() & _M) if interrupted else (None, None)

        def function(self):
            return self._name or super().function()

        def filename(self):
            return self._sal.symtab.filename if self._sal and self._sal.symtab else super().filename()

        def line(self):
            return self._sal.line if self._sal and self._sal.line else super().line()

        def frame_args(self):
            args = super().frame_args()
            if args is None:
                return None
            f = self.inferior_frame()
            out = []
            for a in args:
                sym = a.symbol()
                out.append(_Arg(f, sym) if isinstance(sym, gdb.Symbol) else a)
            return out

    class _ExceptionFrameFilter:
        def __init__(self):
            self.name = "gdbkd-exception-frames"
            self.priority = 100
            self.enabled = True

        def filter(self, frame_iter):
            prev_exc = False
            drop = 0
            for fd in frame_iter:
                f = fd.inferior_frame()
                if prev_exc and not drop:
                    # gdb found the interrupted frame's inline chain at pc - 1, as for a
                    # return address: keep only the calls inlined at the exact pc, as kd bt
                    drop = max(0, _gdb_inline_depth(f) - _inline_depth(f.pc() & _M))
                if prev_exc:
                    if drop:
                        drop -= 1           # the next frame is still the interrupted one
                        continue
                yield _Frame(fd, prev_exc)
                prev_exc = is_exception_frame(f)

    def _gdb_inline_depth(frame) -> int:
        """How many of gdb's frames from FRAME outwards are inlined calls at its pc."""
        n = 0
        try:
            while frame is not None and frame.type() == gdb.INLINE_FRAME:
                n += 1
                frame = frame.older()
        except gdb.error:
            pass
        return n

    def _inline_depth(pc: int) -> int:
        """How many calls are inlined at exactly PC (its blocks' functions, less the outer one)."""
        try:
            b = gdb.block_for_pc(pc)
        except RuntimeError:
            return 0
        n = 0
        while b is not None:
            if b.function is not None:
                n += 1
            b = b.superblock
        return max(0, n - 1)

    _filter = _ExceptionFrameFilter()
except ImportError:  # pragma: no cover - very old gdb
    _filter = None


def _register_filter():
    if _filter is not None:
        gdb.frame_filters[_filter.name] = _filter
