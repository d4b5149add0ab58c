"""Module symbols from the module's own kallsyms in memory, without gdb and without a .ko.

Every loaded module keeps the ELF symbols kallsyms shows: ``mod->kallsyms``
points to ``struct mod_kallsyms {Elf_Sym *symtab; unsigned int num_symtab;
char *strtab; char *typetab;}`` (since 4.6, commit 8244062ef1e5; 5.10–6.12
here). ``st_value`` holds the final run-time address. Before ``typetab`` (v5.2,
commit 1c7651f43777, "kallsyms: store type information in its own array") the
type letter was written over ``st_size`` (the course's 5.0): the sizes are then
unknown, and a symbol ends where the next one starts, as the kernel's own
``get_ksymbol`` of those versions reckons it. While the module's init
runs, ``kallsyms`` is the whole table (init symbols included); once init is
done (``do_init_module``) it is ``&mod->core_kallsyms``, which keeps only the
symbols in core memory — this is what crash (``store_module_kallsyms``) and
drgn (``module_kallsyms``) read too.

Which memory a module owns: ``core_layout`` / ``init_layout`` (``base``,
``size``) up to 6.3; from 6.4 (commit ac3b43283923) ``mem[MOD_*]`` with
``MOD_TEXT, MOD_DATA, MOD_RODATA, MOD_RO_AFTER_INIT`` (core) and
``MOD_INIT_TEXT, MOD_INIT_DATA, MOD_INIT_RODATA`` (init). After init the init
allocations are freed and their base/size cleared, so an address in a freed
init region belongs to no module any more — and may since have been reused by
a later module (this is how a stale symbol file names another module's code
``init_module``).

A module's identity: its GNU build-id, in its ``.note.gnu.build-id`` section
(SHF_ALLOC, so loaded in core memory; its address is in ``mod->sect_attrs``).
It matches the build-id of the .ko file the module was loaded from, which is
how ``gdbkd core`` and ``kd symbols`` find a .ko without being told where it is.

Nothing here imports gdb; everything takes a :class:`gdbkd.model.kernel.Kernel`.
"""

import bisect
from dataclasses import dataclass

from .kernel import per_stop
from .modules import module_list
from .reader import MemoryFault

__all__ = ["ModSym", "ModuleSymbols", "module_symbols", "module_ranges", "module_at",
           "symbolize", "module_build_id", "note_build_id", "ALIASES"]

SHN_UNDEF = 0
STT_NOTYPE, STT_OBJECT, STT_FUNC = 0, 1, 2
# module_init()/module_exit() make these aliases of the module's own init/exit functions
ALIASES = ("init_module", "cleanup_module")
MOD_TEXT, MOD_INIT_TEXT = 0, 4          # enum mod_mem_type, 6.4+
_CORE_MEM = range(0, 4)
_INIT_MEM = range(4, 7)


@dataclass(frozen=True)
class ModSym:
    addr: int
    size: int
    name: str
    type: str          # kallsyms type letter ("t", "T", "d", ...), "?" if unknown
    binding: int       # STB_LOCAL 0, STB_GLOBAL 1, STB_WEAK 2

    def contains(self, a: int) -> bool:
        return self.addr <= a < self.addr + max(self.size, 1)


class ModuleSymbols:
    """One module's kallsyms table, sorted by address; ``core`` and ``init`` are the
    [(lo, hi)] memory ranges the module owns now."""

    def __init__(self, module, syms, core, init, reason=None):
        self.module = module
        self.syms = syms
        self.core = core
        self.init = init
        self.reason = reason           # why the table is empty, or None
        self._addrs = [s.addr for s in syms]

    def owns(self, a: int) -> bool:
        return any(lo <= a < hi for lo, hi in self.core + self.init)

    def in_init(self, a: int) -> bool:
        return any(lo <= a < hi for lo, hi in self.init)

    def at(self, a: int):
        """The symbol whose [addr, addr + size) holds ``a`` (a sized symbol; the best
        name when several start at the same address: not an init/cleanup alias, a
        function before other types), or None."""
        i = bisect.bisect_right(self._addrs, a)
        cands = []
        for j in range(i - 1, -1, -1):
            s = self.syms[j]
            if cands and s.addr < cands[0].addr:
                break
            if s.size and s.addr <= a < s.addr + s.size:
                cands.append(s)
            elif a - s.addr > 1 << 24:
                break
        return min(cands, key=_rank) if cands else None


def _rank(s: ModSym):
    return (s.name in ALIASES, s.size == 0, s.type.lower() != "t")


