"""Where and why the kernel stopped: the crash context used by ``kd analyze``.

Recognised stop points (arm64, 5.10–6.12): ``die(const char *str, struct
pt_regs *regs, long err)`` (oops; the faulting registers are ``regs``),
``panic(const char *fmt, ...)`` / ``vpanic`` (6.12 routes panic through
vpanic), ``crash_kexec(struct pt_regs *regs)`` / ``__crash_kexec``. The
frames of the selected thread are searched for the newest of these.
"""

import re

import gdb

from .memory import read_cstring, reading_dump
from .symbolize import lookup
from .stack import entry_text_range
from ..textutil import escape
from ..arm64.regs import PT_REGS_NAMES

__all__ = ["find_trap", "frames", "format_panic"]

TRAPS = ("die", "panic", "vpanic", "crash_kexec", "__crash_kexec", "nmi_panic")


def symbolize(pc: int) -> str:
    """NAME+OFF as crash and the oops print it (see symbolize.lookup), else the hex pc."""
    sym = lookup(pc, want_line=False)
    return f"{sym.name}+{sym.offset:#x}" if sym.name and not sym.name.startswith("[") else f"{pc:#x}"


def _frame_record_frames(limit):
    """The selected thread's frames from kd's frame-record unwinder (strips pointer-auth
    signatures from return addresses, which gdb 13 on QEMU 7.2 cannot do)."""
    from . import tasks, stack
    task, regs = tasks.thread_task()
    return _frames_json(stack.unwind_task(task, regs, max_frames=limit), "frame records")


def _frames_json(u, unwinder=None):
    """The report's frames of the walk ``u``: the same frames ``kd bt`` shows, an inlined
    call chain included (gdb's inline frames, or for frame-record unwinding the DWARF
    blocks at the pc, innermost first), each with ``inlined``."""
    rng = entry_text_range()
    out = []
    for f in u.frames:
        s = f.sym(want_line=True)
        gname = f.gdb_name(s)
        name = gname or s.name or hex(f.pc)
        d = {"level": f.level, "pc": f.pc, "function": escape(name), "file": s.file, "line": s.line,
             "exception": bool(rng and rng[0] <= f.pc < rng[1]) and not f.inline_of,
             "inlined": bool(gname and f.inline_of),
             "unwinder": unwinder or ("gdb" if u.start.get("source") == "gdb frames"
                                      else "frame records")}
        if s.module:
            d["module"] = s.module
            d["debuginfo"] = s.debuginfo
        if not gname:
            for fn in s.inlined:
                out.append(dict(d, function=escape(fn), inlined=True, exception=False))
        out.append(d)
    for i, d in enumerate(out):
        d["level"] = i
    return out


def _looks_signed(pc: int) -> bool:
    """A kernel return address still carrying a pointer-auth signature."""
    from .vabits import strip_pac
    return strip_pac(pc) != pc


def frames(limit=64):
    """The selected thread's backtrace, from the same walk as ``kd bt``
    (stack.best_unwind)."""
    return backtrace(limit)[0]


def backtrace(limit=64):
    """(frames, cut): the selected thread's backtrace (:func:`frames`) and, when the walk
    ended at memory it could not read, its stop reason (else None). A thread whose task
    cannot be told (its task_struct unreadable) gets gdb's own frames."""
    from . import tasks, stack
    from .access import user_thread
    try:
        task, regs = tasks.thread_task()
    except gdb.GdbError:
        u = stack.gdb_frames(user_thread(), None, max_frames=limit)
        if u is None:
            return [], None
    else:
        u = stack.best_unwind(task, regs, user_thread())
    u.frames = u.frames[:limit]
    return _frames_json(u), (u.stop if u.cut_short else None)


def _gdb_pcs(limit):
    """The pcs of gdb's newest LIMIT frames of the selected thread."""
    out = []
    try:
        f = gdb.newest_frame()
        while f is not None and len(out) < limit:
            out.append(f.pc() & 0xFFFFFFFFFFFFFFFF)
            f = f.older()
    except gdb.error:
        pass
    return out


def _int_arg(frame, name, reg):
    M = 0xFFFFFFFFFFFFFFFF
    try:
        v = frame.read_var(name)
        if not v.is_optimized_out:
            return int(v) & M
    except (ValueError, gdb.error, RuntimeError):
        pass
    try:
        return int(frame.read_register(reg)) & M
    except (ValueError, gdb.error):
        return None


