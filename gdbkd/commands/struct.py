"""kd struct / kd union / kd whatis: crash's syntax over gdb's types.

The bytes come through kd's reader (one read of the whole struct); gdb only
decodes them (``gdb.Value(bytes, type)``).
"""

import gdb

from . import KdError, command
from ._mem import address_arg, kernel, MEMORY_ADDRESSES
from ._util import KernelCommand
from ..kernel.types import lookup_type, member
from ..model.reader import MemoryFault
from ..textutil import escape

__all__ = ["Struct", "Union", "Whatis"]

MAX_SIZE = 1 << 20


def _type(kind, name):
    name = name.strip()
    full = name if name.startswith(("struct ", "union ")) else f"{kind} {name}"
    try:
        t = lookup_type(full)
    except gdb.error:
        try:
            t, full = gdb.lookup_type(name), name         # a typedef name
        except gdb.error:
            raise KdError(f"no type {escape(full)} in the symbols loaded")
    if t.strip_typedefs().code not in (gdb.TYPE_CODE_STRUCT, gdb.TYPE_CODE_UNION):
        raise KdError(f"{escape(full)} is not a struct or union (kd whatis shows any type)")
    return t, full


def _member(t, path):
    """(offset, type) of a dotted member path (kernel/types.py's walk)."""
    try:
        return member(t, path)
    except gdb.error as e:
        raise KdError(f"{t}: {e}")


def _fmt(v) -> str:
    """gdb's rendering of a value (which escapes string bytes itself), with any raw control
    character left over made visible."""
    try:
        text = v.format_string(max_elements=64, repeat_threshold=10)
    except gdb.error as e:
        text = f"<{e}>"
    return "".join(c if c == "\n" or (ord(c) >= 0x20 and ord(c) != 0x7f) else f"\\x{ord(c):02x}"
                   for c in text)


class _Aggregate(KernelCommand):
    kind = "struct"
    json_addresses = MEMORY_ADDRESSES

    def add_arguments(self, p):
        p.add_argument("-o", dest="offsets", action="store_true",
                       help="show member offsets (and addresses, with ADDR)")
        p.add_argument("spec", metavar="TYPE[.MEMBER[,MEMBER...]]",
                       help=f"the {self.kind} name, optionally with members to show")
        p.add_argument("addr", nargs="?", metavar="ADDR",
                       help=f"address of the {self.kind} (hex, symbol or expression)")
        p.add_argument("count", nargs="?", type=int, default=1, metavar="COUNT",
                       help="show COUNT consecutive objects (default 1)")

    def run(self, args):
        name, _, members = args.spec.partition(".")
        t, full = _type(self.kind, name)
        paths = [m.strip() for m in members.split(",") if m.strip()] if members else []
        if paths:
            fields = [(p, *_member(t, p)) for p in paths]
        else:
            fields = [(f.name, f.bitpos // 8, f.type) for f in t.strip_typedefs().fields()
                      if not f.is_base_class]
        rows = [{"name": n, "offset": o, "size": ft.sizeof, "type": str(ft)}
                for n, o, ft in fields]
        d = {"type": full, "size": t.sizeof, "members": rows}
        if args.addr is None:
            if not args.offsets and not paths:
                d["definition"] = gdb.execute(f"ptype {full}", to_string=True).rstrip()
            return d
        addr = address_arg(args.addr)
        if args.count < 1 or args.count * t.sizeof > MAX_SIZE:
            raise KdError(f"COUNT must be between 1 and {MAX_SIZE // max(t.sizeof, 1)}")
        objs = []
        for i in range(args.count):
            a = addr + i * t.sizeof
            try:
                buf = kernel().reader.read(a, t.sizeof)
            except MemoryFault as e:
                raise KdError(str(e))
            v = gdb.Value(buf, t)
            vals = []
            for n, o, ft in fields:
                if n is None:
                    val = gdb.Value(buf[o:o + ft.sizeof], ft)
                elif paths:
                    val = gdb.Value(buf[o:o + ft.sizeof], ft)
                else:
                    val = v[n]
                vals.append({"name": n, "offset": o, "addr": a + o, "value": _fmt(val)})
            objs.append({"addr": a, "members": vals})
        d["objects"] = objs
        return d

    def render(self, d, args):
        if "objects" not in d:
            if "definition" in d:
                return d["definition"] + f"\nSIZE: {d['size']}"
            lines = [f"{d['type']} {{"]
            for m in d["members"]:
                lines.append(f"  [{m['offset']:#x}] {m['type']} {m['name'] or '<anonymous>'};")
            lines.append(f"}}\nSIZE: {d['size']}")
            return "\n".join(lines)
        out = []
        for o in d["objects"]:
            lines = [f"{d['type']} {{" if not args.offsets else f"{d['type']} at {o['addr']:#x} {{"]
            for m in o["members"]:
                name = m["name"] or "<anonymous>"
                if args.offsets:
                    lines.append(f"  [{m['addr']:016x}] [{m['offset']:#x}] {name} = {m['value']},")
                else:
                    lines.append(f"  {name} = {m['value']},")
            lines.append("}")
            out.append("\n".join(lines))
        return "\n".join(out)


@command
class Struct(_Aggregate):
    """Show a struct at an address, or its layout (crash's struct).

`kd struct task_struct ADDR`, `kd struct task_struct.pid,comm ADDR`,
`kd struct -o task_struct` (member offsets), `kd struct -o list_head ADDR`."""

    name = "struct"
    kind = "struct"


@command
class Union(_Aggregate):
    """Show a union at an address, or its layout (crash's union)."""

    name = "union"
    kind = "union"


@command
class Whatis(KernelCommand):
    """Show the type of a symbol, or the definition of a type (crash's whatis)."""

    name = "whatis"
    json_addresses = MEMORY_ADDRESSES

    def add_arguments(self, p):
        p.add_argument("name", nargs="+", metavar="NAME",
                       help="a symbol (variable or function) or a type (struct/union/typedef)")

    def run(self, args):
        name = " ".join(args.name)
        try:
            sym = gdb.lookup_global_symbol(name) or gdb.lookup_static_symbol(name)
        except gdb.error:
            sym = None
        if sym is not None:
            d = {"name": name, "kind": "symbol", "type": str(sym.type),
                 "size": sym.type.sizeof if sym.type.code != gdb.TYPE_CODE_FUNC else None}
            return d
        for cand in (name, f"struct {name}", f"union {name}", f"enum {name}"):
            try:
                t = gdb.lookup_type(cand)
            except gdb.error:
                continue
            text = gdb.execute(f"ptype /o {cand}", to_string=True) if \
                t.strip_typedefs().code in (gdb.TYPE_CODE_STRUCT, gdb.TYPE_CODE_UNION) else \
                gdb.execute(f"ptype {cand}", to_string=True)
            return {"name": cand, "kind": "type", "size": t.sizeof, "definition": text.rstrip()}
        raise KdError(f"no symbol or type named {escape(name)}")

    def render(self, d, args):
        if d["kind"] == "symbol":
            return f"{d['type']} {d['name']};"
        return d["definition"] + f"\nSIZE: {d['size']}"
