"""The capstone engine for arm64 code (no gdb): one place that knows capstone's names.

capstone 5 names the architecture ``CS_ARCH_ARM64``, capstone 6 ``CS_ARCH_AARCH64``;
both are accepted. ``detail`` engines report operands and the registers an
instruction reads and writes (gdbkd/analysis/fault.py); plain ones only text
(``kd dis``, gdbkd/kernel/disasm.py).
"""

__all__ = ["engine"]

_engines = {}


def engine(detail: bool = False):
    """A shared capstone ``Cs`` for AArch64 (raises ImportError without capstone)."""
    md = _engines.get(detail)
    if md is None:
        import capstone
        arch = getattr(capstone, "CS_ARCH_AARCH64", None)
        if arch is None:
            arch = capstone.CS_ARCH_ARM64
        md = capstone.Cs(arch, capstone.CS_MODE_ARM)
        if detail:
            md.detail = True
        else:
            md.skipdata = True
        _engines[detail] = md
    return md
