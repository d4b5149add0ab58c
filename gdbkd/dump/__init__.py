"""Dump formats → physical memory + notes (no gdb, no kernel knowledge).

:func:`open_physical` recognizes the format from the file's first bytes:
ELF (``\\x7fELF``), kdump-compressed (``KDUMP   ``) and makedumpfile's
flattened stream (``makedumpfile``) holding a kdump-compressed file.
"""

import os

from .base import (DumpError, PageExcluded, PageNotInDump, Note, PhysicalDump, parse_notes,
                   NT_PRSTATUS, NT_FPREGSET)
from .elf import ElfDump
from .diskdump import KdumpDump, KDUMP_SIGNATURE
from .flattened import is_flattened
from .vmcoreinfo import parse_vmcoreinfo

__all__ = ["open_physical", "DumpError", "PageExcluded", "PageNotInDump", "Note",
           "PhysicalDump", "ElfDump", "KdumpDump", "parse_notes", "parse_vmcoreinfo",
           "NT_PRSTATUS", "NT_FPREGSET"]


def open_physical(path) -> PhysicalDump:
    """Open a dump file read-only; raises DumpError with one clear line on bad input."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError as e:
        raise DumpError(f"cannot open dump {path}: {e.strerror}")
    if len(head) < 16:
        raise DumpError(f"{path} is too small to be a dump ({len(head)} bytes)")
    if head[:4] == b"\x7fELF":
        return ElfDump(path)
    if head[:8] == KDUMP_SIGNATURE or is_flattened(head):
        return KdumpDump(path)
    if head[:8] == b"DISKDUMP":
        raise DumpError(f"{path}: the old diskdump format is not supported")
    raise DumpError(f"{path} is not a kernel dump gdbkd knows (ELF vmcore, kdump-compressed, "
                    f"or makedumpfile flattened)")
