"""Dump formats → physical memory + notes (no gdb, no kernel knowledge).

:func:`open_physical` recognizes the format from the file's first bytes:
ELF (``\\x7fELF``), kdump-compressed (``KDUMP   ``) and makedumpfile's
flattened stream (``makedumpfile``) holding a kdump-compressed file; given a
list of files, it opens the parts of a ``makedumpfile --split`` dump as one.
"""

import os

from .base import (open_regular, DumpError, PageExcluded, PageNotInDump, Note, PhysicalDump, parse_notes,
                   NT_PRSTATUS, NT_FPREGSET)
from .elf import ElfDump
from .diskdump import KdumpDump, KdumpSplitDump, KDUMP_SIGNATURE
from .flattened import is_flattened
from .vmcoreinfo import parse_vmcoreinfo

__all__ = ["open_physical", "DumpError", "PageExcluded", "PageNotInDump", "Note",
           "PhysicalDump", "ElfDump", "KdumpDump", "KdumpSplitDump", "parse_notes", "parse_vmcoreinfo",
           "NT_PRSTATUS", "NT_FPREGSET"]


def open_physical(path) -> PhysicalDump:
    """Open a dump read-only; raises DumpError with one clear line on bad input.

    ``path`` is one file, or a list of files: the parts of a ``makedumpfile
    --split`` dump, read as one (:class:`KdumpSplitDump`; a one-element list is
    the same as its file)."""
    if isinstance(path, (list, tuple)):
        paths = [os.fspath(p) for p in path]
        if not paths:
            raise DumpError("no dump file given")
        if len(paths) == 1:
            return open_physical(paths[0])
        for p in paths:
            if _sniff(p) != "kdump":
                raise DumpError(f"{p} is not a kdump-compressed file: only the parts of a split "
                                f"dump (makedumpfile --split) can be opened together")
        return KdumpSplitDump(paths)
    path = os.fspath(path)
    kind = _sniff(path)
    if kind == "elf":
        return ElfDump(path)
    return KdumpDump(path)


def _sniff(path) -> str:
    """'elf' or 'kdump' (plain or flattened) from the file's first bytes, or DumpError."""
    fd = open_regular(path)
    try:
        head = os.pread(fd, 4096, 0)
    except OSError as e:
        raise DumpError(f"cannot read dump {path}: {e.strerror}")
    finally:
        os.close(fd)
    if len(head) < 16:
        raise DumpError(f"{path} is too small to be a dump ({len(head)} bytes)")
    if head[:4] == b"\x7fELF":
        return "elf"
    if head[:8] == KDUMP_SIGNATURE or is_flattened(head):
        return "kdump"
    if head[:8] == b"DISKDUMP":
        raise DumpError(f"{path}: the old diskdump format is not supported")
    raise DumpError(f"{path} is not a kernel dump gdbkd knows (ELF vmcore, kdump-compressed, "
                    f"or makedumpfile flattened)")
