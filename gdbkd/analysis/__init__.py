"""Pure analysis (no gdb): wait-for graphs, cycles, rendering."""
