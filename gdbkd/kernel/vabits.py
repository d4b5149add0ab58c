"""The kernel's virtual-address width and pointer-auth bits stripped from kernel pointers.

Return addresses saved by a kernel built with ARM64_PTR_AUTH_KERNEL (5.7+) carry a
signature above the VA width; :func:`strip_pac` forces those bits back (to ones for
the kernel half, bit 55 set). Both unwinders use it: kd's frame-record walk
(:mod:`.stack`) and gdb's exception-frame unwinder (:mod:`.unwind`).
"""

import gdb

from ..arm64.pac import strip_pac as _strip_pac
from ..model.sysinfo import vmcoreinfo
from .memory import kernel, read_bytes
from .snapshot import stop_cached
from .symbols import vmlinux_symbol_address
from .sysregs import sysreg

__all__ = ["va_bits", "strip_pac"]


@stop_cached
def va_bits() -> int:
    """Kernel VA width: ``vabits_actual`` (5.4–6.x with 52-bit VA), else 64 - TCR_EL1.T1SZ,
    else 48."""
    a = vmlinux_symbol_address("vabits_actual")
    if a is not None:
        try:
            v = int.from_bytes(read_bytes(a, 8), "little")
            if 36 <= v <= 52:
                return v
        except gdb.MemoryError:
            pass
    # the kernel's own VMCOREINFO (6.12 publishes TCR_EL1_T1SZ; no register needed)
    vi = vmcoreinfo(kernel())
    try:
        t1sz = int(vi.get("NUMBER(TCR_EL1_T1SZ)", "0"), 0)
        if 12 <= t1sz <= 28:
            return 64 - t1sz
    except ValueError:
        pass
    tcr = sysreg("TCR_EL1")
    if tcr is not None:
        t1sz = (tcr >> 16) & 0x3F
        if 12 <= t1sz <= 28:
            return 64 - t1sz
    return 48


def strip_pac(v: int) -> int:
    """V without pointer-authentication bits, for this kernel's VA width
    (:func:`gdbkd.arm64.pac.strip_pac`)."""
    return _strip_pac(v, va_bits())
