"""arm64 instruction decoding with capstone, on bytes read from target memory.

Reading the bytes from the target (not the vmlinux file) shows the code as it
runs: alternatives patched at boot, ftrace NOPs/branches, module text.
The engine is gdbkd/arm64/insn.py's.
"""

import re

import gdb

from .memory import read_bytes

__all__ = ["Insn", "disassemble", "frame_record_ready", "capstone_available"]


def _engine():
    from ..arm64.insn import engine
    return engine()


def capstone_available() -> bool:
    try:
        _engine()
        return True
    except ImportError:
        return False


class Insn:
    __slots__ = ("addr", "size", "bytes", "mnemonic", "op_str")

    def __init__(self, addr, size, raw, mnemonic, op_str):
        self.addr = addr
        self.size = size
        self.bytes = raw
        self.mnemonic = mnemonic
        self.op_str = op_str

    def branch_target(self):
        """Absolute target of a direct branch (b, bl, b.cond, cbz, tbz, adr…), or None."""
        if self.mnemonic.split(".")[0] in ("b", "bl", "cbz", "cbnz", "tbz", "tbnz", "adr") \
                or self.mnemonic.startswith("b."):
            m = re.search(r"#(0x[0-9a-f]+)\s*$", self.op_str)
            if m:
                return int(m.group(1), 16)
        return None


def disassemble(addr: int, count: int = None, size: int = None) -> list:
    """Decode ``count`` instructions (or ``size`` bytes) starting at ``addr``."""
    if size is None:
        size = 4 * (count or 1)
    data = read_bytes(addr, size)
    out = []
    for i in _engine().disasm(data, addr):
        out.append(Insn(i.address, i.size, bytes(i.bytes), i.mnemonic, i.op_str))
        if count is not None and len(out) >= count:
            break
    return out


_SETS_FP = re.compile(r"^(mov\s+x29,\s*sp|add\s+x29,\s*sp,\s*#)")


def frame_record_ready(func_start: int, pc: int, scan: int = 24):
    """Has the function starting at ``func_start`` set x29 to its own frame record
    before ``pc``? True/False, or None if the prologue sets no frame pointer within
    ``scan`` instructions (a leaf: the caller is in lr)."""
    if pc < func_start or pc - func_start > 4 * 4096:
        return None
    try:
        insns = disassemble(func_start, count=scan)
    except gdb.MemoryError:
        return None
    for ins in insns:
        if _SETS_FP.match(f"{ins.mnemonic} {ins.op_str}"):
            return ins.addr < pc
    return None
