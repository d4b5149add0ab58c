"""Loaded kernel modules' symbols inside gdb.

The modules themselves (the list, names, bases, sections, state) are the gdb-free
model's ``Module`` objects (gdbkd/model/modules.py, which has the versions); this
module only loads their symbols into gdb. Symbols are loaded the way that works
with gdb 13 (``add-symbol-file -s`` mis-relocates a module's DWARF there): an
objcopy copy of the .ko with every section address changed to where the kernel put
it (gdbkd/kmods.py), then ``add-symbol-file`` of that copy. Modules inserted later are caught by a silent breakpoint on
``do_init_module`` (as scripts/gdb's lx-symbols does).
"""

import os

import gdb

from .. import kmods
from ..textutil import escape

__all__ = ["has_symbols", "find_ko", "load_module_symbols", "load_all_module_symbols", "search_dirs",
           "watch_module_loads", "register_events", "loaded"]

search_dirs = [d for d in os.environ.get("GDBKD_MODULES_PATH", "").split(os.pathsep) if d]
loaded = {}          # module name -> (base, objfile path)
_watch = None


def has_symbols(name: str) -> bool:
    """Whether gdb has this module's symbols: loaded by kd, or by whoever added a
    gdbkd relocated copy (``gdbkd core`` loads them before kd is sourced)."""
    if name in loaded:
        return True
    stems = (f"{name}-", f"{name.replace('_', '-')}-")
    for o in gdb.objfiles():
        fn = o.filename or ""
        if "/gdbkd-ko-" in fn and os.path.basename(fn).startswith(stems):
            return True
    return False


def find_ko(name: str, extra_dirs=()):
    return kmods.find_ko(name, list(extra_dirs) + search_dirs)


def _add_symbol_file(name, base, copy, quiet=True):
    if any(o.filename == str(copy) for o in gdb.objfiles()):    # loaded by gdbkd core already
        loaded[name] = (base, str(copy))
        return False
    if name in loaded:
        try:
            gdb.execute(f"remove-symbol-file {loaded[name][1]}", to_string=True)
        except gdb.error:
            pass
    gdb.execute(f"add-symbol-file {copy}", to_string=quiet)
    loaded[name] = (base, str(copy))
    return True


def load_module_symbols(mod, ko=None, quiet=True) -> str:
    """Load the symbols of one module (a gdbkd/model/modules.py ``Module``); returns a
    one-line status (which .ko for which module, or why none: gdbkd/kmods.py)."""
    from .memory import kernel
    name, base = mod.name, mod.base
    if ko is None and name in loaded and loaded[name][0] == base:
        return f"{escape(name)}: symbols already loaded"
    plans = kmods.plan_modules(kernel(), search_dirs, only=name)
    if not plans:
        return f"{escape(name)}: not on the module list"
    p = plans[0]
    if ko is not None:
        copy, status = kmods.symbol_file(name, p.base, mod.sections, search_dirs, ko,
                                         build_id=p.build_id, live=_live_ranges(name))
    else:
        copy, status = p.copy, p.status
    if copy is None:
        return status
    if not _add_symbol_file(name, p.base, copy, quiet):
        return f"{escape(name)}: symbols already loaded"
    return status


def _live_ranges(name):
    from .memory import kernel
    from ..model.kallsyms import module_symbols
    ms = module_symbols(kernel()).get(name)
    return (ms.core + ms.init) if ms is not None and (ms.core or ms.init) else None


def load_all_module_symbols(extra_dirs=()):
    """Load every loaded module's symbols: [one-line status per module]."""
    from .memory import kernel
    dirs = list(extra_dirs) + search_dirs
    out = []
    for p in kmods.plan_modules(kernel(), dirs):
        if p.copy is None:
            out.append(p.status)
        elif p.name in loaded and loaded[p.name] == (p.base, str(p.copy)):
            out.append(f"{escape(p.name)}: symbols already loaded")
        else:
            _add_symbol_file(p.name, p.base, p.copy)
            out.append(p.status)
    return out


class _ModuleLoadBreakpoint(gdb.Breakpoint):
    """Silent breakpoint on do_init_module: load the new module's symbols, continue."""

    def __init__(self):
        super().__init__("do_init_module", type=gdb.BP_BREAKPOINT, internal=True)
        self.silent = True

    def stop(self):
        from .memory import kernel
        from ..model.modules import read_module
        try:
            try:
                addr = int(gdb.parse_and_eval("mod"))
            except gdb.error:
                addr = int(gdb.parse_and_eval("$x0"))
            msg = load_module_symbols(read_module(kernel(), addr & 0xFFFFFFFFFFFFFFFF))
            gdb.write(f"kd: module {msg}\n")
        except Exception as e:  # boundary: never stop the guest because of symbol loading
            gdb.write(f"kd: module load hook: {e}\n")
        return False


def watch_module_loads():
    global _watch
    if _watch is None or not _watch.is_valid():
        _watch = _ModuleLoadBreakpoint()
    return _watch


def register_events():
    pass
