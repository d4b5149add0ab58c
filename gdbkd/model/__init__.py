"""The kernel model without gdb: one memory reader, struct layouts, and what they read.

Layers (docs/design.md)::

    commands/ (kd …)     stub/ (threads for gdb)     kmods, gdbkd core
            \\                  |                      /
    model/   tasks · percpu · lists · modules          (no gdb import)
            |   Kernel(reader, types, symbol) — the explicit context
    reader.py: DumpReader (dump in-process) | GdbReader (kernel/memory.py) | BytesReader

Every function takes a :class:`~gdbkd.model.kernel.Kernel` first, as drgn's
helpers take ``prog``, so the same decoder serves kd inside gdb, the dump server
and the unit tests over recorded memory.
"""
