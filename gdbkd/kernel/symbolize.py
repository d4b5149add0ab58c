"""Address → symbol, source line, inline chain, and "is this kernel text?".

gdb knows every ELF symbol (``info symbol``, which also covers assembler
routines without DWARF such as the exception vectors) and the DWARF blocks
(``gdb.block_for_pc``: functions inlined at that pc) and lines
(``gdb.find_pc_line``). A kernel-image address asked for without its line is first
looked up in the vmlinux's own symbol table, which answers where it settles what
``info symbol`` would say (gdbkd/elfsyms.py ``SymbolTable.containing``: a sized
symbol covering the address, alone at its address, nothing between): kd search and
kmem name their hits that way without gdb's symbols.

Module addresses are named from the module's own kallsyms in memory
(gdbkd/model/kallsyms.py), the table the kernel itself prints oopses with; an
address in no symbol is ``[module]+offset``. DWARF (file:line, inlined
functions) is used for a module address only when it comes from that
module's own symbol file and names the same function as kallsyms: a stale or
foreign symbol file (another module's freed ``.init.text`` once lay where this
module's code is now) would otherwise name it ``init_module``. Without DWARF a
module address says so (``Sym.debuginfo``). An address in a freed init region
belongs to no module and gets no module name.

Results are cached per address until the symbol files change.
"""

import re

import gdb

from .symcache import cache_per_symbols
from .symbols import try_symbol_address, vmlinux_symbol_address, gdb_symbols
from .snapshot import stop_cached

__all__ = ["Sym", "lookup", "describe", "is_text", "text_ranges", "module_ranges",
           "resolve_name", "eval_address"]

_cache = {}
_INFO_RE = re.compile(r"^(\S+?)(?: \+ (\d+))? in section (\S+)(?: of (.+))?$")


_clear = cache_per_symbols(_cache)


class Sym:
    """What is known about one address."""

    __slots__ = ("addr", "name", "offset", "section", "objfile", "file", "line", "inlined",
                 "module", "debuginfo")

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
        self.debuginfo = None  # module addresses: "dwarf", or why not ("kallsyms only: …")

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
        return {"addr": self.addr, "name": self.name, "offset": self.offset,
                "section": self.section, "module": self.module, "file": self.file,
                "line": self.line, "inlined": list(self.inlined), "debuginfo": self.debuginfo}


def _kernel():
    from .memory import kernel
    return kernel()


def module_ranges() -> list:
    """[(lo, hi, name)] of the memory loaded modules own now (core, and init while it
    runs)."""
    from ..model.kallsyms import module_ranges as ranges
    from ..model.reader import MemoryFault
    try:
        return [(lo, hi, name) for lo, hi, name, _kind in ranges(_kernel())]
    except MemoryFault:
        return []


@stop_cached
def text_ranges() -> list:
    """[(lo, hi, what)] of executable kernel memory: core text, init text, modules."""
    out = []
    for lo, hi, what in (("_stext", "_etext", "kernel"), ("_sinittext", "_einittext", "init")):
        a, b = vmlinux_symbol_address(lo), vmlinux_symbol_address(hi)
        if a is not None and b is not None and a < b:
            out.append((a, b, what))
    out += [(a, b, "module " + n) for a, b, n in module_ranges()]
    return out


def is_text(addr: int) -> bool:
    for lo, hi, _ in text_ranges():
        if lo <= addr < hi:
            return True
    return False


_NONE = ("", 0, None)


