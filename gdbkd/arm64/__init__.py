"""arm64 specifics with no gdb: page-table translation, register layouts."""

from .mmu import Arm64Mmu, AddressNotMapped, mmu_from_vmcoreinfo

__all__ = ["Arm64Mmu", "AddressNotMapped", "mmu_from_vmcoreinfo"]
