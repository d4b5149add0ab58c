"""Loaded kernel modules without gdb: name, base, size, sections.

The global ``modules`` list_head, entries linked by ``struct module.list``.
Base/size: ``core_layout.base/size`` up to v6.3, ``mem[MOD_TEXT]`` from v6.4
(commit ac3b43283923, "module: replace module_layout with module_memory").
Section addresses come from ``mod->sect_attrs``: since v5.8 (commit
ed66f991bb19, "module: Refactor section attr into bin attribute") each
``struct module_sect_attr`` is ``{struct bin_attribute battr; unsigned long
address;}`` with the name in ``battr.attr.name``; before that ``{struct
module_attribute mattr; char *name; unsigned long address;}``.

State: ``enum module_state`` (MODULE_STATE_LIVE, COMING, GOING, UNFORMED: 3.x to
6.12), named from the kernel's own enum. Taints: ``mod->taints`` (3.15+), bits as
in the kernel's ``tainted_mask``, lettered by gdbkd/model/sysinfo.py ``taint_letters``.
BUG tables: ``bug_table``/``num_bugs`` (CONFIG_GENERIC_BUG, every version).

Serves kd (``kd mod``, module symbols inside gdb, BUG explanations), ``gdbkd core``
(module symbol files planned before gdb starts) and symbolization from the module's
own kallsyms. The list is walked with :func:`gdbkd.model.lists.walk_entries`:
a loop, NULL, poison or unreadable link is walked back from the head (each
module kept once) and said in :attr:`ModuleList.damage`.
"""

from dataclasses import dataclass, field

from .kernel import per_stop
from .layout import LAYOUTS
from .lists import Entries, walk_entries
from .reader import MemoryFault
from ..textutil import escape

__all__ = ["Module", "ModuleList", "module_list", "read_module", "module_state_name",
           "module_bug_tables", "MODULE_LIST"]

#: how the module list is named in what kd says about it
MODULE_LIST = "module list (modules)"
_BUGS = ["bug_table", "num_bugs"]
#: what :func:`read_module` reads (the BUG table is read only when a BUG is explained)
_MODULE = [p for p in LAYOUTS["struct module"] if p not in _BUGS]


@dataclass
class Module:
    addr: int                      # struct module *
    name: str
    base: int                      # core text base
    size: int
    sections: dict = field(default_factory=dict)   # section name -> address
    state: int = None              # enum module_state (None: not in this kernel's struct)
    taints: int = 0                # mod->taints

    def contains(self, a: int) -> bool:
        return self.base <= a < self.base + self.size


def _read_sections(k, sa) -> dict:
    attr_size = k.sizeof("struct module_sect_attr")
    ns_off = k.offset("struct module_sect_attrs", "nsections")
    attrs_off = k.offset("struct module_sect_attrs", "attrs")
    lay = k.layout("struct module_sect_attr")
    name_path = "battr.attr.name" if "battr.attr.name" in lay else "name"
    if not attr_size or ns_off is None or attrs_off is None or name_path not in lay \
            or "address" not in lay:
        return {}
    r = k.reader
    n = r.u32(sa + ns_off)
    out = {}
    for i in range(min(n, 256)):
        f = lay.read(r, sa + attrs_off + i * attr_size)
        try:
            name = r.cstring(f[name_path], 64).decode("utf-8", "replace")
        except MemoryFault:
            continue
        out[name] = f["address"]
    return out


def read_module(k, addr: int) -> Module:
    """The ``struct module`` at ADDR (raises MemoryFault when it cannot be read; a bad
    section table leaves ``sections`` empty)."""
    lay = k.layout("struct module", _MODULE)
    f = lay.read(k.reader, addr)
    name = f["name"].split(b"\0", 1)[0].decode("utf-8", "replace")
    if "core_layout.base" in f:
        base, size = f["core_layout.base"], f.get("core_layout.size", 0)
    elif "mem[0].base" in f:
        base, size = f["mem[0].base"], f.get("mem[0].size", 0)
    else:
        base, size = 0, 0
    secs = {}
    if f.get("sect_attrs"):
        try:
            secs = _read_sections(k, f["sect_attrs"])
        except MemoryFault:
            secs = {}
    return Module(addr, name, base, size, secs, f.get("state"), f.get("taints", 0))


def module_state_name(k, state):
    """"live", "coming", "going", "unformed" (the enumerator of ``enum module_state``
    without MODULE_STATE_, lower case), the number when the enum has no such value,
    "?" when unknown."""
    if state is None:
        return "?"
    names = {v: n for n, v in (k.enum("enum module_state") or {}).items()}
    n = names.get(state)
    if n is None:
        return str(state) if names else "?"
    return n.replace("MODULE_STATE_", "").lower()


def module_bug_tables(k) -> list:
    """[(module, bug_table address, num_bugs)] of every module on the list whose
    ``struct module`` has a BUG table (CONFIG_GENERIC_BUG); unreadable ones left out."""
    lay = k.layout("struct module", _BUGS)
    if "bug_table" not in lay or "num_bugs" not in lay:
        return []
    out = []
    for m in module_list(k)[0]:
        try:
            f = lay.read(k.reader, m.addr)
        except MemoryFault:
            continue
        out.append((m, f["bug_table"], f["num_bugs"]))
    return out


class ModuleList(Entries):
    """The modules in list order, with ``damage``: the list's
    :class:`gdbkd.model.lists.ListProblem` (none when it is whole)."""


@per_stop
def module_list(k, limit: int = 10000):
    """(modules, stop reason or None): every module on the ``modules`` list, once each
    (a :class:`ModuleList`; its ``damage`` says what was wrong with the list)."""
    head = k.sym("modules")
    lay = k.layout("struct module", _MODULE)
    if head is None or "list" not in lay or "name" not in lay:
        return ModuleList(), "this kernel's struct module is unknown"
    link = lay.offset("list")
    w = walk_entries(k.reader, head, link, limit=limit)
    out = ModuleList()
    stops = []
    names = {}
    for addr in w.entries():
        try:
            m = read_module(k, addr)
        except MemoryFault as e:
            stops.append(f"module {addr:#x} unreadable: {e.reason}")
            continue
        out.append(m)
        names[addr] = f"module {escape(m.name)}"
    out.damage = w.problems(MODULE_LIST, names.get)
    stop = "; ".join([p.line() for p in out.damage if p.kind != "prev"] + stops) or None
    return out, stop
