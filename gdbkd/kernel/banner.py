"""Whether the vmlinux gdb has loaded is the kernel in memory: ``linux_banner`` compared.

The banner (``Linux version … #1 SMP …``) is read from memory through kd's reader
and from the vmlinux file at the symbol's link address (``kd symbols`` prints both
when they differ). Above :mod:`.memory` and :mod:`.symbols`, which it both uses.
"""

import gdb

from ..elfsyms import file_bytes_at
from .memory import read_bytes
from .symbols import load_deferred, symbol_table, vmlinux_path

__all__ = ["check_banner"]


def _file_banner(path: str):
    addr = symbol_table(path).value("linux_banner")
    if addr is None:
        return None
    data = file_bytes_at(path, addr, 256)
    return data.split(b"\0", 1)[0] if data is not None else None


def check_banner():
    """Return (ok, memory_banner, file_banner)."""
    load_deferred()
    addr = int(gdb.parse_and_eval("(unsigned long)&linux_banner"))
    try:
        mem = read_bytes(addr, 256).split(b"\0", 1)[0]
    except gdb.MemoryError:
        mem = b""
    fb = _file_banner(vmlinux_path())
    return (fb is None or mem == fb), mem, fb
