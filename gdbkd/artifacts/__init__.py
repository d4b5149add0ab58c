"""Kernel artifacts: Debian arm64 packages, initramfs, lab/test modules."""
