"""A few named symbols of a big ELF file (vmlinux), fast.

pyelftools parses every ``Elf64_Sym`` through construct: about 2.5 s for a
Debian vmlinux's 155,000 symbols. Finding a handful of names needs none of that:
look for ``name\\0`` in ``.strtab`` (ld merges string tails, so a name may also
start inside a longer string), then for the 4-byte ``st_name`` of each hit in
``.symtab`` at a 24-byte boundary (about 1 ms a name). The section headers are
read with struct too: importing pyelftools costs 25 ms of every gdb session's
start, and this module is all `kd` needs of the vmlinux file.
"""

import os
import struct

from .errors import GdbkdError

__all__ = ["SymbolTable", "AddressIndex", "symbol_values", "file_bytes_at", "sections", "build_id", "ElfFormatError"]

_SYM = struct.Struct("<IBBHQQ")      # Elf64_Sym: st_name st_info st_other st_shndx st_value st_size
#: Elf64_Shdr: sh_name sh_type sh_flags sh_addr sh_offset sh_size sh_link sh_info sh_addralign sh_entsize
_SHDR = struct.Struct("<IIQQQQIIQQ")
SHT_NOTE = 7
SHT_NOBITS = 8
SHF_ALLOC = 2


class ElfFormatError(GdbkdError):
    """An ELF file that cannot be read; ``str()`` is the reason alone, the caller says
    which file and what it wanted of it."""


class Section:
    __slots__ = ("name", "type", "flags", "addr", "offset", "size", "link")

    def __init__(self, name, type_, flags, addr, offset, size, link):
        self.name, self.type, self.flags = name, type_, flags
        self.addr, self.offset, self.size, self.link = addr, offset, size, link


