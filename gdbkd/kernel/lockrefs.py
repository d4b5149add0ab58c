"""Which locks a task's live call chain holds, and which spin lock a CPU spins on, read
from the code of its frames: the in-gdb half of :mod:`gdbkd.analysis.lockflow`.

For each frame, the whole function (ELF/kallsyms start, DWARF end) is decoded and
lockflow's must-analysis says which locks are held on every path from the entry to
the frame's pc (for a return address: to the call before it). That finds holders of
locks that record no owner (semaphores, reader-held rwsems, and spin locks without
``CONFIG_DEBUG_SPINLOCK``) for globally addressed locks, and where each was taken.
Locks reached through pointers are not resolved: they stay unknown.

A CPU spins on a lock when one of its frames is a spin-lock slow path
(``queued_spin_lock_slowpath``, ``queued_{read,write}_lock_slowpath``: arm64 has
qspinlock since v4.19, commit c11090474d70, and qrwlock since v4.15, commit
087133ac9076). The lock is the slow path's first argument: proven where the caller
passes a constant address in x0 at that call (an inlined ``spin_lock``, Debian's 6.1
and later), or, when the caller is an out-of-line lock function (``_raw_spin_lock``,
the course's 5.0), at that function's own call site one frame further out.
"""

import gdb

from ..analysis import fault as F
from ..analysis import lockflow
from ..analysis.lockflow import ACQUIRE, RELEASE, SLOWPATHS
from .symbolize import lookup
from .memory import read_bytes

__all__ = ["acquisitions", "spinning_on", "ACQUIRE", "RELEASE", "SLOWPATHS"]

_M = 0xFFFFFFFFFFFFFFFF
_flows = {}          # function start -> lockflow.Flow (or None: unreadable)


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


def callee_name(target):
    """The function a ``bl`` to ``target`` calls (through a module PLT veneer), without a
    compiler suffix (``.constprop.0``), or None."""
    # a veneer first: it lies in the module's .plt, past its last function, so the
    # nearest symbol below it names that function (5.0's kdspin_aa called
    # "kdspin_start+0x…" for queued_spin_lock_slowpath)
    real = _plt_target(target)
    name = lookup(real if real is not None else target, want_line=False).name or ""
    return name.split(".")[0] or None


def _bounds(pc):
    """(start, end) of the function holding ``pc``: its symbol's start, DWARF's end (else
    the pc itself: then only the code up to it is seen)."""
    s = lookup(pc, want_line=False)
    if s.start is None:
        return None, None
    end = None
    try:
        blk, b = gdb.block_for_pc(pc), None
        while blk is not None and not blk.is_static and not blk.is_global:
            if blk.function is not None:
                b = blk             # the outermost function block: not an inlined one's
            blk = blk.superblock
        # DWARF's start may lie past the symbol's (a patchable entry's NOPs before it)
        if b is not None and b.function is not None and b.start <= pc < b.end \
                and s.start <= b.start <= s.start + 16:
            end = b.end
    except RuntimeError:
        pass
    return s.start, max(end or 0, pc + 4)


def flow_at(pc):
    """The lockflow.Flow of the function holding ``pc``, or None."""
    start, end = _bounds(pc)
    if start is None or end - start > 1 << 16:
        return None
    if start not in _flows or (_flows[start] and _flows[start].insns[-1].addr < pc):
        try:
            insns = F.decode(read_bytes(start, end - start), start)
        except gdb.MemoryError:
            insns = None
        fl = lockflow.Flow(insns, callee_name) if insns else None
        if fl is not None:
            blocks = _inline_acquires(fl)
            if blocks:
                fl = lockflow.Flow(insns, callee_name, blocks)
        _flows[start] = fl
    return _flows[start]


#: inline functions that return only with their lock held (include/linux/spinlock.h,
#: spinlock_api_smp.h, asm-generic/qspinlock.h, qrwlock.h)
_INLINE_LOCKS = {"spin_lock": "spinlock", "__raw_spin_lock": "spinlock", "do_raw_spin_lock": "spinlock",
                 "queued_spin_lock": "spinlock", "arch_spin_lock": "spinlock",
                 "spin_lock_bh": "spinlock", "spin_lock_irq": "spinlock",
                 "__raw_spin_lock_bh": "spinlock", "__raw_spin_lock_irq": "spinlock",
                 "queued_write_lock": "rwlock", "queued_read_lock": "rwlock",
                 "__raw_write_lock": "rwlock", "__raw_read_lock": "rwlock"}


