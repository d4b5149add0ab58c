"""Exception frames without gdb: where a kernel's ``struct pt_regs`` keeps what follows
``user_pt_regs`` (the 34 words arm64 has saved first since 3.7: gdbkd/arm64/regs.py).

``orig_x0`` and ``syscallno`` follow the user registers in every version; the embedded
frame record ``stackframe`` exists since v4.14 (commit 732674980139, "arm64: unwind:
reference pt_regs via embedded stack frame"), where its offset moves with what was added
before it (``pmr_save`` v5.1, ``sdei_ttbr1``/``lockdep_hardirqs``/``exit_rcu`` v5.12+).
"""

from .kernel import per_stop
from ..arm64.regs import PT_REGS_6_1, decode_pt_regs

__all__ = ["pt_regs_layout", "read_pt_regs"]

_MEMBERS = ("stackframe", "orig_x0", "syscallno")


@per_stop
def pt_regs_layout(k) -> dict:
    """{"size", "stackframe", "orig_x0", "syscallno"} of this kernel's struct pt_regs;
    Debian 6.1's (:data:`gdbkd.arm64.regs.PT_REGS_6_1`) when its types lack the struct."""
    lay = k.layout("struct pt_regs", _MEMBERS)
    size = k.sizeof("struct pt_regs")
    if not size or any(m not in lay for m in _MEMBERS):
        return PT_REGS_6_1
    return {"size": size, **{m: lay.offset(m) for m in _MEMBERS}}


def read_pt_regs(k, addr: int) -> dict:
    """The struct pt_regs at ADDR (:func:`gdbkd.arm64.regs.decode_pt_regs`): x0..x30, sp,
    pc, pstate, addr, orig_x0, syscallno and the embedded stackframe's words."""
    lay = pt_regs_layout(k)
    return decode_pt_regs(k.reader.read(addr, lay["stackframe"] + 24), lay, addr)
