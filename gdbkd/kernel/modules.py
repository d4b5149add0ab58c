"""Loaded kernel modules and their symbols inside gdb.

Module list: the global ``modules`` list_head, entries linked by
``struct module.list``. Section addresses come from ``mod->sect_attrs``:
since v5.8 (commit ed66f991bb19, "module: Refactor section attr into bin
attribute") each ``struct module_sect_attr`` is ``{struct bin_attribute battr;
unsigned long address;}`` with the name in ``battr.attr.name``; before that
``{struct module_attribute mattr; char *name; unsigned long address;}``.
Base/size: ``core_layout.base/size`` up to 6.3, ``mem[MOD_TEXT]`` from 6.4
(commit ac3b43283923, "module: replace module_layout with module_memory").

Symbols are loaded the way that works with gdb 13 (``add-symbol-file -s``
mis-relocates a module's DWARF there): an objcopy copy of the .ko with every
section address changed to where the kernel put it (gdbkd/kmods.py), then
``add-symbol-file`` of that copy. Modules inserted later are caught by a silent breakpoint on
``do_init_module`` (as scripts/gdb's lx-symbols does).
"""

import os

import gdb

from .types import lookup_type, has_field
from .memory import read_cstring
from .. import kmods
from ..textutil import escape

__all__ = ["has_symbols", "for_each_module", "module_damage", "module_name", "module_base_size", "module_sections",
           "find_ko", "load_module_symbols", "load_all_module_symbols", "search_dirs",
           "watch_module_loads", "register_events", "loaded"]

search_dirs = [d for d in os.environ.get("GDBKD_MODULES_PATH", "").split(os.pathsep) if d]
loaded = {}          # module name -> (base, objfile path)
_watch = None


def for_each_module():
    """Every ``struct module *`` on the list, each once: the model's walk
    (gdbkd/model/modules.py), which says what is wrong with a damaged list
    (:func:`module_damage`)."""
    from .memory import kernel
    from ..model.modules import module_list
    mods, _ = module_list(kernel())
    t = lookup_type("struct module").pointer()
    for m in mods:
        yield gdb.Value(m.addr).cast(t)


def module_damage() -> list:
    """The module list's :class:`gdbkd.model.lists.ListProblem` (none when whole)."""
    from .memory import kernel
    from ..model.modules import module_list
    return module_list(kernel())[0].damage


def module_name(mod) -> str:
    return read_cstring(int(mod["name"].address), 56).decode("utf-8", "replace")


def module_base_size(mod):
    if has_field(mod.type.target(), "core_layout"):
        cl = mod["core_layout"]
        return int(cl["base"]), int(cl["size"])
    mem = mod["mem"][0]      # MOD_TEXT
    return int(mem["base"]), int(mem["size"])


def module_sections(mod) -> dict:
    sa = mod["sect_attrs"]
    if int(sa) == 0:
        return {}
    n = int(sa["nsections"])
    attrs = sa["attrs"]
    out = {}
    for i in range(n):
        a = attrs[i]
        if has_field(a.type, "battr"):
            name_p = a["battr"]["attr"]["name"]
        else:
            name_p = a["name"]
        name = read_cstring(int(name_p), 64).decode("utf-8", "replace")
        out[name] = int(a["address"])
    return out


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
    """Load the symbols of one ``struct module *``; returns a one-line status (which
    .ko for which module, or why none: gdbkd/kmods.py)."""
    from .memory import kernel
    name = module_name(mod)
    base, _ = module_base_size(mod)
    if ko is None and name in loaded and loaded[name][0] == base:
        return f"{escape(name)}: symbols already loaded"
    plans = kmods.plan_modules(kernel(), search_dirs, only=name)
    if not plans:
        return f"{escape(name)}: not on the module list"
    p = plans[0]
    if ko is not None:
        copy, status = kmods.symbol_file(name, p.base, _sections_of(name), search_dirs, ko,
                                         build_id=p.build_id, live=_live_ranges(name))
    else:
        copy, status = p.copy, p.status
    if copy is None:
        return status
    if not _add_symbol_file(name, p.base, copy, quiet):
        return f"{escape(name)}: symbols already loaded"
    return status


def _sections_of(name):
    from .memory import kernel
    from ..model.modules import module_list
    mods, _ = module_list(kernel())
    return next((m.sections for m in mods if m.name == name), {})


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
        try:
            try:
                mod = gdb.parse_and_eval("mod")
            except gdb.error:
                mod = gdb.parse_and_eval("$x0").cast(lookup_type("struct module").pointer())
            msg = load_module_symbols(mod)
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