def sections(f, path) -> list:
    """The section headers of the open 64-bit little-endian ELF file F (:class:`Section`
    list, in table order). ElfFormatError for anything else or a header that points
    outside the file (PATH: for error messages of the OS)."""
    size = os.fstat(f.fileno()).st_size
    f.seek(0)
    eh = f.read(64)
    if len(eh) < 64 or eh[:4] != b"\x7fELF":
        raise ElfFormatError("not an ELF file")
    if eh[4] != 2 or eh[5] != 1:
        raise ElfFormatError("not a 64-bit little-endian ELF file")
    shoff, = struct.unpack_from("<Q", eh, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", eh, 0x3A)
    if shoff == 0:
        return []
    if shentsize < _SHDR.size or shoff + shentsize > size:
        raise ElfFormatError("bad section header table")
    f.seek(shoff)
    first = _SHDR.unpack(f.read(_SHDR.size))
    if shnum == 0:                   # more than 0xff00 sections: the count is in section 0
        shnum = first[5]
    if shstrndx == 0xFFFF:           # SHN_XINDEX: the index too
        shstrndx = first[6]
    if shoff + shnum * shentsize > size:
        raise ElfFormatError("section header table past the end of the file")
    f.seek(shoff)
    raw = f.read(shnum * shentsize)
    hdrs = [_SHDR.unpack_from(raw, i * shentsize) for i in range(shnum)]
    names = b""
    if shstrndx < shnum:
        h = hdrs[shstrndx]
        names = _read(f, h[4], h[5], size, path)
    out = []
    for h in hdrs:
        end = names.find(b"\0", h[0])
        name = names[h[0]:end if end >= 0 else len(names)].decode("latin-1") if h[0] < len(names) else ""
        out.append(Section(name, h[1], h[2], h[3], h[4], h[5], h[6]))
    return out


def build_id(f, path, secs=None):
    """The GNU build-id (hex) in the note sections of the open ELF file F (a vmlinux's
    ``.notes``, a module's ``.note.gnu.build-id``), or None. ElfFormatError as sections()."""
    from .model.kallsyms import note_build_id
    size = os.fstat(f.fileno()).st_size
    for sec in secs if secs is not None else sections(f, path):
        if sec.type != SHT_NOTE or sec.offset + sec.size > size:
            continue
        f.seek(sec.offset)
        bid = note_build_id(f.read(min(sec.size, 1 << 20)))
        if bid:
            return bid
    return None


def _read(f, offset, n, size, path) -> bytes:
    if offset + n > size:
        raise ElfFormatError("a section lies past the end of the file")
    f.seek(offset)
    return f.read(n)


class SymbolTable:
    """The ``.symtab`` of one ELF file, kept as raw bytes (a vmlinux: ~6 MB, read on the
    first name lookup: the section table alone is what gdbkd core's start needs);
    each name lookup is a few ``bytes.find`` calls (~1 ms), nothing is parsed
    ahead. 64-bit little-endian ELF only."""

    def __init__(self, path):
        self.path = str(path)
        self._memo = {}
        self._index = None
        self._tables = None          # (strtab, syms, names), read on first use
        try:
            with open(path, "rb") as f:
                secs = sections(f, path)
                fsize = os.fstat(f.fileno()).st_size
        except OSError as e:
            raise GdbkdError(f"cannot read symbols of {path}: {e.strerror or e}")
        except ElfFormatError as e:
            raise GdbkdError(f"cannot read symbols of {path}: {e}") from None
        self._secs = secs
        self._by_addr = None         # AddressIndex, built (or read from the cache) on first use
        symtab = next((s for s in secs if s.name == ".symtab"), None)
        self._where = None
        if symtab is not None and symtab.link < len(secs):
            link = secs[symtab.link]
            if any(sec.offset + sec.size > fsize for sec in (symtab, link)):
                raise GdbkdError(f"cannot read symbols of {path}: a section lies past the "
                                 f"end of the file")
            self._where = (symtab, link)
        self.sections = {s.name: (s.addr, s.size) for s in secs if s.flags & SHF_ALLOC}

    def _load(self):
        if self._tables is None:
            if self._where is None:
                self._tables = (b"", b"", b"")
            else:
                symtab, link = self._where
                try:
                    with open(self.path, "rb") as f:
                        fsize = os.fstat(f.fileno()).st_size
                        strtab = _read(f, link.offset, link.size, fsize, self.path)
                        syms = _read(f, symtab.offset, symtab.size, fsize, self.path)
                except OSError as e:
                    raise GdbkdError(f"cannot read symbols of {self.path}: {e.strerror or e}")
                except ElfFormatError as e:
                    raise GdbkdError(f"cannot read symbols of {self.path}: {e}") from None
                n = len(syms) // _SYM.size
                # the st_name column alone, contiguous: 4 bytes a symbol
                names = memoryview(syms)[: n * _SYM.size].cast("I")[:: _SYM.size // 4].tobytes()
                self._tables = (strtab, syms, names)
        return self._tables

    @property
    def strtab(self):
        return self._load()[0]

    @property
    def syms(self):
        return self._load()[1]

    @property
    def names(self):
        return self._load()[2]

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

    def containing(self, addr: int):
        """``(name, offset, section)`` of the symbol holding the link-time address ADDR,
        when this table alone settles what gdb's ``info symbol ADDR`` names it, else None
        (the caller asks gdb). Settled means: the last symbol at or below ADDR that gdb
        keeps as a minimal symbol (defined, not absolute, a function, object or plain
        label, not a ``$x``/``$d`` mapping symbol) is the only one at its address, has a
        size that covers ADDR, and ADDR lies in exactly one allocated section. gdb then
        names that symbol whatever else the table holds (gdb/minsyms.c,
        lookup_minimal_symbol_by_pc_section: a sized symbol covering the pc, with no other
        symbol between it and the pc, is the answer). tests/unit/test_elfsyms.py checks
        this against gdb's own ``info symbol`` on a Debian vmlinux."""
        if not self.syms:
            return None
        idx = self._address_index()
        secs = [s for s in self._secs if s.flags & SHF_ALLOC and s.addr <= addr < s.addr + s.size]
        if len(secs) != 1:
            return None
        syms, strtab = self.syms, self.strtab
        j = idx.last_at_or_below(addr)
        found = None
        while j >= 0:
            a, k = idx.at(j)
            if found is not None and a != found[0]:
                break
            name_off, info, _other, shndx, value, size = _SYM.unpack_from(syms, k * _SYM.size)
            if self._kept(info, shndx, strtab, name_off):
                if found is not None:
                    return None                        # another symbol at the same address
                found = (a, k, name_off, shndx, size)
            j -= 1
        if found is None:
            return None
        a, k, name_off, shndx, size = found
        if not size or addr >= a + size or shndx >= len(self._secs) or \
                self._secs[shndx] is not secs[0]:
            return None
        end = strtab.find(b"\0", name_off)
        name = strtab[name_off:end].decode("utf-8", "replace")
        return name, addr - a, secs[0].name

    @staticmethod
    def _kept(info, shndx, strtab, name_off) -> bool:
        """Whether gdb makes this symbol a minimal symbol a section lookup can return."""
        if shndx == 0 or shndx >= 0xFF00 or (info & 0xF) not in (0, 1, 2):
            return False                   # undefined, absolute/common, section or file
        return strtab[name_off:name_off + 1] not in (b"", b"\0", b"$")

    def _address_index(self):
        if self._by_addr is None:
            self._by_addr = AddressIndex.of(self)
        return self._by_addr

    def value(self, name, unique=False):
        """The first definition's value (None if none; with UNIQUE, also None when
        several symbols share the name, e.g. two files' static variables)."""
        vals = self.values(name)
        if not vals or (unique and len(set(vals)) > 1):
            return None
        return vals[0]


class AddressIndex:
    """Every symbol of a :class:`SymbolTable` sorted by address: the addresses, and the
    symbol index of each. Sorting 155,000 symbols takes ~50 ms inside gdb, so both arrays
    are kept in the artifact cache under the file's build-id (written to a temp name and
    renamed) and read back in ~1 ms."""

    _MAGIC = b"GDBKD-SYMIDX-1\0\0"

    def __init__(self, addrs, order):
        self.addrs, self.order = addrs, order

    @classmethod
    def of(cls, table):
        from array import array
        n = len(table.syms) // _SYM.size
        path = cls._cache_path(table, n)
        if path is not None:
            try:
                with open(path, "rb") as f:
                    data = f.read()
                if data[:16] == cls._MAGIC and len(data) == 16 + 12 * n:
                    addrs, order = array("Q"), array("I")
                    addrs.frombytes(data[16:16 + 8 * n])
                    order.frombytes(data[16 + 8 * n:])
                    return cls(addrs, order)
            except OSError:
                pass
        vals = memoryview(table.syms)[: n * _SYM.size].cast("Q")[1::3].tolist()
        order = array("I", sorted(range(n), key=vals.__getitem__))
        addrs = array("Q", [vals[i] for i in order])
        if path is not None:
            try:
                from .cache import atomic_write
                with atomic_write(path) as f:
                    f.write(cls._MAGIC + addrs.tobytes() + order.tobytes())
            except OSError:
                pass                      # a read-only cache: the next session sorts again
        return cls(addrs, order)

    @staticmethod
    def _cache_path(table, n):
        try:
            with open(table.path, "rb") as f:
                bid = build_id(f, table.path, table._secs)    # the headers already read
        except (OSError, ElfFormatError):
            return None
        if not bid:
            return None
        from .cache import cache_root
        return cache_root() / "symidx" / f"{bid}-{n}.bin"

    def last_at_or_below(self, addr) -> int:
        import bisect
        return bisect.bisect_right(self.addrs, addr) - 1

    def at(self, j):
        """(address, symbol index) of the J-th symbol by address."""
        return self.addrs[j], self.order[j]


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
        try:
            secs = sections(f, path)
        except ElfFormatError as e:
            raise GdbkdError(f"cannot read {path}: {e}") from None
        for sec in secs:
            if sec.type != SHT_NOBITS and sec.addr and sec.addr <= addr < sec.addr + sec.size:
                f.seek(sec.offset + addr - sec.addr)
                return f.read(min(n, sec.addr + sec.size - addr))
    return None
