"""Address → symbol, source line, inline chain, and "is this kernel text?".

gdb knows every ELF symbol (``info symbol``, which also covers assembler
routines without DWARF such as the exception vectors) and the DWARF blocks
(``gdb.block_for_pc``: functions inlined at that pc) and lines
(``gdb.find_pc_line``). Module addresses whose symbols are not loaded are named
from the module's kallsyms in memory (:mod:`.modsyms`), else
``[module]+offset`` from the module list (``core_layout`` up to 6.3,
``mem[MOD_TEXT]`` from 6.4, via :mod:`.modules`).

Results are cached per address until the symbol files change.
"""

import re

import gdb

from .types import cache_per_symbols, try_symbol_address, vmlinux_symbol_address
from .snapshot import memo

__all__ = ["Sym", "lookup", "describe", "is_text", "text_ranges", "module_ranges",
           "resolve_name", "eval_address"]

_cache = {}
_INFO_RE = re.compile(r"^(\S+?)(?: \+ (\d+))? in section (\S+)(?: of (.+))?$")


_clear = cache_per_symbols(_cache)


class Sym:
    """What is known about one address."""

    __slots__ = ("addr", "name", "offset", "section", "objfile", "file", "line", "inlined",
                 "module")

    def __init__(self, addr):
        self.addr = addr
        self.name = None
        self.offset = 0
        self.section = None
        self.objfile = None
        self.file = None
        self.line = None
        self.inlined = []     # functions inlined at addr, innermost first (not the outer one)
        self.module = None

    @property
    def start(self):
        return self.addr - self.offset if self.name else None

    def label(self) -> str:
        if not self.name:
            return f"{self.addr:#x}"
        s = self.name if not self.offset else f"{self.name}+{self.offset:#x}"
        if self.module and not self.name.startswith("["):
            s += f" [{self.module}]"
        return s

    def where(self) -> str:
        return f"{self.file}: {self.line}" if self.file else ""

    def to_json(self) -> dict:
        return {"addr": f"{self.addr:#x}", "name": self.name, "offset": self.offset,
                "section": self.section, "module": self.module, "file": self.file,
                "line": self.line, "inlined": list(self.inlined)}


def module_ranges() -> list:
    """[(base, end, name)] of loaded modules' core (text) allocations."""
    def f():
        out = []
        try:
            from . import modules
            for mod in modules.for_each_module():
                base, size = modules.module_base_size(mod)
                out.append((base, base + size, modules.module_name(mod)))
        except (gdb.error, gdb.MemoryError, ImportError, AttributeError):
            pass
        return out
    return memo("module_ranges", f)


def text_ranges() -> list:
    """[(lo, hi, what)] of executable kernel memory: core text, init text, modules."""
    def f():
        out = []
        for lo, hi, what in (("_stext", "_etext", "kernel"), ("_sinittext", "_einittext", "init")):
            a, b = vmlinux_symbol_address(lo), vmlinux_symbol_address(hi)
            if a is not None and b is not None and a < b:
                out.append((a, b, what))
        out += [(a, b, "module " + n) for a, b, n in module_ranges()]
        return out
    return memo("text_ranges", f)


def is_text(addr: int) -> bool:
    for lo, hi, _ in text_ranges():
        if lo <= addr < hi:
            return True
    return False


def _info_symbol(addr):
    try:
        out = gdb.execute(f"info symbol {addr:#x}", to_string=True).strip()
    except gdb.error:
        return None
    m = _INFO_RE.match(out.splitlines()[0] if out else "")
    return m


def _prefer_dwarf_name(s, addr):
    """gdb 13 misnames module text by minimal symbols when a module was loaded from a
    relocated copy (an ``init_module`` alias in .init.text shadowed .text): when DWARF
    names a different function, take DWARF's name, offset from that function's start."""
    try:
        blk = gdb.block_for_pc(addr)
    except (RuntimeError, gdb.error):
        return
    fn = None
    while blk is not None and not blk.is_global and not blk.is_static:
        if blk.function is not None:
            fn = blk
        blk = blk.superblock
    if fn is not None and fn.function.name != s.name:
        s.name, s.offset = fn.function.name, addr - fn.start


