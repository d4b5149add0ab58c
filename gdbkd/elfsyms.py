"""A few named symbols of a big ELF file (vmlinux), fast.

pyelftools parses every ``Elf64_Sym`` through construct: about 2.5 s for a
Debian vmlinux's 155,000 symbols. Finding a handful of names needs none of that:
look for ``name\\0`` in ``.strtab`` (ld merges string tails, so a name may also
start inside a longer string) and pick the 24-byte symbol entries whose
``st_name`` is one of those offsets, reading only the ``st_name`` column
(about 10 ms). Section headers still come from pyelftools.
"""

import struct

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

from .errors import GdbkdError

__all__ = ["symbol_values", "file_bytes_at"]

_SYM = struct.Struct("<IBBHQQ")      # Elf64_Sym: st_name st_info st_other st_shndx st_value st_size


def _read_section(f, sec) -> bytes:
    f.seek(sec["sh_offset"])
    return f.read(sec["sh_size"])


def symbol_values(path, names) -> dict:
    """``{name: st_value}`` of the first defined symbol of each name found in
    PATH's ``.symtab`` (64-bit little-endian ELF). Missing names are left out."""
    want = {n.encode() if isinstance(n, str) else n for n in names}
    try:
        with open(path, "rb") as f:
            elf = ELFFile(f)
            if elf.elfclass != 64 or not elf.little_endian:
                raise GdbkdError(f"{path}: not a 64-bit little-endian ELF file")
            symtab = elf.get_section_by_name(".symtab")
            if symtab is None:
                return {}
            strtab = _read_section(f, elf.get_section(symtab["sh_link"]))
            syms = _read_section(f, symtab)
    except (OSError, ELFError) as e:
        raise GdbkdError(f"cannot read symbols of {path}: {e}")
    # string-table offsets at which each wanted name starts
    by_off = {}
    for name in want:
        pat = name + b"\0"
        i = strtab.find(pat)
        while i >= 0:
            by_off[i] = name
            i = strtab.find(pat, i + 1)
    if not by_off:
        return {}
    n = len(syms) // _SYM.size
    col = memoryview(syms)[: n * _SYM.size].cast("I")[:: _SYM.size // 4].tolist()
    out = {}
    for idx, st_name in enumerate(col):
        name = by_off.get(st_name)
        if name is None:
            continue
        key = name.decode()
        if key in out:
            continue
        _, _, _, shndx, value, _ = _SYM.unpack_from(syms, idx * _SYM.size)
        if shndx != 0:                      # SHN_UNDEF: not a definition
            out[key] = value
    return out


def file_bytes_at(path, addr: int, n: int):
    """N bytes of PATH's loaded image at link address ADDR (None if no section holds it)."""
    with open(path, "rb") as f:
        elf = ELFFile(f)
        for sec in elf.iter_sections():
            if sec["sh_type"] != "SHT_NOBITS" and sec["sh_addr"] and \
                    sec["sh_addr"] <= addr < sec["sh_addr"] + sec["sh_size"]:
                f.seek(sec["sh_offset"] + addr - sec["sh_addr"])
                return f.read(min(n, sec["sh_addr"] + sec["sh_size"] - addr))
    return None
