"""What the frontends know of the kd command set without importing it (it imports gdb).

A leaf module: the kd framework (commands/__init__.py) and ``gdbkd core``
(postmortem/session.py) both read it, so neither imports the other.
"""

__all__ = ["SYMBOL_FREE_COMMANDS"]

#: kd commands that run without gdb's symbols (kd's model reads through the dump with the
#: offsets cache's layouts; every use of gdb's symbols, types or lines on their paths goes
#: through gdbkd/kernel/symbols.py ``gdb_symbols`` / types.py ``lookup_type``, which load
#: them then).
#: ``gdbkd core --batch`` whose first -ex is one of them puts off loading the vmlinux into
#: gdb (postmortem/session.py); every other kd command loads it before it runs
#: (commands/__init__.py ``KdCommand.invoke``).
SYMBOL_FREE_COMMANDS = frozenset({"kmem", "search", "ps", "reader", "symbols"})
