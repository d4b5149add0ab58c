"""Kernel symbols inside gdb: run-time addresses, KASLR relocation, deferred loading.

A symbol's run-time address is its link address in the vmlinux's ``.symtab`` plus
the offset the symbols are loaded at (no gdb name lookup when one vmlinux symbol
has the name). Live, the KASLR offset is ``$VBAR - &vectors`` (QEMU names the
register ``VBAR``; :func:`gdbkd.arm64.regs.kaslr_from_vbar`). Dumps carry it as VMCOREINFO ``KERNELOFFSET``. Whether the
vmlinux matches the kernel in memory: :mod:`.banner`.
"""

import gdb

from ..errors import GdbkdError
from ..arm64.regs import kaslr_from_vbar
from .symcache import cache_per_symbols

__all__ = ["current_offset", "relocate", "live_vbar_offset", "vmlinux_path", "link_address",
           "symbol_table", "defer_load", "load_deferred", "deferred", "gdb_symbols",
           "symbol_address", "try_symbol_address", "vmlinux_symbol_address"]

_offset = 0
_deferred = None        # (vmlinux path, offset, gdb commands) not run yet: see defer_load
_tables = {}            # vmlinux path -> elfsyms.SymbolTable
_loaded_at = {}         # vmlinux path -> offset its symbols are loaded at (dropped on new objfiles)
cache_per_symbols(_loaded_at)


def symbol_table(path=None):
    """The vmlinux's ``.symtab`` (:class:`gdbkd.elfsyms.SymbolTable`), read once."""
    from ..elfsyms import SymbolTable
    path = path or vmlinux_path()
    st = _tables.get(path)
    if st is None:
        st = _tables[path] = SymbolTable(path)
    return st


def link_address(name: str):
    """Link-time address of NAME if exactly one vmlinux symbol defines it, else None
    (no gdb symbol lookup: gdb 13's first name lookup sorts all 135,000 index names)."""
    try:
        return symbol_table().value(name, unique=True)
    except (GdbkdError, gdb.error):
        return None


def _elf_symbol(path: str, name: str):
    return symbol_table(path).value(name)


def _sections_offset(path: str):
    """Load offset of PATH's symbols from gdb's own section table (no symbol lookup)."""
    out = gdb.execute("maint info sections -all-objects", to_string=True)
    cur = None
    for line in out.splitlines():
        # gdb 13 heads an objfile that shares the exec file's BFD "Exec file:", others "Object file:"
        if line.startswith(("Object file:", "Exec file:")):
            cur = line.split("`", 1)[1].rsplit("'", 1)[0] if "`" in line else None
            continue
        if cur != path:
            continue
        parts = line.split()
        if len(parts) >= 5 and parts[4] == ".text" and "->" in parts[1]:
            start = int(parts[1].split("->")[0], 16)
            link = symbol_table(path).sections.get(".text", (None,))[0]
            return None if link is None else start - link
    return None


def defer_load(path: str, offset: int, commands):
    """Let gdb load the vmlinux at PATH (and the modules' symbol files) only when
    something needs gdb's own symbols: COMMANDS (gdb commands, run quietly in order)
    load them. Meanwhile :func:`vmlinux_path` and :func:`current_offset` answer from
    PATH and OFFSET, the model reads symbols from the file's ``.symtab`` and layouts
    from the offsets cache, and :func:`load_deferred` runs COMMANDS the first time a
    gdb symbol, type, block or line is asked for (:func:`gdb_symbols`, symbolize.py)
    or a kd command not in ``kdnames.SYMBOL_FREE_COMMANDS`` starts. ``gdbkd core
    --batch`` with only kd -ex commands, the first of them symbol-free, uses it: gdb's
    minimal symbols of a Debian vmlinux take ~0.14 s, most of a `kd kmem -s`."""
    global _deferred, _offset
    _deferred = (path, offset, list(commands))
    _offset = offset


def deferred() -> bool:
    """Whether the vmlinux's symbols are still waiting to be loaded into gdb."""
    return _deferred is not None


