"""Where gdbkd's own files are, in a checkout and in an installed wheel."""

from pathlib import Path

__all__ = ["kd_py", "GDB_INIT"]

#: ``-iex`` settings every gdb that gdbkd starts gets before it reads a symbol file:
#: no auto-loaded scripts (a vmlinux-gdb.py or .gdbinit next to the vmlinux does not
#: run), no debuginfod lookups, and no demangling: the kernel is C, and trying every
#: language's demangler on each of a vmlinux's 155,000 ELF symbols is a third of gdb's
#: symbol-loading time (0.17 s -> 0.12 s here). Rust kernel symbols would show mangled.
#: A remote timeout of 30 s instead of 2: gdb resends a packet it has no answer to within
#: the timeout, and the proxy's first stop on a 10,000-task guest (the task list read
#: through QEMU's gdbstub) or a loaded machine can take longer than 2 s — the resent
#: packet's second answer would put every later reply one packet behind.
GDB_INIT = ["-iex", "set auto-load no", "-iex", "set debuginfod enabled off",
            "-iex", "set demangle-style none", "-iex", "set remotetimeout 30"]


def kd_py() -> Path:
    """The gdb bootstrap script: the checkout's gdb_scripts/kd.py, else the copy in the package."""
    here = Path(__file__).resolve().parent
    repo = here.parent / "gdb_scripts" / "kd.py"
    return repo if repo.exists() else here / "kd_bootstrap.py"
