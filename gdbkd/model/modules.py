"""Loaded kernel modules without gdb: name, base, size, sections.

The global ``modules`` list_head, entries linked by ``struct module.list``.
Base/size: ``core_layout.base/size`` up to v6.3, ``mem[MOD_TEXT]`` from v6.4
(commit ac3b43283923, "module: replace module_layout with module_memory").
Section addresses come from ``mod->sect_attrs``: since v5.8 (commit
ed66f991bb19, "module: Refactor section attr into bin attribute") each
``struct module_sect_attr`` is ``{struct bin_attribute battr; unsigned long
address;}`` with the name in ``battr.attr.name``; before that ``{struct
module_attribute mattr; char *name; unsigned long address;}``.

Serves kd (``kd mod``, module symbols inside gdb), ``gdbkd core`` (module
symbol files planned before gdb starts) and symbolization from the module's
own kallsyms.
"""

from dataclasses import dataclass, field

from .kernel import per_stop
from .lists import walk_list
from .reader import MemoryFault

__all__ = ["Module", "module_list"]


@dataclass
class Module:
    addr: int                      # struct module *
    name: str
    base: int                      # core text base
    size: int
    sections: dict = field(default_factory=dict)   # section name -> address

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


@per_stop
def module_list(k, limit: int = 10000):
    """(modules, stop reason or None): every module on the ``modules`` list."""
    head = k.sym("modules")
    lay = k.layout("struct module")
    if head is None or "list" not in lay or "name" not in lay:
        return [], "this kernel's struct module is unknown"
    link = lay.offset("list")
    w = walk_list(k.reader, head, limit=limit, entry_offset=link)
    out = []
    for node in w.nodes:
        addr = node - link
        try:
            f = lay.read(k.reader, addr)
        except MemoryFault as e:
            return out, f"module {addr:#x} unreadable: {e.reason}"
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
        out.append(Module(addr, name, base, size, secs))
    return out, w.stop
