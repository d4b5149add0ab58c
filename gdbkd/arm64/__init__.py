"""arm64 specifics with no gdb: page-table translation (:mod:`.mmu`), the capstone engine
(:mod:`.insn`), pointer-auth stripping (:mod:`.pac`), and the register facts — the saved
register layouts, PSTATE's exception level and mode, the KASLR offset from VBAR_EL1
(:mod:`.regs`).

``Arm64Mmu``, ``AddressNotMapped`` and ``mmu_from_vmcoreinfo`` come from :mod:`.mmu`,
imported on first use: the model imports :mod:`.regs`, and a live kd session needs no
dump reader.
"""

__all__ = ["Arm64Mmu", "AddressNotMapped", "mmu_from_vmcoreinfo"]


def __getattr__(name):
    if name in __all__:
        from . import mmu
        return getattr(mmu, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
