"""The kernel model inside gdb: types, tasks, stacks, printk, modules, locks.

Modules here import ``gdb`` and run in gdb's embedded Python only. Bottom up, none
importing one above it: symcache, sysregs, selection → symbols (addresses, KASLR)
→ types (gdb's types) → memory (kd's reader; read_bytes…) → snapshot → percpu,
access, vabits → stackranges → tasks; symbolize, disasm → unwind → stack; the rest
(structs, banner, crash, locks…) on top.
"""