def _image_symbol(addr):
    """(name, offset, section) of a kernel-image address from the vmlinux's own symbol
    table, when that settles what gdb's ``info symbol`` says (gdbkd/elfsyms.py
    ``SymbolTable.containing``), else None: no gdb symbol lookup, and no need for gdb
    to have loaded the vmlinux (``gdbkd core`` may put that off). :data:`_NONE` for an
    address outside the image while gdb has not loaded any symbols: then the vmlinux
    cannot name it and no module's symbol file may (lookup() drops those anyway)."""
    from .symbols import symbol_table, current_offset, deferred
    from ..errors import GdbkdError
    lo, hi = vmlinux_symbol_address("_text"), vmlinux_symbol_address("_end")
    if lo is None or hi is None or not lo <= addr < hi:
        return _NONE if deferred() and lo is not None and hi is not None else None
    try:
        return symbol_table().containing((addr - current_offset()) & 0xFFFFFFFFFFFFFFFF)
    except (gdb.error, GdbkdError, OSError):
        return None


def _info_symbol(addr):
    gdb_symbols()
    try:
        out = gdb.execute(f"info symbol {addr:#x}", to_string=True).strip()
    except gdb.error:
        return None
    m = _INFO_RE.match(out.splitlines()[0] if out else "")
    return m


def _function_block(addr):
    """(outermost function block, [inlined function names innermost first]) of gdb's
    DWARF at ``addr``; (None, [])."""
    gdb_symbols()
    try:
        blk = gdb.block_for_pc(addr)
    except (RuntimeError, gdb.error):
        return None, []
    funcs = []
    fn = None
    while blk is not None and not blk.is_global and not blk.is_static:
        if blk.function is not None:
            funcs.append(blk.function.name)
            fn = blk
        blk = blk.superblock
    return fn, funcs[:-1]


def _module_objfile(fn_block, module: str) -> bool:
    """Whether this DWARF function comes from MODULE's own symbol file (a gdbkd
    relocated copy, ``gdbkd-ko-UID/NAME-KEY.ko``, or a file the user added named
    after the module)."""
    try:
        path = fn_block.function.symtab.objfile.filename or ""
    except (AttributeError, RuntimeError):
        return False
    base = path.rsplit("/", 1)[-1]
    stems = (f"{module}-", f"{module.replace('_', '-')}-", f"{module}.", f"{module.replace('_', '-')}.")
    return base.startswith(stems)


def _same_function(dwarf_name: str, ks_name: str) -> bool:
    return dwarf_name == ks_name or dwarf_name == ks_name.split(".")[0]


def _own_elf_symbol(s, addr, module) -> bool:
    """Name ADDR from MODULE's own loaded symbol file's ELF symbols (gdb's ``info
    symbol``, accepted only from that module's file)."""
    m = _info_symbol(addr)
    if not m or not m.group(4):
        return False
    base = m.group(4).rsplit("/", 1)[-1]
    if not base.startswith((f"{module}-", f"{module.replace('_', '-')}-")):
        return False
    s.name, s.offset, s.section = m.group(1), int(m.group(2) or 0), m.group(3)
    return True


def _module_lookup(s, addr, want_line) -> bool:
    """Fill S for a module address from kallsyms (+ the module's own DWARF); False if
    no module owns ADDR."""
    from ..model.kallsyms import symbolize as ks_symbolize
    from ..model.reader import MemoryFault
    try:
        hit = ks_symbolize(_kernel(), addr)
    except MemoryFault:
        return False
    if hit is None:
        return False
    module, ms, in_init = hit
    s.module = module
    s.section = ".init.text" if in_init else None
    s.objfile = None
    fn, inlined = _function_block(addr)
    dwarf = fn is not None and _module_objfile(fn, module)
    if ms is not None:
        s.name, s.offset = ms.name, addr - ms.addr
        if dwarf and not _same_function(fn.function.name, ms.name):
            dwarf = False
            s.debuginfo = (f"DWARF names {fn.function.name}, kallsyms {ms.name}: the loaded "
                           f"symbol file is not this module's build; DWARF ignored")
    elif dwarf:
        s.name, s.offset = fn.function.name, addr - fn.start
    elif _own_elf_symbol(s, addr, module):
        pass              # data: kallsyms keeps text only without CONFIG_KALLSYMS_ALL
    else:
        lo = next((a for a, b, n in module_ranges() if n == module and a <= addr < b), addr)
        s.name, s.offset = f"[{module}]", addr - lo
    if dwarf:
        s.debuginfo = "dwarf"
        if want_line:
            s.inlined = inlined
            try:
                sal = gdb.find_pc_line(addr)
                if sal.symtab is not None and sal.line:
                    s.file, s.line = sal.symtab.filename, sal.line
            except (RuntimeError, gdb.error):
                pass
    elif s.debuginfo is None:
        s.debuginfo = "no DWARF (module symbols not loaded): name from the module's kallsyms"
    return True