def _inline_acquires(fl):
    """[(lo, hi, lock, kind, at)] for each contiguous inlined lock function (DWARF) that
    holds a slow-path call whose x0 the flow proves: see lockflow.Flow."""
    out = []
    for i in fl.insns:
        callee, x0 = fl.call_x0(i.addr)
        if callee not in SLOWPATHS or x0 is None:
            continue
        try:
            b, best = gdb.block_for_pc(i.addr), None
            while b is not None and not b.is_static and not b.is_global:
                if b.function is not None and b.function.name.split(".")[0] in _INLINE_LOCKS \
                        and b.superblock is not None and not b.superblock.is_static:
                    best = b            # the outermost inlined lock function around the call
                b = b.superblock
        except RuntimeError:
            continue
        if best is None or not _contiguous(fl, best):
            continue
        out.append((best.start, best.end, x0, _INLINE_LOCKS[best.function.name.split(".")[0]], best.start))
    return out


def _contiguous(fl, block):
    """Every instruction in [block.start, block.end) belongs to ``block`` (an optimised
    inline split into hot and cold parts does not: its range then covers other code)."""
    key = lambda b: (b.start, b.end, b.function.name if b.function else None)
    want = key(block)
    for i in fl.insns:
        if block.start <= i.addr < block.end:
            b = gdb.block_for_pc(i.addr)
            while b is not None and key(b) != want:      # gdb.Block has no equality
                b = b.superblock
            if b is None:
                return False
    return True


def _site(f):
    """The instruction a frame is at: the call for a return address, else its pc."""
    return f.pc - 4 if f.kind in ("return", "lr") else f.pc


def acquisitions(frames):
    """Locks the live frames hold: [{lock, kind, func, at, pc}], outermost first. A frame in
    the exception entry code adds nothing (what it interrupted is its own frame)."""
    held = {}
    for f in reversed(frames):
        site = _site(f)
        fl = flow_at(site)
        if fl is None:
            continue
        hb = fl.held_before(site) or {}
        for lock, (kind, at) in hb.items():
            if lock not in held:
                held[lock] = {"lock": lock, "kind": kind, "func": lookup(site, want_line=False).name,
                              "at": lookup(at, want_line=False).label(), "pc": at}
    return list(held.values())


def spinning_on(frames, start=0):
    """(kind, lock address or None, why, frame index) of the innermost spin-lock slow path
    in ``frames[start:]``, or None when no frame is one. ``why`` says how the lock was
    proven, or why it could not be. A frame returning to a call of a slow path counts as
    well: the slow path's own frame is missing from a walk that starts in the exception
    vectors (an interrupt just taken, before pt_regs were saved), but the call has not
    returned. (An interrupt taken while spinning may spin again, on another lock: the
    outer slow path is found from ``start`` past the inner one's caller.)"""
    for i, f in enumerate(frames):
        if i < start:
            continue
        site = _site(f)
        name = (lookup(site, want_line=False).name or "").split(".")[0]
        if name in SLOWPATHS:
            return _spun_lock(frames, i + 1, SLOWPATHS[name], i)
        if f.kind in ("return", "lr"):
            fl = flow_at(site)
            callee = fl.call_x0(site)[0] if fl is not None else None
            if callee in SLOWPATHS:
                return _spun_lock(frames, i, SLOWPATHS[callee], i)
    return None


def _spun_lock(frames, first, kind, i):
    """The lock a slow path entered from ``frames[first]``'s call site was given."""
    for j in range(first, min(first + 2, len(frames))):
        site = _site(frames[j])
        label = lookup(site, want_line=False).label()
        fl = flow_at(site)
        if fl is None:
            return kind, None, f"no code for {label}", i
        x0 = fl.call_x0(site)[1]
        if x0 is not None:
            return kind, x0, f"x0 at the call in {label}", i
        if (lookup(site, want_line=False).name or "").split(".")[0] not in ACQUIRE:
            # not a lock function passing its own argument on
            return kind, None, f"the lock's address is not a constant in {label} (reached through a pointer)", i
    return kind, None, "no caller frame", i

