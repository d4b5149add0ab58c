"""arm64 register sets as gdb numbers them, from NT_PRSTATUS, NT_FPREGSET and cpu_context.

gdb's aarch64 numbering (features org.gnu.gdb.aarch64.core / .fpu):
0-30 x0-x30, 31 sp, 32 pc, 33 cpsr (32-bit), 34-65 v0-v31 (128-bit),
66 fpsr, 67 fpcr (32-bit). A value of ``None`` is "unavailable" (``xx`` in RSP).

Layouts (include/uapi/linux/elfcore.h, arch/arm64/include/uapi/asm/ptrace.h):
``struct elf_prstatus`` on arm64 is 392 bytes, ``pr_pid`` at 32, ``pr_reg``
(34 u64: x0-x30, sp, pc, pstate) at 112. ``struct user_fpsimd_state``
(NT_FPREGSET) is 528 bytes: vregs[32] (16 bytes each), fpsr, fpcr.
``struct cpu_context`` (arch/arm64/include/asm/processor.h, unchanged since
v3.7): x19-x28, fp, sp, pc — what cpu_switch_to saved for a sleeping task.
"""

import struct

__all__ = ["NUM_REGS", "REG_SIZES", "PrStatus", "parse_prstatus", "parse_fpregset",
           "regs_from_cpu_context", "PRSTATUS_SIZE"]

NUM_REGS = 68
REG_SIZES = [8] * 33 + [4] + [16] * 32 + [4, 4]
PRSTATUS_SIZE = 392
_PR_PID = 32
_PR_REG = 112


class PrStatus:
    __slots__ = ("pid", "regs")

    def __init__(self, pid, regs):
        self.pid, self.regs = pid, regs

    @property
    def sp(self):
        return self.regs[31]

    @property
    def pc(self):
        return self.regs[32]


def parse_prstatus(desc: bytes) -> PrStatus:
    if len(desc) < _PR_REG + 34 * 8:
        from ..errors import GdbkdError
        raise GdbkdError(f"NT_PRSTATUS note of {len(desc)} bytes is not arm64's ({PRSTATUS_SIZE})")
    pid = struct.unpack_from("<i", desc, _PR_PID)[0]
    r = list(struct.unpack_from("<34Q", desc, _PR_REG))
    regs = r[:33] + [r[33] & 0xffffffff] + [None] * 34
    return PrStatus(pid, regs)


def parse_fpregset(desc: bytes, regs: list):
    """Fill v0-v31, fpsr, fpcr of ``regs`` from an NT_FPREGSET note."""
    if len(desc) < 520:
        return
    for i in range(32):
        lo, hi = struct.unpack_from("<QQ", desc, 16 * i)
        regs[34 + i] = lo | hi << 64
    regs[66], regs[67] = struct.unpack_from("<II", desc, 512)


def regs_from_cpu_context(ctx: bytes) -> list:
    """Registers of a task switched out by cpu_switch_to: x19-x29, sp, pc; the rest unavailable."""
    v = struct.unpack_from("<13Q", ctx, 0)
    regs = [None] * NUM_REGS
    for i in range(10):
        regs[19 + i] = v[i]
    regs[29] = v[10]
    regs[31] = v[11]
    regs[32] = v[12]
    # cpu_switch_to stores its lr as "pc": the task resumes there, in __switch_to.
    return regs