def _fault_addr_arg(f):
    """``addr`` of die_kernel_fault (arch/arm64/mm/fault.c, v4.18+) in the frames above the
    die frame ``f``, when DWARF has it; else None."""
    try:
        g = f.older()
        for _ in range(3):
            if g is None:
                return None
            if (g.name() or "").split(".")[0] == "die_kernel_fault":
                v = g.read_var("addr")
                return None if v.is_optimized_out else int(v) & 0xFFFFFFFFFFFFFFFF
            g = g.older()
    except (ValueError, gdb.error, RuntimeError):
        pass
    return None


def _trap_args(frame, args, first_usable):
    """The trap function's arguments ``args`` [(name, register)]: DWARF's values, or the
    registers they came in when DWARF's first one is not ``first_usable``. A breakpoint on a
    function built with a patchable ftrace entry (``mov x9, x30; nop``: the course's 5.0)
    stops before the prologue stored the arguments where DWARF's frame-base locations say
    they are; the registers still hold them all."""
    vals = [_int_arg(frame, n, r) for n, r in args]
    if vals[0] is not None and first_usable(vals[0]):
        return vals
    try:
        regs = [int(frame.read_register(r)) & 0xFFFFFFFFFFFFFFFF for _, r in args]
    except (ValueError, gdb.error):
        return vals
    return regs if first_usable(regs[0]) else vals


def _readable_string(addr):
    """A message format at ``addr``: readable text (an optional KERN_ level "\\001N", then
    printable characters or whitespace up to the NUL), not any readable bytes — a stale
    DWARF location can point at code."""
    try:
        b = read_cstring(addr, 64)
    except gdb.MemoryError:
        return False
    if b[:1] == b"\x01":
        b = b[2:]
    return bool(b) and all(32 <= c < 127 or c in (9, 10) for c in b)


def format_panic(fmt: bytes, args) -> str:
    """Render a printk-style format with the register arguments (%s, %d, %x, %p…)."""
    out, ai = [], 0
    for m in re.finditer(rb"%([-+ #0]*\d*(?:\.\d+)?)(hh|h|ll|l|z|t)?([sdiuxXpc%])|[^%]+|%", fmt):
        tok = m.group(0)
        if not tok.startswith(b"%") or m.group(3) is None:
            out.append(tok.decode("utf-8", "replace"))
            continue
        conv = m.group(3)
        if conv == b"%":
            out.append("%")
            continue
        v = args[ai] if ai < len(args) else None
        ai += 1
        if v is None:
            out.append("?")
        elif conv == b"s":
            try:
                out.append(read_cstring(v, 200).decode("utf-8", "replace"))
            except gdb.MemoryError:
                out.append(f"<{v:#x}>")
        elif conv in (b"d", b"i"):
            out.append(str(v - (1 << 64) if v >> 63 else v))
        elif conv == b"u":
            out.append(str(v))
        elif conv in (b"x", b"X"):
            out.append(f"{v:x}")
        elif conv == b"p":
            out.append(f"{v:016x}")
        elif conv == b"c":
            out.append(chr(v & 0xff))
    return "".join(out)


def _exception_regs(regs_addr):
    """The registers of the struct pt_regs at REGS_ADDR (x0..x30, sp, pc, pstate)."""
    from .stack import read_pt_regs
    full = read_pt_regs(regs_addr)
    r = {n: full[n] for n in PT_REGS_NAMES}
    return {"pt_regs": regs_addr, "registers": r, "fault_pc": r["pc"], "fault_function": symbolize(r["pc"])}


_OOPS_RE = re.compile(r"(Unable to handle kernel .*|Internal error: .*|kernel BUG at .*|"
                      r"Kernel panic - not syncing: .*)")


def is_postmortem() -> bool:
    """True on a dump (kd reading it in-process under gdbkd core, gdbkd's stub, or a core
    file from gdbkd convert), False live."""
    if reading_dump():
        return True
    try:
        conn = gdb.selected_inferior().connection
    except AttributeError:
        return False
    if conn is None:
        return False
    if conn.type == "core":
        return True
    return "gdbkd.stub" in (getattr(conn, "details", "") or "")


