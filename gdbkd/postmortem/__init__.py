"""``gdbkd core``, ``gdbkd convert`` and ``gdbkd core --check``: the frontends over a dump.

:mod:`.cli` (click commands), :mod:`.prestart` (gdb started before click is imported),
:mod:`.session` (gdb driven over a dump served in-process), :mod:`.convert` (an ELF core
any gdb opens) and :mod:`.check` (the dump against itself and its vmlinux). The dump
itself is opened by the target layer below (gdbkd/target: ``open_dump``, the offsets
registry, the preload thread), which the gdb layer (gdbkd/kernel) uses too; nothing
below the frontends imports this package.
"""
