"""arm64 register facts, once and with no gdb: the kernel's saved-register layouts, PSTATE's
exception level and mode, gdb's register numbering, and the KASLR offset from VBAR_EL1.

Every other module decodes these through here (tests/unit/test_arm64_regs.py reads the
package's source to check that no other module tests PSTATE's mode bits or computes the
KASLR offset from VBAR itself).

Layouts, with the kernel versions they hold for:

* ``struct pt_regs`` (arch/arm64/include/asm/ptrace.h) starts with ``struct user_pt_regs``
  (arch/arm64/include/uapi/asm/ptrace.h): ``regs[31], sp, pc, pstate``, u64 each, in a
  union since v3.7 and unchanged through 6.12. What follows it (``orig_x0``,
  ``syscallno``, the embedded ``stackframe`` record of v4.14+, commit 732674980139
  "arm64: unwind: reference pt_regs via embedded stack frame") moved between versions, so
  its offsets come from the vmlinux's types (:data:`PT_REGS_6_1` are 6.1's, the fallback
  the gdb layer uses when the vmlinux has no such type).
* ``struct cpu_context`` (arch/arm64/include/asm/processor.h): ``x19..x28, fp, sp, pc``,
  u64 each, what ``cpu_switch_to`` saves for a task it switches out; unchanged v3.7–6.12.
* ``struct elf_prstatus`` (include/uapi/linux/elfcore.h) on arm64 is 392 bytes: ``pr_pid``
  at 32, ``pr_reg`` (a ``user_pt_regs``) at 112. ``struct user_fpsimd_state``
  (NT_FPREGSET) is 528 bytes: ``vregs[32]`` (16 bytes each), ``fpsr``, ``fpcr``.
* gdb's aarch64 numbering (features org.gnu.gdb.aarch64.core / .fpu): 0-30 x0-x30, 31 sp,
  32 pc, 33 cpsr (32 bits), 34-65 v0-v31 (128 bits), 66 fpsr, 67 fpcr (32 bits). A value
  of ``None`` is "unavailable" (``xx`` in the remote protocol).

PSTATE (SPSR as saved in ``pt_regs.pstate``; gdb's ``cpsr``): ``M[3:0]`` is the AArch64
mode (``PSR_MODE_MASK``), ``M[3:2]`` its exception level, bit 4 (``PSR_MODE32_BIT``) marks
AArch32 state, which arm64 Linux runs only in compat user tasks (at EL0). The kernel's own
``user_mode(regs)`` is ``(pstate & PSR_MODE_MASK) == PSR_MODE_EL0t``; these definitions
are unchanged v3.7–6.12.

KASLR: live, ``VBAR_EL1`` holds the runtime address of ``vectors`` (arch/arm64/kernel/
entry.S), so the image's offset from its link address is ``VBAR_EL1 - &vectors``; arm64
KASLR moves the image in 2 MiB steps (``MIN_KIMG_ALIGN``, v4.6+). With KPTI (v4.16+; on
when KASLR is, on cores without E0PD) a CPU in user mode or in the entry trampoline has
``VBAR_EL1`` = the trampoline vectors, whose difference is not 2 MiB aligned and proves
nothing.
"""

import struct

from ..errors import GdbkdError

__all__ = ["NUM_REGS", "REG_SIZES", "SP", "PC", "CPSR",
           "PT_REGS_NAMES", "USER_PT_REGS", "PT_REGS_6_1", "pt_regs_dict", "decode_pt_regs",
           "PSR_MODE_MASK", "PSR_MODE32_BIT", "PSTATE_MODES", "exception_level", "is_aarch32",
           "from_user", "mode_name", "saved_pstate_plausible",
           "CPU_CONTEXT_NAMES", "CPU_CONTEXT_SIZE", "decode_cpu_context", "regs_from_cpu_context",
           "PRSTATUS_SIZE", "FPREGSET_SIZE", "PrStatus", "parse_prstatus", "encode_prstatus",
           "parse_fpregset", "encode_fpregset",
           "KASLR_ALIGN", "kaslr_from_vbar"]

M64 = (1 << 64) - 1

# -- gdb's numbering ---------------------------------------------------------------------
NUM_REGS = 68
REG_SIZES = [8] * 33 + [4] + [16] * 32 + [4, 4]
#: gdb register numbers (and the indexes of user_pt_regs' words) of sp, pc and cpsr/pstate
SP, PC, CPSR = 31, 32, 33