def _panic_line_from_log():
    """The reason of the last "Kernel panic - not syncing: REASON" line of the log, or None."""
    for line in reversed(_log_lines()):
        if line.startswith("Kernel panic - not syncing: "):
            return line[len("Kernel panic - not syncing: "):].strip()
    return None


def _log_lines(last=400):
    """The lines of the last ``last`` log records, oldest first ([] without a readable log)."""
    try:
        from . import printk
        recs = printk.records()
    except (gdb.error, ValueError):     # no log buffer, or one it cannot decode
        return []
    return [l for r in recs[-last:] for l in r.text.decode("utf-8", "replace").splitlines()]


def trap_from_log(lines=None):
    """The last oops/BUG/panic line of the kernel log (``lines``: :func:`_log_lines`, read
    here when not given), for dumps whose crashed thread starts at the faulting pc (kdump
    after an oops: crash_kexec got the oops' pt_regs)."""
    best = {}
    for line in _log_lines() if lines is None else lines:
        m = _OOPS_RE.search(line)
        if m and "---[ end " in line:       # the closing marker repeats the panic line
            continue
        if m:
            rank = 0 if m.group(1).startswith(("Unable", "kernel BUG")) else \
                1 if m.group(1).startswith("Internal") else 2
            best[rank] = m.group(1)
    msg = best[min(best)] if best else None
    return msg


_OOPS_PC_RE = re.compile(r"^pc : (\S+?)(?:/0x[0-9a-f]+)?(?: \[[^\]]+\])?\s*$")
_ESR_RE = re.compile(r"\bESR = (0x[0-9a-f]+)")
_VA_RE = re.compile(r"at virtual address ([0-9a-f]{8,16})\b")


def _oops_saved_registers(pc: int, msg: str, lines) -> dict:
    """The oops's exception registers on a dump whose crashed thread starts at the fault.

    An oops reaches ``crash_kexec(regs)`` from ``die()``, and ``crash_setup_regs()``
    copies those pt_regs into the crashing CPU's saved registers (kernel/kexec_core.c,
    arch/arm64/include/asm/kexec.h; unchanged v4.x-6.12): the dump's registers of that
    thread *are* the oops's. Taken as such only when the oops's own ``pc : SYM+OFF/SIZE``
    line names this pc; ESR from its ``ESR = `` line, the address from its message. {}
    when the log (``lines``, :func:`_log_lines`) does not prove it."""
    at = next((i for i in range(len(lines) - 1, -1, -1) if _OOPS_PC_RE.match(lines[i])), None)
    if at is None or _OOPS_PC_RE.match(lines[at]).group(1) != symbolize(pc):
        return {}
    f = gdb.newest_frame()
    regs = {}
    for n in PT_REGS_NAMES:
        v = f.read_register("cpsr" if n == "pstate" else n)
        regs[n] = int(v) & 0xFFFFFFFFFFFFFFFF
    out = {"registers": regs, "registers_from": f"the crashed CPU's saved registers (die() "
           f"passed the oops's pt_regs to crash_kexec; the oops printed pc : {symbolize(pc)})"}
    esr = next((_ESR_RE.search(l) for l in reversed(lines[:at]) if _ESR_RE.search(l)), None)
    if esr:
        out["esr"] = int(esr.group(1), 16)
    va = _VA_RE.search(msg or "")
    if va:
        out["far"] = int(va.group(1), 16)
        out["far_from"] = "the oops's message"
    return out


def _trap_from_frame_records():
    """The trap function among the frame-record unwinder's frames, when gdb's own
    unwinding stopped at a pointer-auth-signed return address (gdb 13 cannot strip
    kernel PACs); the message then comes from the kernel log."""
    if not any(_looks_signed(pc) for pc in _gdb_pcs(4)):
        return None
    try:
        recs = _frame_record_frames(24)
    except gdb.error:                   # no task on this thread, or its stack unreadable
        return None
    for fr in recs:
        if fr["function"] in TRAPS:
            t = {"trap": fr["function"], "frame": fr["level"], "unwinder": "frame records"}
            msg = trap_from_log()
            if msg:
                t["message"] = escape(msg)
            return t
    return None


