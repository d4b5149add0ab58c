"""The kernel model inside gdb: types, tasks, stacks, printk, modules, locks.

Modules here import ``gdb`` and run in gdb's embedded Python only.
"""