# -- struct pt_regs ----------------------------------------------------------------------
#: the words of struct user_pt_regs, pt_regs' first 34 u64s
PT_REGS_NAMES = tuple(f"x{i}" for i in range(31)) + ("sp", "pc", "pstate")
USER_PT_REGS = struct.Struct("<34Q")
#: Debian 6.1's struct pt_regs: its size and the offsets of what follows user_pt_regs
PT_REGS_6_1 = {"size": 8 * 42, "stackframe": 8 * 38, "orig_x0": 8 * 34, "syscallno": 8 * 35}


def pt_regs_dict(words) -> dict:
    """{"x0".."x30", "sp", "pc", "pstate": int} of user_pt_regs' 34 WORDS."""
    return dict(zip(PT_REGS_NAMES, words))


def decode_pt_regs(data: bytes, layout: dict = None, addr: int = None) -> dict:
    """The struct pt_regs in DATA: x0..x30, sp, pc, pstate; with ADDR also ``addr``; with
    LAYOUT (the offsets of ``orig_x0``, ``syscallno`` and ``stackframe`` in this kernel's
    pt_regs, e.g. :data:`PT_REGS_6_1`) also ``orig_x0``, ``syscallno`` (signed) and
    ``stackframe`` (its three words: ``{x29, pc}`` and, 6.13+, the metadata type)."""
    regs = pt_regs_dict(USER_PT_REGS.unpack_from(data, 0))
    if addr is not None:
        regs["addr"] = addr
    if layout is not None:
        o, n, sf = layout["orig_x0"], layout["syscallno"], layout["stackframe"]
        regs["orig_x0"] = struct.unpack_from("<Q", data, o)[0]
        regs["syscallno"] = struct.unpack_from("<i", data, n)[0]
        regs["stackframe"] = list(struct.unpack_from("<3Q", data, sf))
    return regs


# -- PSTATE ------------------------------------------------------------------------------
PSR_MODE_MASK = 0xF
PSR_MODE32_BIT = 0x10
#: AArch64 modes (M[4:0]) by name: the exception level and t (SP_EL0) or h (SP_ELx)
PSTATE_MODES = {0x0: "EL0t", 0x4: "EL1t", 0x5: "EL1h", 0x8: "EL2t", 0x9: "EL2h"}
#: the modes a kernel's saved context can be in: EL0t (user), EL1t, EL1h
_KERNEL_SAVED_MODES = (0x0, 0x4, 0x5)


def exception_level(pstate: int) -> int:
    """The exception level of PSTATE's mode, as the kernel's ``user_mode()`` reads it
    (``M[3:2]``; 0 for an AArch32 user task, whose mode is ``usr``, 0x10)."""
    return (pstate & PSR_MODE_MASK) >> 2


def is_aarch32(pstate: int) -> bool:
    """PSTATE is AArch32 state (``PSR_MODE32_BIT``): a compat user task."""
    return bool(pstate & PSR_MODE32_BIT)


def from_user(pstate: int) -> bool:
    """The context was running user code: EL0, or AArch32 (arm64 Linux runs AArch32 code
    only at EL0)."""
    return is_aarch32(pstate) or exception_level(pstate) == 0


def mode_name(pstate: int) -> str:
    """"EL1h", "EL0t", … ; "AArch32" for AArch32 state, else "mode 0x…"."""
    m = pstate & 0x1F
    return PSTATE_MODES.get(m, "AArch32" if is_aarch32(pstate) else f"mode {m:#x}")


def saved_pstate_plausible(pstate: int) -> bool:
    """PSTATE can be a kernel-saved context's: no bits above 35 (SPSR's highest defined
    bits), and a mode the kernel takes exceptions from (EL0t, EL1t, EL1h) or AArch32."""
    return not pstate >> 36 and (is_aarch32(pstate) or pstate & 0x1F in _KERNEL_SAVED_MODES)


# -- struct cpu_context ------------------------------------------------------------------
CPU_CONTEXT_NAMES = tuple(f"x{i}" for i in range(19, 29)) + ("fp", "sp", "pc")
CPU_CONTEXT_SIZE = 8 * len(CPU_CONTEXT_NAMES)
_CPU_CONTEXT = struct.Struct(f"<{len(CPU_CONTEXT_NAMES)}Q")


def decode_cpu_context(raw: bytes) -> dict:
    """{x19..x28, fp, sp, pc} of the struct cpu_context in RAW; {} when RAW is shorter."""
    if len(raw) < CPU_CONTEXT_SIZE:
        return {}
    return dict(zip(CPU_CONTEXT_NAMES, _CPU_CONTEXT.unpack_from(raw, 0)))