def lookup(addr: int, want_line=True) -> Sym:
    """Symbol, offset, section, source line and inline chain of ``addr``."""
    addr &= 0xFFFFFFFFFFFFFFFF
    key = (addr, want_line)
    s = _cache.get(key)
    if s is not None:
        return s
    s = Sym(addr)
    m = _info_symbol(addr)
    if m:
        s.name = m.group(1)
        s.offset = int(m.group(2) or 0)
        s.section = m.group(3)
        s.objfile = m.group(4)
    for lo, hi, name in module_ranges():
        if lo <= addr < hi:
            s.module = name
            _prefer_dwarf_name(s, addr)
            if not s.name:
                from .modsyms import module_symbol
                ms = module_symbol(name, addr)
                if ms is not None:
                    s.name, s.offset = ms
                else:
                    s.name = f"[{name}]"
                    s.offset = addr - lo
            break
    if want_line:
        try:
            blk = gdb.block_for_pc(addr)
        except (RuntimeError, gdb.error):
            blk = None
        funcs = []
        while blk is not None and not blk.is_global and not blk.is_static:
            if blk.function is not None:
                funcs.append(blk.function.name)
            blk = blk.superblock
        if len(funcs) > 1:
            s.inlined = funcs[:-1]
        if funcs and not s.name:
            s.name = funcs[-1]
        try:
            sal = gdb.find_pc_line(addr)
            if sal.symtab is not None and sal.line:
                s.file = sal.symtab.filename
                s.line = sal.line
        except (RuntimeError, gdb.error):
            pass
        if s.file is None and s.name and not s.name.startswith("["):
            # e.g. the patchable-entry NOPs before a function's DWARF low_pc: use the
            # symbol's own declaration
            try:
                sym = gdb.lookup_global_symbol(s.name) or gdb.lookup_static_symbol(s.name)
            except gdb.error:
                sym = None
            if sym is not None and sym.symtab is not None and sym.line:
                s.file, s.line = sym.symtab.filename, sym.line
    _cache[key] = s
    return s


def describe(addr: int) -> str:
    """``name+0xoff`` for text/data addresses gdb knows, else the hex number."""
    return lookup(addr, want_line=False).label()


def resolve_name(name: str):
    """Address of a symbol by name (functions, variables, assembler labels), or None.

    For functions gdb answers with the DWARF entry (low_pc), which lies after the
    patchable-function-entry NOPs (ftrace, 5.5+ on arm64); the ELF symbol, as in
    System.map and crash, is a few bytes earlier and is returned instead."""
    a = try_symbol_address(name)
    if a is not None:
        m = _info_symbol(a)
        if m and m.group(1) == name and m.group(2) and int(m.group(2)) <= 16:
            return a - int(m.group(2))
        return a
    try:
        v = gdb.parse_and_eval(f"(unsigned long){name}")
        return int(v) & 0xFFFFFFFFFFFFFFFF
    except gdb.error:
        return None


def eval_address(expr: str) -> int:
    """An address from a user's argument: a hex number (with or without 0x), a symbol (its address),
    or any gdb expression (its value, e.g. ``$sp`` or ``init_task.stack``)."""
    e = expr.strip()
    if re.fullmatch(r"(0[xX])?[0-9a-fA-F]+", e):
        if not (e.isalpha() and try_symbol_address(e) is not None):   # "bad", "add"...
            return int(e, 16)       # crash reads bare address arguments as hex
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", e) and "." not in e:
        try:
            sym = gdb.lookup_global_symbol(e) or gdb.lookup_static_symbol(e)
        except gdb.error:
            sym = None
        if sym is not None and sym.addr_class != gdb.SYMBOL_LOC_CONST:
            a = try_symbol_address(e)
            if a is not None:
                return a
        a = try_symbol_address(e)
        if a is not None:
            return a
    v = gdb.parse_and_eval(e)
    t = v.type.strip_typedefs()
    if t.code == gdb.TYPE_CODE_ARRAY or t.code in (gdb.TYPE_CODE_STRUCT, gdb.TYPE_CODE_UNION):
        return int(v.address) & 0xFFFFFFFFFFFFFFFF
    if t.code == gdb.TYPE_CODE_FUNC:
        return int(v.address) & 0xFFFFFFFFFFFFFFFF
    return int(v.cast(gdb.lookup_type("unsigned long"))) & 0xFFFFFFFFFFFFFFFF
