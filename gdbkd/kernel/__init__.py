"""The gdb layer: gdb's types, symbols and DWARF, threads and selection, the unwinder gdbkd
gives gdb and kd's frame walk; what it reads of the kernel it asks the model for
(gdbkd/model/, with :func:`gdbkd.kernel.memory.kernel` as the one Kernel context).

Modules here import ``gdb`` and run in gdb's embedded Python only. Bottom up, none
importing one above it: symcache, sysregs, selection → symbols (addresses, KASLR)
→ types (gdb's types) → memory (kd's reader; read_bytes…) → snapshot → percpu,
access, vabits → tasks; symbolize, disasm → stack → unwind; the rest (structs,
banner, crash, locks…) on top.
"""
