"""arm64 specifics with no gdb: page-table translation, the capstone engine, pointer-auth
stripping (:mod:`.pac`)."""

from .mmu import Arm64Mmu, AddressNotMapped, mmu_from_vmcoreinfo

__all__ = ["Arm64Mmu", "AddressNotMapped", "mmu_from_vmcoreinfo"]
