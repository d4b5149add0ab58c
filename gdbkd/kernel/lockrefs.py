"""Which locks a task's live call chain took (and has not released), by reading its code.

For each frame of a task's stack, the function's instructions from its start up
to the frame's pc are decoded (capstone) with a small constant tracker for
``adrp``/``add``/``mov`` (how gcc materialises the address of a global lock on
arm64). A ``bl`` to a lock-acquiring function (``down``, ``down_read``,
``mutex_lock``, ``_raw_spin_lock``, …) with ``x0`` known is an acquisition at
that instruction; a later ``bl`` to the matching release (``up``,
``up_read``, ``mutex_unlock``, …) with the same ``x0`` cancels it. This finds
holders of locks that record no owner (semaphores, reader-held rwsems,
spinlocks without DEBUG_SPINLOCK) for globally addressed locks, and says where
each lock was taken. Locks reached through pointers are not resolved here.
"""

import gdb

from .symbolize import lookup
from .types import read_bytes

__all__ = ["acquisitions", "ACQUIRE", "RELEASE"]

ACQUIRE = {
    "down": "semaphore", "down_interruptible": "semaphore", "down_killable": "semaphore",
    "down_timeout": "semaphore",
    "down_read": "rwsem", "down_read_killable": "rwsem", "down_read_interruptible": "rwsem",
    "down_write": "rwsem", "down_write_killable": "rwsem",
    "mutex_lock": "mutex", "mutex_lock_interruptible": "mutex", "mutex_lock_killable": "mutex",
    "mutex_lock_nested": "mutex",
    "_raw_spin_lock": "spinlock", "_raw_spin_lock_irq": "spinlock", "_raw_spin_lock_irqsave": "spinlock",
    "_raw_spin_lock_bh": "spinlock", "_raw_read_lock": "rwlock", "_raw_write_lock": "rwlock",
}
RELEASE = {
    "up": "semaphore", "up_read": "rwsem", "up_write": "rwsem", "mutex_unlock": "mutex",
    "_raw_spin_unlock": "spinlock", "_raw_spin_unlock_irq": "spinlock",
    "_raw_spin_unlock_irqrestore": "spinlock", "_raw_spin_unlock_bh": "spinlock",
    "_raw_read_unlock": "rwlock", "_raw_write_unlock": "rwlock",
}
_code_cache = {}
_M = 0xFFFFFFFFFFFFFFFF


def _md():
    from ..arm64.insn import engine
    return engine(detail=True)


def _plt_target(addr):
    """Where a module PLT veneer (arch/arm64/kernel/module-plts.c: adrp x16; add x16;
    br x16) jumps, or None."""
    try:
        code = read_bytes(addr, 12)
    except gdb.MemoryError:
        return None
    ins = list(_md().disasm(code, addr))
    if len(ins) == 3 and ins[0].mnemonic == "adrp" and ins[1].mnemonic == "add" and ins[2].mnemonic == "br":
        return (ins[0].operands[1].imm + ins[1].operands[2].imm) & _M
    return None


def _scan_function(start, end):
    """[(insn_addr, callee_name, x0_value_or_None)] for every bl in [start, end)."""
    key = (start, end)
    if key in _code_cache:
        return _code_cache[key]
    import capstone.arm64 as A
    try:
        code = read_bytes(start, end - start)
    except gdb.MemoryError:
        return []
    md = _md()
    regs = {}
    calls = []
    for ins in md.disasm(code, start):
        ops = ins.operands
        m = ins.mnemonic
        try:
            if m == "adrp" and len(ops) == 2:
                regs[ops[0].reg] = ops[1].imm & _M
            elif m == "add" and len(ops) == 3 and ops[2].type == A.ARM64_OP_IMM and ops[1].reg in regs:
                regs[ops[0].reg] = (regs[ops[1].reg] + ops[2].imm) & _M
            elif m == "mov" and len(ops) == 2 and ops[1].type == A.ARM64_OP_REG and ops[1].reg in regs:
                regs[ops[0].reg] = regs[ops[1].reg]
            elif m in ("bl", "blr"):
                x0 = regs.get(A.ARM64_REG_X0)
                if m == "bl":
                    calls.append((ins.address, ops[0].imm & _M, x0))
                for r in list(regs):     # caller-saved registers die across a call
                    if A.ARM64_REG_X0 <= r <= A.ARM64_REG_X18:
                        del regs[r]
            elif ops and ops[0].type == A.ARM64_OP_REG and m not in ("str", "stp", "cmp", "tst", "cbz",
                                                                        "cbnz", "tbz", "tbnz", "stur"):
                regs.pop(ops[0].reg, None)
        except (IndexError, AttributeError):
            continue
    out = []
    for addr, target, x0 in calls:
        name = lookup(target, want_line=False).name or ""
        if not name or name.startswith("["):
            real = _plt_target(target)
            if real is not None:
                name = lookup(real, want_line=False).name or ""
        name = name.split(".")[0]
        out.append((addr, name, x0))
    _code_cache[key] = out
    return out


def acquisitions(frames):
    """Locks the live frames took and still hold: [{lock, kind, func, at}] (innermost last)."""
    held = []
    for f in frames:
        pc = f.lookup_pc() if hasattr(f, "lookup_pc") else f.pc
        s = lookup(pc, want_line=False)
        if s.start is None:
            continue
        for addr, callee, x0 in _scan_function(s.start, pc + 1):
            if x0 is None:
                continue
            if callee in ACQUIRE:
                held.append({"lock": x0, "kind": ACQUIRE[callee], "func": callee,
                             "at": lookup(addr, want_line=False).label(), "pc": addr})
            elif callee in RELEASE:
                for h in reversed(held):
                    if h["lock"] == x0:
                        held.remove(h)
                        break
    return held
