"""gdb-multiarch driven over GDB/MI (records parsed by pygdbmi)."""