def regs_from_cpu_context(raw: bytes) -> list:
    """gdb's registers of a task switched out by cpu_switch_to: x19-x29, sp, pc; the rest
    (every one, when RAW is shorter than a cpu_context) unavailable."""
    regs = [None] * NUM_REGS
    cc = decode_cpu_context(raw)
    if cc:
        for i in range(19, 29):
            regs[i] = cc[f"x{i}"]
        regs[29] = cc["fp"]
        regs[SP] = cc["sp"]
        # cpu_switch_to stores its lr as "pc": the task resumes there, in __switch_to.
        regs[PC] = cc["pc"]
    return regs


# -- NT_PRSTATUS, NT_FPREGSET ------------------------------------------------------------
PRSTATUS_SIZE = 392
FPREGSET_SIZE = 528
_PR_PID = 32
_PR_REG = 112


class PrStatus:
    """A CPU's (or a core file thread's) NT_PRSTATUS: ``pid`` and gdb's registers ``regs``
    (x0-x30, sp, pc, cpsr; v0-v31, fpsr, fpcr unavailable until :func:`parse_fpregset`)."""
    __slots__ = ("pid", "regs")

    def __init__(self, pid, regs):
        self.pid, self.regs = pid, regs

    @property
    def sp(self):
        return self.regs[SP]

    @property
    def pc(self):
        return self.regs[PC]


def parse_prstatus(desc: bytes) -> PrStatus:
    if len(desc) < _PR_REG + USER_PT_REGS.size:
        raise GdbkdError(f"NT_PRSTATUS note of {len(desc)} bytes is not arm64's ({PRSTATUS_SIZE})")
    pid = struct.unpack_from("<i", desc, _PR_PID)[0]
    r = list(USER_PT_REGS.unpack_from(desc, _PR_REG))
    regs = r[:CPSR] + [r[CPSR] & 0xffffffff] + [None] * (NUM_REGS - CPSR - 1)
    return PrStatus(pid, regs)


def encode_prstatus(pid: int, regs) -> bytes:
    """An NT_PRSTATUS of PID (``pr_pid``, ``pr_ppid`` 0, ``pr_pgrp``, ``pr_sid``) with gdb's
    registers REGS (x0-x30, sp, pc, cpsr; unavailable ones as 0)."""
    b = bytearray(PRSTATUS_SIZE)
    struct.pack_into("<iiii", b, _PR_PID, pid, 0, pid, pid)
    USER_PT_REGS.pack_into(b, _PR_REG, *[(r or 0) & M64 for r in regs[:CPSR + 1]])
    return bytes(b)


def parse_fpregset(desc: bytes, regs: list):
    """Fill v0-v31, fpsr, fpcr of gdb's registers REGS from an NT_FPREGSET note."""
    if len(desc) < 520:
        return
    for i in range(32):
        lo, hi = struct.unpack_from("<QQ", desc, 16 * i)
        regs[34 + i] = lo | hi << 64
    regs[66], regs[67] = struct.unpack_from("<II", desc, 512)


def encode_fpregset(regs) -> bytes:
    """An NT_FPREGSET of gdb's registers REGS (v0-v31, fpsr, fpcr; unavailable ones as 0)."""
    b = bytearray(FPREGSET_SIZE)
    for i in range(32):
        v = regs[34 + i] or 0
        struct.pack_into("<QQ", b, 16 * i, v & M64, v >> 64)
    struct.pack_into("<II", b, 512, regs[66] or 0, regs[67] or 0)
    return bytes(b)


# -- KASLR -------------------------------------------------------------------------------
KASLR_ALIGN = 2 << 20   # arm64 KASLR moves the image in 2 MiB steps (MIN_KIMG_ALIGN)


def kaslr_from_vbar(vbar, vectors):
    """The KASLR offset (signed) of a kernel whose CPU shows VBAR (VBAR_EL1) and whose
    vmlinux links ``vectors`` at VECTORS; None when VBAR does not prove it: unknown (None),
    0 (not set up yet) or not 2 MiB away from VECTORS (the KPTI trampoline's vectors)."""
    if not vbar or vectors is None:
        return None
    delta = (vbar - vectors) & M64
    if delta >= 1 << 63:
        delta -= 1 << 64
    return delta if delta % KASLR_ALIGN == 0 else None
