"""A few named symbols of a big ELF file (vmlinux), fast.

pyelftools parses every ``Elf64_Sym`` through construct: about 2.5 s for a
Debian vmlinux's 155,000 symbols. Finding a handful of names needs none of that:
look for ``name\\0`` in ``.strtab`` (ld merges string tails, so a name may also
start inside a longer string), then for the 4-byte ``st_name`` of each hit in
``.symtab`` at a 24-byte boundary (about 1 ms a name). Section headers still
come from pyelftools.
"""

import struct

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

from .errors import GdbkdError

__all__ = ["SymbolTable", "symbol_values", "file_bytes_at"]

_SYM = struct.Struct("<IBBHQQ")      # Elf64_Sym: st_name st_info st_other st_shndx st_value st_size


def _read_section(f, sec) -> bytes:
    f.seek(sec["sh_offset"])
    return f.read(sec["sh_size"])


class SymbolTable:
    """The ``.symtab`` of one ELF file, kept as raw bytes (a vmlinux: ~6 MB);
    each name lookup is a few ``bytes.find`` calls (~1 ms), nothing is parsed
    ahead. 64-bit little-endian ELF only."""

    def __init__(self, path):
        self.path = str(path)
        self._memo = {}
        self._index = None
        try:
            with open(path, "rb") as f:
                elf = ELFFile(f)
                if elf.elfclass != 64 or not elf.little_endian:
                    raise GdbkdError(f"{path}: not a 64-bit little-endian ELF file")
                symtab = elf.get_section_by_name(".symtab")
                if symtab is None:
                    self.strtab = self.syms = b""
                    self.names = b""
                else:
                    self.strtab = _read_section(f, elf.get_section(symtab["sh_link"]))
                    self.syms = _read_section(f, symtab)
                    n = len(self.syms) // _SYM.size
                    # the st_name column alone, contiguous: 4 bytes a symbol
                    self.names = memoryview(self.syms)[: n * _SYM.size].cast("I")[:: _SYM.size // 4].tobytes()
                self.sections = {sec.name: (sec["sh_addr"], sec["sh_size"]) for sec in elf.iter_sections()
                                 if sec["sh_flags"] & 2}          # SHF_ALLOC
        except (OSError, ELFError) as e:
            raise GdbkdError(f"cannot read symbols of {path}: {e}")

    def values(self, name) -> list:
        """``st_value`` of every defined symbol called NAME, in table order."""
        hit = self._memo.get(name)
        if hit is None:
            hit = self._memo[name] = self._values(name)
        return list(hit)

    def _values(self, name):
        pat = (name.encode() if isinstance(name, str) else name) + b"\0"
        strtab, syms, names = self.strtab, self.syms, self.names
        out = []
        hits = []
        i = strtab.find(pat)
        while i >= 0:
            hits.append(i)
            i = strtab.find(pat, i + 1)
        if len(hits) > 16:
            # a name that ends hundreds of others ("_text"): the linker lets st_name point
            # into a longer string's tail, so every hit may be a name; look them up in an
            # index of st_name offsets (built once) instead of scanning st_name per hit
            idx = self._name_index()
            for i in hits:
                for k in idx.get(i, ()):
                    _, _, _, shndx, value, _ = _SYM.unpack_from(syms, k * _SYM.size)
                    if shndx != 0:
                        out.append((k * 4, value))
            return [v for _, v in sorted(out)]
        for i in hits:
            key = struct.pack("<I", i)
            j = names.find(key)
            while j >= 0:
                if j % 4 == 0:
                    _, _, _, shndx, value, _ = _SYM.unpack_from(syms, j // 4 * _SYM.size)
                    if shndx != 0:                    # SHN_UNDEF: not a definition
                        out.append((j, value))
                j = names.find(key, j + 1)
        return [v for _, v in sorted(out)]

    def _name_index(self) -> dict:
        """{st_name offset: [symbol indices]} (once per table)."""
        if self._index is None:
            from array import array
            a = array("I")
            a.frombytes(self.names[:len(self.names) // 4 * 4])
            idx = {}
            for k, off in enumerate(a):
                idx.setdefault(off, []).append(k)
            self._index = idx
        return self._index

    def value(self, name, unique=False):
        """The first definition's value (None if none; with UNIQUE, also None when
        several symbols share the name, e.g. two files' static variables)."""
        vals = self.values(name)
        if not vals or (unique and len(set(vals)) > 1):
            return None
        return vals[0]


def symbol_values(path, names) -> dict:
    """``{name: st_value}`` of the first defined symbol of each name found in
    PATH's ``.symtab``. Missing names are left out."""
    st = SymbolTable(path)
    out = {}
    for n in names:
        v = st.value(n)
        if v is not None:
            out[n.decode() if isinstance(n, bytes) else n] = v
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
