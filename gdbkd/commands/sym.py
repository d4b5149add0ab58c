"""kd sym: translate between addresses and symbols (crash's sym)."""

import gdb

from ._util import KernelCommand
from . import KdError, command
from ..kernel.symbolize import lookup, resolve_name, is_text
from ..textutil import escape

__all__ = ["Sym"]

_SECTION_LETTER = (("text", "T"), ("rodata", "R"), ("bss", "B"), ("data", "D"))


def _letter(name, section, addr):
    c = "?"
    if section is None and is_text(addr):
        return "t"
    for key, letter in _SECTION_LETTER:
        if section and key in section:
            c = letter
            break
    try:
        if name and gdb.lookup_global_symbol(name) is None and gdb.lookup_static_symbol(name) is not None:
            c = c.lower()
    except gdb.error:
        pass
    return c


@command
class Sym(KernelCommand):
    """Show the symbol, section type and source line of an address, or the address of a symbol.

ADDR is hex (0x optional); NAME is any kernel or loaded-module symbol. Output
like crash: ADDRESS (TYPE) SYMBOL+OFFSET  FILE: LINE, where TYPE is T text,
D data, R read-only data, B bss (lower case for file-local symbols). Module
addresses are named from the module's kallsyms even without its .ko."""

    name = "sym"
    json_addresses = frozenset(("addr",))

    def add_arguments(self, p):
        p.add_argument("what", nargs="+", metavar="ADDR|NAME",
                       help="hex address (0x optional) or kernel/module symbol name")

    def run(self, args):
        out = []
        for w in args.what:
            s = w.lower()
            is_num = all(c in "0123456789abcdefx" for c in s) and any(c.isdigit() for c in s)
            if is_num:
                try:
                    addr = int(s, 16)
                except ValueError:
                    raise KdError(f"not a hex address: {escape(w)}")
            else:
                addr = resolve_name(w)
                if addr is None:
                    raise KdError(f"no symbol {escape(w)}")
            sy = lookup(addr)
            if not sy.name:
                raise KdError(f"{addr:#x}: no symbol at or below this address")
            d = sy.to_json()
            d["type"] = _letter(sy.name, sy.section, addr)
            d["query"] = w
            if not is_num and sy.offset == 0 and sy.name != w:
                d["name"] = w           # an alias at the same address (jiffies / jiffies_64)
            out.append(d)
        return out

    def render(self, data, args):
        lines = []
        for d in data:
            name = d["name"] + (f"+{d['offset']:#x}" if d["offset"] else "")
            if d["module"] and not d["name"].startswith("["):
                name += f" [{d['module']}]"
            where = f"  {d['file']}: {d['line']}" if d["file"] else ""
            lines.append(f"{d['addr']:016x} ({d['type']}) {name}{where}")
            if d["inlined"]:
                lines.append(f"    inlined: {' <- '.join(d['inlined'])}")
        return "\n".join(lines)