def _trap_below_exception():
    """The trap function further down kd's frame walk (the report's BACKTRACE, which
    crosses exception entries and the IRQ stack) when gdb's frames do not reach it: the
    crashed CPU took an interrupt inside the trap (panic's delay loop takes timer
    interrupts), so its registers are the handler's, or the vectors' before pt_regs were
    saved. The message then comes from the kernel log."""
    try:
        bt, _ = backtrace(64)
    except gdb.error:
        return None
    for fr in bt:
        if fr["function"] in TRAPS and fr["level"] > 0 and \
                any(g["exception"] for g in bt[:bt.index(fr)]):
            t = {"trap": fr["function"], "frame": fr["level"], "unwinder": fr["unwinder"],
                 "below_exception": True}
            msg = trap_from_log()
            if msg:       # panic's own words, as the trap frame's fmt gives them elsewhere
                t["message"] = escape(msg.removeprefix("Kernel panic - not syncing: ")
                                      if fr["function"] in ("panic", "vpanic") else msg)
            return t
    return None


def find_trap():
    """Return a dict describing the trap the selected thread is stopped in, or None."""
    try:
        f = gdb.newest_frame()
    except gdb.error:
        return None
    depth = 0
    kexec = None            # (frame, name) of crash_kexec: panic() or die() further out called it
    while f is not None and depth < 12:
        name = f.name() or symbolize(f.pc()).split("+")[0]
        if name in TRAPS and name not in ("crash_kexec", "__crash_kexec"):
            break
        if name in TRAPS and kexec is None:
            kexec = (f, name)
        try:
            f = f.older()
        except gdb.error:
            f = None
        depth += 1
    else:
        f = None
    if f is None and kexec is not None:
        f, name = kexec
    if f is None:
        signed = _trap_from_frame_records()
        if signed is not None:
            return signed
        below = _trap_below_exception()
        if below is not None:
            return below
        lines = _log_lines() if is_postmortem() else []
        msg = trap_from_log(lines) if lines else None
        if msg is None:
            return None
        # no trap frame but the log has the oops: the selected thread starts at the fault
        pc = gdb.newest_frame().pc() & 0xFFFFFFFFFFFFFFFF
        kind = "panic" if msg.startswith("Kernel panic") else "die"
        t = {"trap": kind, "frame": 0, "message": escape(msg), "from_log": True,
             "fault_pc": pc, "fault_function": symbolize(pc)}
        if kind == "die":
            t.update(_oops_saved_registers(pc, msg, lines))
        return t
    t = {"trap": name, "frame": f.level()}
    if name == "die":
        s, regs, err = _trap_args(f, [("str", "x0"), ("regs", "x1"), ("err", "x2")], _readable_string)
        t["message"] = read_cstring(s, 120).decode("utf-8", "replace") if s else ""
        if err is not None:
            t["esr"] = err & 0xFFFFFFFF
        if regs:
            t.update(_exception_regs(regs))
    elif name in ("panic", "vpanic", "nmi_panic"):
        regname = "x1" if name == "nmi_panic" else "x0"
        fmt, = _trap_args(f, [("fmt", regname)], _readable_string)
        args = []
        if name == "panic" and f.level() == 0:
            args = [int(f.read_register(f"x{i}")) & 0xFFFFFFFFFFFFFFFF for i in range(1, 8)]
        try:
            raw = read_cstring(fmt, 200) if fmt else b""
        except gdb.MemoryError:
            raw = b""
        t["message"] = format_panic(raw, args).strip() if args else raw.decode("utf-8", "replace").strip()
        if not t["message"]:
            # panic() further out than frame 0 (gdbkd attached after it: the CPU is in its
            # final loop) and DWARF no longer has fmt: the line panic() printed
            t["message"] = _panic_line_from_log() or ""
    else:
        regs = _int_arg(f, "regs", "x0")
        if regs:
            t.update(_exception_regs(regs))
    from .sysregs import sysreg
    for reg, key in (("FAR_EL1", "far"), ("ESR_EL1", "esr_el1")):
        v = sysreg(reg)
        if v is not None:
            t[key] = v
    if name == "die":
        # the address the kernel itself reports (die_kernel_fault's addr, from DWARF only:
        # an outer frame's x1 is not its argument) over FAR_EL1, which a stop under load
        # once gave as another fault's (a user stack address)
        addr = _fault_addr_arg(f)
        if addr is not None:
            if t.get("far") is not None and t["far"] != addr:
                t["far_el1"] = t["far"]
            t["far"] = addr
    t["message"] = escape(t.get("message", ""))
    return t