def _mem_ranges(k, f: dict, lay):
    """(core ranges, init ranges) of the module whose decoded struct is ``f``."""
    core, init = [], []
    if "core_layout.base" in f:
        if f["core_layout.base"] and f.get("core_layout.size"):
            core.append((f["core_layout.base"], f["core_layout.base"] + f["core_layout.size"]))
        if f.get("init_layout.base") and f.get("init_layout.size"):
            init.append((f["init_layout.base"], f["init_layout.base"] + f["init_layout.size"]))
        return core, init
    if "mem" in f:
        msize = k.sizeof("struct module_memory")
        mlay = k.layout("struct module_memory")
        if not msize or "base" not in mlay or "size" not in mlay:
            return core, init
        raw = f["mem"]
        for i in range(len(raw) // msize):
            m = mlay.decode(raw, i * msize)
            if m["base"] and m["size"]:
                (core if i in _CORE_MEM else init).append((m["base"], m["base"] + m["size"]))
    return core, init


def _read_table(k, kallsyms_ptr: int):
    """[ModSym] of the ``struct mod_kallsyms`` at ``kallsyms_ptr``."""
    r = k.reader
    ks = k.layout("struct mod_kallsyms").read(r, kallsyms_ptr)
    symtab, n, strtab = ks.get("symtab", 0), ks.get("num_symtab", 0), ks.get("strtab", 0)
    typetab = ks.get("typetab", 0)
    if not symtab or not n or not strtab:
        return [], "the module's kallsyms table is empty"
    if n > 1 << 20:
        return [], f"num_symtab = {n}: not a symbol table"
    slay = k.layout("struct elf64_sym")
    ssize = k.sizeof("struct elf64_sym") or 24
    raw = r.read(symtab, n * ssize)
    types = r.try_read(typetab, n) if typetab else None
    ents = []
    for i in range(n):
        e = slay.decode(raw, i * ssize)
        if e.get("st_shndx", 1) == SHN_UNDEF or not e.get("st_value"):
            continue
        if e.get("st_info", 0) & 0xF not in (STT_NOTYPE, STT_OBJECT, STT_FUNC):
            continue
        ents.append((i, e))
    if not ents:
        return [], None
    top = max(e["st_name"] for _, e in ents)
    strs = r.read(strtab, top + 1) + (r.try_read(strtab + top + 1, 256) or b"")
    out = []
    for i, e in ents:
        o = e["st_name"]
        end = strs.find(b"\0", o)
        name = strs[o:end if end >= 0 else len(strs)].decode("utf-8", "replace")
        if not name or name.startswith(("$x", "$d", "__UNIQUE_ID")):
            continue
        size = e.get("st_size", 0)
        if typetab:
            t = chr(types[i]) if types and 32 < types[i] < 127 else "?"
        else:                       # before v5.2: st_size holds the type letter
            t, size = (chr(size) if 32 < size < 127 else "?"), 0
        out.append(ModSym(e["st_value"], size, name, t, e.get("st_info", 0) >> 4))
    out.sort(key=lambda s: (s.addr, _rank(s)))
    if not typetab:
        out = _sizes_to_next(out)
    return out, None


def _sizes_to_next(syms):
    """``syms`` (sorted) with each size reaching the next higher symbol's address (the last
    keeps 0: unknown), for tables whose sizes the kernel overwrote (before v5.2)."""
    starts = sorted({s.addr for s in syms})
    nxt = dict(zip(starts, starts[1:]))
    return [ModSym(s.addr, nxt[s.addr] - s.addr, s.name, s.type, s.binding) if s.addr in nxt else s
            for s in syms]


@per_stop
def module_symbols(k) -> dict:
    """{module name: ModuleSymbols} of every loaded module (one read of each table)."""
    mods, _stop = module_list(k)
    lay = k.layout("struct module")
    out = {}
    for m in mods:
        try:
            f = lay.read(k.reader, m.addr)
        except MemoryFault as e:
            out[m.name] = ModuleSymbols(m, [], [], [], f"struct module unreadable: {e.reason}")
            continue
        core, init = _mem_ranges(k, f, lay)
        if not core and m.base and m.size:
            core = [(m.base, m.base + m.size)]
        syms, reason = [], None
        if "kallsyms" not in f:
            reason = "this kernel's struct module has no kallsyms member"
        elif not f["kallsyms"]:
            reason = "mod->kallsyms is NULL"
        else:
            try:
                syms, reason = _read_table(k, f["kallsyms"])
            except MemoryFault as e:
                syms, reason = [], f"kallsyms unreadable: {e.reason}"
        out[m.name] = ModuleSymbols(m, syms, core, init, reason)
    return out


def module_ranges(k) -> list:
    """[(lo, hi, module name, "core"|"init")] of the memory every module owns now."""
    out = []
    for name, ms in module_symbols(k).items():
        out += [(lo, hi, name, "core") for lo, hi in ms.core]
        out += [(lo, hi, name, "init") for lo, hi in ms.init]
    return sorted(out)


def module_at(k, addr: int):
    """The ModuleSymbols of the module owning ``addr``, or None."""
    for ms in module_symbols(k).values():
        if ms.owns(addr):
            return ms
    return None


def symbolize(k, addr: int):
    """``(module name, ModSym or None, in_init)`` for an address a module owns, else None.
    The symbol is None when no kallsyms symbol covers the address."""
    ms = module_at(k, addr)
    if ms is None:
        return None
    return ms.module.name, ms.at(addr), ms.in_init(addr)


def note_build_id(raw: bytes):
    """The build-id (hex) in an ELF note section's bytes, or None."""
    o = 0
    while o + 12 <= len(raw):
        namesz = int.from_bytes(raw[o:o + 4], "little")
        descsz = int.from_bytes(raw[o + 4:o + 8], "little")
        ntype = int.from_bytes(raw[o + 8:o + 12], "little")
        name_end = o + 12 + ((namesz + 3) & ~3)
        desc = raw[name_end:name_end + descsz]
        if ntype == 3 and raw[o + 12:o + 12 + namesz].rstrip(b"\0") == b"GNU" and len(desc) == descsz:
            return desc.hex()
        o = name_end + ((descsz + 3) & ~3)
        if namesz == 0 and descsz == 0:
            break
    return None


def module_build_id(k, module):
    """The GNU build-id of a loaded module (a :class:`gdbkd.model.modules.Module`), read
    from its ``.note.gnu.build-id`` section in memory; None if it has none."""
    a = module.sections.get(".note.gnu.build-id")
    if not a:
        return None
    raw = k.reader.try_read(a, 64)
    return note_build_id(raw) if raw else None
