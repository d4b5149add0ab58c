"""kd tree: walk an rbtree, xarray/radix tree or maple tree (crash's tree)."""

import gdb

from . import KdError, command
from ._util import KernelCommand
from ._sysstate import kernel, address_arg
from .list import _offset, _show
from ..model import trees
from ..model.reader import MemoryFault
from ..textutil import escape

__all__ = ["Tree"]

_WALKERS = {"rbtree": "struct rb_root", "xarray": "struct xarray", "radix": "struct radix_tree_root",
            "maple": "struct maple_tree"}


@command
class Tree(KernelCommand):
    """Walk a tree and list its entries (crash's tree).

-t rbtree: ROOT is a struct rb_root (or rb_root_cached); entries are in order,
each the address of its container (the rb_node minus -o OFFSET|STRUCT.MEMBER).
-t xarray / radix (the same since 4.20): ROOT is a struct xarray /
radix_tree_root; entries are INDEX and the stored pointer (value entries,
bit 0 set, are shown as values). -t maple: ROOT is a struct maple_tree;
entries are FIRST-LAST and the stored pointer. -s STRUCT[.FIELDS] prints each
entry as that struct (or just the fields), as kd list -s does."""

    name = "tree"
    json_addresses = frozenset(("root", "node", "entry", "first", "last"))

    def add_arguments(self, p):
        p.add_argument("-t", dest="type", required=True, choices=sorted(_WALKERS),
                       help="the kind of tree")
        p.add_argument("-o", dest="offset", metavar="OFFSET|STRUCT.MEMBER",
                       help="rbtree: offset of the rb_node in the containing struct")
        p.add_argument("-s", dest="show", metavar="STRUCT[.FIELD,...]",
                       help="print each entry as this struct (or these fields)")
        p.add_argument("root", metavar="ROOT", help="address, symbol or expression of the root")

    def run(self, args):
        k = kernel()
        root = address_arg(args.root, _WALKERS[args.type])
        if args.offset and args.type != "rbtree":
            raise KdError("-o is for -t rbtree (xarray and maple entries are pointers already)")
        off = _offset(args.offset) if args.offset else 0
        try:
            if args.type == "rbtree":
                w = trees.rbtree_inorder(k, root)
                entries = [{"node": n, "entry": n - off} for n in w.entries]
            elif args.type == "maple":
                w = trees.maple_entries(k, root)
                entries = [{"first": a, "last": b, "entry": e} for a, b, e in w.entries]
            else:
                w = trees.xarray_entries(k, root)
                entries = [{"index": i, "entry": e, "value": (e >> 1) if e & 1 else None}
                           for i, _, e in w.entries]
        except trees.WrongType as e:
            raise KdError(str(e)) from None
        except MemoryFault as e:
            raise KdError(f"{escape(args.root)} ({root:#x}) as {_WALKERS[args.type]}: {e}") from None
        d = {"type": args.type, "root": root, "offset": off, "entries": entries, "stop": w.stop,
             "count": len(entries)}
        if args.show:
            for e in entries:
                if e.get("value") is not None:
                    continue
                try:
                    e["shown"] = _show(e["entry"], args.show)
                except (gdb.error, gdb.MemoryError) as ex:
                    raise KdError(f"-s {escape(args.show)}: {ex}")
        return d

    def render(self, d, args):
        lines = []
        for e in d["entries"]:
            if d["type"] == "rbtree":
                lines.append(f"{e['entry']:016x}")
            elif d["type"] == "maple":
                lines.append(f"[{e['first']:#x}-{e['last']:#x}]  {e['entry']:016x}")
            elif e["value"] is not None:
                lines.append(f"[{e['index']}]  value {e['value']}")
            else:
                lines.append(f"[{e['index']}]  {e['entry']:016x}")
            if "shown" in e:
                lines.append(e["shown"])
        if d["stop"]:
            lines.append(f"kd tree: {d['stop']}")
        if not d["entries"] and not d["stop"]:
            lines.append("(empty)")
        return "\n".join(lines)
