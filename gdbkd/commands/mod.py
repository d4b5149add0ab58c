"""kd mod: loaded kernel modules (crash's mod)."""

from pathlib import Path

from ._util import KernelCommand, problem_lines
from . import KdError, command
from ..kernel import modules
from ..kernel.memory import kernel
from ..model.modules import module_list, module_state_name
from ..model.reader import MemoryFault
from ..model.sysinfo import taint_letters
from ..textutil import escape

__all__ = ["Mod"]


def _taint_letters(k, mask: int) -> str:
    """The module's taint letters (gdbkd/model/sysinfo.py), its mask in hex when the
    kernel's letter table cannot be read."""
    letters = taint_letters(k, mask)
    if letters is None:
        return f"{mask:#x}" if mask else ""
    return letters


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

    def run(self, args):
        k = kernel()
        try:
            mods = module_list(k)[0]
        except MemoryFault as e:
            raise KdError(f"cannot read the module list: {e}")
        rows = [{"module": m.addr, "name": escape(m.name), "base": m.base,
                 "size": m.size, "state": module_state_name(k, m.state),
                 "taints": _taint_letters(k, m.taints), "symbols": modules.has_symbols(m.name),
                 "_mod": m} for m in mods]
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
                "problems": [p.to_json() for p in mods.damage]}

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