def load_deferred():
    """Load into gdb the symbols :func:`defer_load` put off (nothing if none)."""
    global _deferred
    if _deferred is None:
        return
    cmds = _deferred[2]
    _deferred = None            # first: the commands' own events may come back here
    for c in cmds:
        gdb.execute(c, to_string=True)


def gdb_symbols():
    """Make sure gdb has the vmlinux's symbols (``gdbkd core`` may have put off loading
    them: :func:`defer_load`). Every use of gdb's symbols, types, blocks or lines by kd
    goes through here or through :func:`gdbkd.kernel.types.lookup_type`."""
    load_deferred()


def current_offset() -> int:
    """The offset the vmlinux symbols are loaded at now (whoever loaded them: gdbkd,
    `symbol-file -o`, the user): gdb's .text address minus the file's."""
    if _deferred is not None:
        return _deferred[1]
    try:
        path = vmlinux_path()
        if path in _loaded_at:
            return _loaded_at[path]
        off = _sections_offset(path)
        if off is None:
            link = _elf_symbol(path, "_text")
            if link is None:
                return _offset
            off = int(gdb.parse_and_eval("(unsigned long)&_text")) - link
        _loaded_at[path] = off
        return off
    except (gdb.error, OSError, GdbkdError):
        return _offset


def vmlinux_path() -> str:
    if _deferred is not None:
        return _deferred[0]
    objs = [o for o in gdb.objfiles() if o.filename and not o.filename.endswith(".ko")]
    if not objs:
        raise gdb.GdbError("no vmlinux loaded (gdb-multiarch VMLINUX, or `file VMLINUX`)")
    return objs[0].filename


def symbol_address(name: str) -> int:
    """Run-time address of a kernel symbol: from the vmlinux's .symtab plus the
    KASLR offset when one vmlinux symbol has that name (no gdb name lookup), else
    gdb's (modules, static names defined in several files)."""
    link = link_address(name)
    if link is not None:
        return (link + current_offset()) & 0xFFFFFFFFFFFFFFFF
    gdb_symbols()
    return int(gdb.parse_and_eval(f"(unsigned long)&{name}"))


def try_symbol_address(name: str):
    try:
        return symbol_address(name)
    except gdb.error:
        return None


def vmlinux_symbol_address(name: str):
    """Run-time address of a symbol of the kernel image itself, or None when the
    vmlinux's .symtab has none of that name: probes for symbols that only some
    kernel versions have ("vabits_actual", "cpu_online_bits", ...) cost nothing
    instead of a failed gdb lookup (~0.1 s the first time)."""
    try:
        st = symbol_table()
        vals = st.values(name) if st.syms else None
    except (gdb.error, GdbkdError):      # no vmlinux objfile / unreadable: ask gdb
        vals = None
    if vals is not None and len(set(vals)) == 1:
        return (vals[0] + current_offset()) & 0xFFFFFFFFFFFFFFFF
    if vals is not None and not vals:
        return None
    return try_symbol_address(name)


def live_vbar_offset():
    """KASLR offset relative to the currently loaded symbols, from some CPU's $VBAR
    (:func:`gdbkd.arm64.regs.kaslr_from_vbar`: a CPU in user mode or in the KPTI entry
    trampoline proves nothing and is skipped). Returns None if no CPU shows the kernel's
    own vectors."""
    load_deferred()
    vectors = int(gdb.parse_and_eval("(unsigned long)&vectors"))
    from .selection import selection
    from .sysregs import sysreg
    sel = gdb.selected_thread()
    threads = sorted(gdb.selected_inferior().threads(), key=lambda t: t.num)
    for t in [sel] + [t for t in threads if t != sel]:
        if t is None:
            continue
        with selection(t):
            delta = kaslr_from_vbar(sysreg("VBAR"), vectors)
        if delta is not None:
            return delta
    return None


def relocate(offset: int):
    """Reload the vmlinux symbols at ``offset`` from the link address (absolute)."""
    global _offset
    if _deferred is not None and offset != _deferred[1]:
        load_deferred()
    if offset == current_offset():
        _offset = offset
        return False
    path = vmlinux_path()
    gdb.execute(f"symbol-file -o {offset:#x} {path}", to_string=True)
    _offset = offset
    return True
