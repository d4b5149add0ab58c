"""kd check: the kernel's main lists validated at once (crash's list -c per list, drgn's
validate_list), for a user and for every report."""

from . import command
from ._util import KernelCommand, problem_lines
from ._sysstate import kernel
from ..model.listcheck import check_lists

__all__ = ["Check"]


@command
class Check(KernelCommand):
    """Check the kernel's main lists: tasks and threads, modules, slab caches, mounts, net devices, runqueues.

Every list is walked as kd walks it everywhere (gdbkd/model/lists.py): each back
link checked against the walk, a break (a loop, NULL, LIST_POISON, an unreadable
or wild pointer) walked back from the head, each entry counted once. One row per
list (ENTRIES: what the walk kept), then one line per damaged list: which list,
the entry whose link is wrong (and its owner), what was wrong, and how many
entries the walk back from the head recovered. A list this kernel does not have
is marked skipped, with why. --json carries "ok", "lists" and "problems"
(the same facts as the lines)."""

    name = "check"

    def run(self, args):
        checked = check_lists(kernel())
        problems = [p.to_json() for c in checked for p in c.problems]
        return {"ok": not problems, "lists": [c.to_json() for c in checked], "problems": problems}

    def render(self, data, args):
        lines = [f"{'LIST':<52} {'ENTRIES':>7}  STATUS"]
        for c in data["lists"]:
            if c["skipped"]:
                status = f"skipped: {c['skipped']}"
            else:
                n = len(c["problems"])
                status = "ok" if not n else f"DAMAGED ({n} problem{'s' if n > 1 else ''})"
            lines.append(f"{c['list']:<52} {c['entries']:>7}  {status}")
        lines += problem_lines(self.name, data["problems"])
        if data["ok"]:
            lines.append("kd check: no damaged list")
        return "\n".join(lines)
