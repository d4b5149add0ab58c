"""Module symbols from the module's own kallsyms in guest memory (no .ko needed).

Every loaded module keeps an ELF symbol table for kallsyms: ``mod->kallsyms``
(``struct mod_kallsyms {Elf_Sym *symtab; unsigned int num_symtab; char *strtab;
char *typetab;}``, since 4.6; before that ``mod->symtab/num_symtab/strtab``).
``st_value`` holds the final address. This names module frames the way
``/proc/kallsyms`` does even when gdb has not loaded the module's .ko.
"""

import gdb

from .types import read_bytes, has_field
from .snapshot import memo

__all__ = ["module_symbols", "module_symbol"]

_ELF64_SYM = 24
STT_FUNC, STT_OBJECT, STT_NOTYPE = 2, 1, 0


def _read_syms(mod):
    if has_field(mod.type.target(), "kallsyms"):
        ks = mod["kallsyms"]
        if int(ks) == 0:
            return []
        symtab, n, strtab = int(ks["symtab"]), int(ks["num_symtab"]), int(ks["strtab"])
    else:
        symtab, n, strtab = int(mod["symtab"]), int(mod["num_symtab"]), int(mod["strtab"])
    if not symtab or not n or n > 1 << 20:
        return []
    raw = read_bytes(symtab, n * _ELF64_SYM)
    entries = []
    max_name = 0
    for i in range(n):
        o = i * _ELF64_SYM
        name = int.from_bytes(raw[o:o + 4], "little")
        info = raw[o + 4]
        value = int.from_bytes(raw[o + 8:o + 16], "little")
        size = int.from_bytes(raw[o + 16:o + 24], "little")
        if value and (info & 0xF) in (STT_FUNC, STT_OBJECT, STT_NOTYPE):
            entries.append((value, size, name))
            max_name = max(max_name, name)
    if not entries:
        return []
    strs = read_bytes(strtab, max_name + 128)
    out = []
    for value, size, name in entries:
        s = strs[name:strs.index(b"\0", name)] if b"\0" in strs[name:] else strs[name:name + 64]
        s = s.decode("utf-8", "replace")
        if s and not s.startswith(("$x", "$d", "__UNIQUE_ID")):
            out.append((value, size, s))
    out.sort()
    return out


def module_symbols() -> dict:
    """{module name: [(address, size, symbol)]} for every loaded module (cached per stop)."""
    def f():
        res = {}
        try:
            from . import modules
            for mod in modules.for_each_module():
                try:
                    res[modules.module_name(mod)] = _read_syms(mod)
                except (gdb.error, gdb.MemoryError):
                    res[modules.module_name(mod)] = []
        except (gdb.error, gdb.MemoryError, ImportError):
            pass
        return res
    return memo("module_symbols", f)


def module_symbol(module: str, addr: int):
    """(name, offset) of the module symbol at or below ``addr``, or None."""
    syms = module_symbols().get(module) or []
    best = None
    lo, hi = 0, len(syms)
    while lo < hi:
        mid = (lo + hi) // 2
        if syms[mid][0] <= addr:
            best = syms[mid]
            lo = mid + 1
        else:
            hi = mid
    if best is None:
        return None
    value, size, name = best
    if (size and addr >= value + size) or addr - value > 0x100000:
        return None                  # past the end of the nearest symbol
    return name, addr - value