def lookup(addr: int, want_line=True) -> Sym:
    """Symbol, offset, section, source line and inline chain of ``addr``."""
    addr &= 0xFFFFFFFFFFFFFFFF
    key = (addr, want_line)
    if addr >> 63:
        # modules come and go while the target runs: their names are kept per stop
        stop = _kernel().stop_store()
        s = stop.get(("symbolize", key))
        if s is not None:
            return s
        s = Sym(addr)
        if _module_lookup(s, addr, want_line):
            stop[("symbolize", key)] = s
            return s
    s = _cache.get(key)
    if s is not None:
        return s
    s = Sym(addr)
    hit = None if want_line else _image_symbol(addr)
    if hit is not None:
        if hit is not _NONE:
            s.name, s.offset, s.section = hit
        _cache[key] = s
        return s
    m = _info_symbol(addr)
    if m and "/gdbkd-ko-" in (m.group(4) or ""):
        m = None            # a module symbol file, but no module owns this memory now
    if m:
        s.name = m.group(1)
        s.offset = int(m.group(2) or 0)
        s.section = m.group(3)
        s.objfile = m.group(4)
    if want_line:
        fn, inlined = _function_block(addr)
        if fn is not None and "/gdbkd-ko-" in (fn.function.symtab.objfile.filename or ""):
            fn, inlined = None, []
        if fn is not None:
            s.inlined = inlined
            if not s.name:
                s.name = fn.function.name
        try:
            sal = gdb.find_pc_line(addr)
            if sal.symtab is not None and sal.line and "/gdbkd-ko-" not in \
                    (sal.symtab.objfile.filename or ""):
                s.file = sal.symtab.filename
                s.line = sal.line
        except (RuntimeError, gdb.error):
            pass
        if (s.file is None or (fn is None and (s.offset or 0) < 16)) and s.name \
                and not s.name.startswith("["):
            # e.g. the patchable-entry NOPs before a function's DWARF low_pc: use the
            # symbol's own declaration (the line table may give them the previous
            # function's last line: sysrq_handle_crash+0 was "sysrq.c: 399", moom_callback)
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
    gdb_symbols()
    try:
        v = gdb.parse_and_eval(f"(unsigned long){name}")
        return int(v) & 0xFFFFFFFFFFFFFFFF
    except gdb.error:
        return _kallsyms_address(name)


def _kallsyms_address(name: str):
    """A module symbol's address from the modules' kallsyms (no .ko loaded), or None."""
    from ..model.kallsyms import module_symbols
    from ..model.reader import MemoryFault
    try:
        tables = module_symbols(_kernel())
    except MemoryFault:
        return None
    for ms in tables.values():
        for sym in ms.syms:
            if sym.name == name and sym.name not in ("init_module", "cleanup_module"):
                return sym.addr
    return None


def eval_address(expr: str) -> int:
    """An address from a user's argument: a hex number (with or without 0x), a symbol (its address),
    or any gdb expression (its value, e.g. ``$sp`` or ``init_task.stack``)."""
    e = expr.strip()
    if re.fullmatch(r"(0[xX])?[0-9a-fA-F]+", e):
        if not (e.isalpha() and try_symbol_address(e) is not None):   # "bad", "add"...
            return int(e, 16)       # crash reads bare address arguments as hex
    gdb_symbols()
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
