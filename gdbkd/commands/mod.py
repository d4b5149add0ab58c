"""kd mod: loaded kernel modules (crash's mod)."""

from pathlib import Path

import gdb

from ._util import KernelCommand, problem_lines
from . import KdError, command
from ..kernel import modules
from ..kernel.types import has_field
from ..textutil import escape

__all__ = ["Mod"]


def _taint_letters(mask: int) -> str:
    """Module taint letters from the kernel's own ``taint_flags[]`` table (4.10+), flags
    marked ``.module = true``; bit numbers as in include/linux/panic.h."""
    out = ""
    try:
        tf = gdb.parse_and_eval("taint_flags")
        n = tf.type.range()[1] + 1
        for i in range(n):
            if mask >> i & 1:
                out += chr(int(tf[i]["c_true"]))
    except gdb.error:
        out = f"{mask:#x}" if mask else ""
    return out


def _state(mod) -> str:
    try:
        return str(mod["state"]).replace("MODULE_STATE_", "").lower()
    except gdb.error:
        return "?"


@command
class Mod(KernelCommand):
    """List loaded modules; load their symbols into gdb (crash's mod).

Columns: MODULE (struct module address), NAME, BASE and SIZE of the core
(text) allocation (core_layout up to 6.3, mem[MOD_TEXT] from 6.4), STATE,
TAINTS (letters as in /proc/modules: O out-of-tree, E unsigned, P proprietary,
...) and whether gdb has the module's symbols. A damaged module list (a loop,
NULL, poison, an unreadable or disagreeing link) is listed once per module
and said in one line under the table ("problems" in --json)."""

    name = "mod"
    json_addresses = frozenset(("module", "base"))

    def add_arguments(self, p):
        p.add_argument("-s", dest="load_one", nargs="+", metavar=("NAME", "KO"),
                       help="load NAME's symbols from KO (default: search GDBKD_MODULES_PATH)")
        p.add_argument("-S", dest="load_all", nargs="?", const="", metavar="DIR",
                       help="load the symbols of every module found in DIR (or the search path)")

    def _list(self):
        rows = []
        for mod in modules.for_each_module():
            name = modules.module_name(mod)
            base, size = modules.module_base_size(mod)
            taints = int(mod["taints"]) if has_field(mod.type.target(), "taints") else 0
            rows.append({"module": int(mod), "name": escape(name), "base": base,
                         "size": size, "state": _state(mod), "taints": _taint_letters(taints),
                         "symbols": modules.has_symbols(name), "_mod": mod})
        return rows

    def run(self, args):
        try:
            rows = self._list()
        except gdb.MemoryError as e:
            raise KdError(f"cannot read the module list: {e}")
        messages = []
        if args.load_one:
            name = args.load_one[0]
            ko = args.load_one[1] if len(args.load_one) > 1 else None
            if len(args.load_one) > 2:
                raise KdError("-s takes NAME and at most one KO path")
            if ko is not None and not Path(ko).is_file():
                raise KdError(f"no such file: {ko}")
            match = [r for r in rows if r["name"] == name or r["name"] == name.replace("-", "_")]
            if not match:
                raise KdError(f"no module named {escape(name)} is loaded")
            messages.append(modules.load_module_symbols(match[0]["_mod"], ko))
        if args.load_all is not None:
            if args.load_all and not Path(args.load_all).is_dir():
                raise KdError(f"no such directory: {args.load_all}")
            messages += modules.load_all_module_symbols([args.load_all] if args.load_all else [])
        for r in rows:
            r.pop("_mod")
            r["symbols"] = modules.has_symbols(r["name"])
        return {"modules": rows, "messages": messages,
                "problems": [p.to_json() for p in modules.module_damage()]}

    def render(self, data, args):
        lines = list(data["messages"])
        if args.load_one or args.load_all is not None:
            return "\n".join(lines)
        lines.append("     MODULE       NAME                      BASE           SIZE  STATE     TAINTS  SYMBOLS")
        for r in data["modules"]:
            lines.append(f"{r['module']:016x}  {r['name']:<20} {r['base']:016x} "
                         f"{r['size']:>8}  {r['state']:<8}  {r['taints'] or '-':<6}  "
                         f"{'loaded' if r['symbols'] else '-'}")
        if not data["modules"]:
            lines.append("(no modules loaded)")
        lines += problem_lines(self.name, data["problems"])
        return "\n".join(lines)
