"""The selected thread's CPU registers by name, as gdb's target has them.

A leaf of kd's gdb modules (the KASLR probe in symbols.py, the VA width in
vabits.py and the crash analysis read system registers through it).
"""

import gdb

__all__ = ["sysreg"]

MASK64 = (1 << 64) - 1


def sysreg(name: str):
    """The selected thread's CPU register NAME (``"FAR_EL1"``, ``"VBAR"``, ``"SP_EL0"``), or
    None when the target has no such register (a dump serves the core registers only).
    Read by name from the innermost frame, not through ``parse_and_eval("$NAME")``: for
    a register the target lacks, that looks NAME up as a symbol in every compilation
    unit (67 ms on a Debian vmlinux, each time)."""
    try:
        return int(gdb.newest_frame().read_register(name)) & MASK64
    except (ValueError, gdb.error):
        return None
