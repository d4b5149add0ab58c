"""kd list: walk a linked list (crash's list)."""

import re

import gdb

from ._util import KernelCommand
from . import KdError, command
from ..kernel.memory import kernel
from ..model.lists import walk_list
from ..kernel.symbolize import eval_address
from ..kernel.types import lookup_type, field_offset
from ..textutil import escape

__all__ = ["ListCmd"]


def _struct_name(s):
    s = s.strip()
    return s if s.startswith(("struct ", "union ")) else f"struct {s}"


def _offset(spec):
    if re.fullmatch(r"(0x)?[0-9a-fA-F]+", spec) and (spec.startswith("0x") or spec.isdigit()):
        return int(spec, 0)
    if "." not in spec:
        raise KdError(f"-o wants a number or STRUCT.MEMBER, not {escape(spec)}")
    st, member = spec.split(".", 1)
    try:
        return field_offset(_struct_name(st), member)
    except gdb.error as e:
        raise KdError(f"-o {escape(spec)}: {e}")


def _show(addr, spec):
    st, _, fields = spec.partition(".")
    t = lookup_type(_struct_name(st))
    v = gdb.Value(addr).cast(t.pointer()).dereference()
    if not fields:
        return str(v)
    out = []
    for f in fields.split(","):
        cur = v
        for part in f.strip().split("."):
            cur = cur[part]
        out.append(f"  {f.strip()} = {cur}")
    return "\n".join(out)


@command
class ListCmd(KernelCommand):
    """Walk a struct list_head list and print its entries (crash's list).

START is an address, symbol or expression. If it names a struct list_head
(`kd list modules`, `kd list init_task.tasks`) or -H is given, it is the list
head and is not printed; otherwise it is the first entry and the walk ends
when it comes back to it. Each entry is printed as the address of its
containing structure: the list_head address minus OFFSET.
The walk stops, with a message naming the cause, at a NULL pointer,
LIST_POISON1/LIST_POISON2 (an entry removed with list_del()), an unreadable
entry, or a cycle that never returns to the head. Every entry's ->prev (->next
with -r), and the head's, is checked against the walk (drgn's validate_list,
lx-list-check): the first that disagrees is reported after the entries."""

    name = "list"
    json_addresses = frozenset(("head", "entries", "entry", "list_head", "value", "expected"))

    def add_arguments(self, p):
        p.add_argument("-o", dest="offset", metavar="OFFSET|STRUCT.MEMBER",
                       help="offset of the list_head in the entry (default 0)")
        p.add_argument("-s", dest="show", metavar="STRUCT[.FIELD[,FIELD...]]",
                       help="print each entry as this struct (or only these members)")
        p.add_argument("-H", dest="head", action="store_true",
                       help="START is a list head (not printed)")
        p.add_argument("-r", dest="reverse", action="store_true",
                       help="follow ->prev instead of ->next")
        p.add_argument("start", metavar="START",
                       help="list head or first entry: address, symbol or expression")

    def run(self, args):
        off = _offset(args.offset) if args.offset else 0
        is_head = args.head
        try:
            v = gdb.parse_and_eval(args.start)
            t = v.type.strip_typedefs()
            if t.code == gdb.TYPE_CODE_STRUCT and t.tag == "list_head" and v.address is not None:
                start = int(v.address)
                is_head = True
            else:
                start = eval_address(args.start)
        except gdb.error:
            try:
                start = eval_address(args.start)
            except gdb.error as e:
                raise KdError(f"cannot evaluate {escape(args.start)}: {e}")
        node0 = start if is_head else start + off
        w = walk_list(kernel().reader, node0, include_head=not is_head, direction="prev" if args.reverse else "next",
                      entry_offset=off, check_prev=True)
        entries = [n - off for n in w.nodes]
        bad = w.bad_link
        d = {"head": node0 if is_head else None, "offset": off,
             "entries": entries, "count": len(entries), "stop": w.stop,
             "link_error": w.link_error,
             "bad_link": None if bad is None else
             {"entry": bad["node"] - off, "list_head": bad["node"],
              "field": bad["field"], "value": bad["value"], "expected": bad["expected"]}}
        if args.show:
            shown = []
            for e in entries:
                try:
                    shown.append(_show(e, args.show))
                except (gdb.error, gdb.MemoryError) as ex:
                    raise KdError(f"-s {escape(args.show)}: {ex}")
            d["shown"] = shown
        return d

    def render(self, d, args):
        lines = []
        for i, e in enumerate(d["entries"]):
            lines.append(f"{e:016x}")
            if "shown" in d:
                lines.append(d["shown"][i])
        if d["stop"]:
            lines.append(f"kd list: {d['stop']}")
        if d.get("link_error"):
            lines.append(f"kd list: {d['link_error']}")
        return "\n".join(lines)
