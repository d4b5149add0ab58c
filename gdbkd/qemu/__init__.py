"""QEMU guests: profiles, machine lifecycle, serial console, QMP."""
