"""kd waitq: the tasks waiting on a wait queue (crash's waitq)."""

from . import KdError, command
from ._util import KernelCommand, problem_lines
from ._sysstate import kernel, address_arg, symbol_name
from ..model.wait import waitqueue_entries
from ..model.tasks import task_list
from ..model.reader import MemoryFault

__all__ = ["Waitq"]


@command
class Waitq(KernelCommand):
    """Tasks waiting on a wait_queue_head (crash's waitq).

ADDR|SYMBOL is the address of a struct wait_queue_head, a symbol or any gdb
expression naming one (e.g. `kd waitq kdtest_wq`). For each entry: the
wait_queue_entry, the wake function, and the task in its `private` when that
is a task (pid, command, state). A damaged queue (a loop, NULL, poison, an
unreadable or disagreeing link) is said in one line ("problems" in --json)."""

    name = "waitq"
    json_addresses = frozenset(("wq", "entry", "func", "private", "task"))

    def add_arguments(self, p):
        p.add_argument("wq", metavar="ADDR|SYMBOL", help="a struct wait_queue_head")

    def run(self, args):
        k = kernel()
        wq = address_arg(args.wq, "a struct wait_queue_head")
        try:
            ents, stop = waitqueue_entries(k, wq)
        except MemoryFault as e:
            raise KdError(str(e)) from None
        tasks = {t.addr: t for t in task_list(k)}
        rows = []
        for e in ents:
            t = tasks.get(e["private"])
            rows.append({"entry": e["entry"], "flags": e["flags"], "func": e["func"],
                         "func_name": symbol_name(e["func"]), "private": e["private"],
                         "task": t.addr if t else None, "pid": t.pid if t else None,
                         "comm": t.comm if t else None, "state": t.st if t else None})
        return {"wq": wq, "waiters": rows, "stop": stop,
                "problems": [p.to_json() for p in ents.damage]}

    def render(self, d, args):
        if not d["waiters"] and not d["problems"]:
            return f"wait queue {d['wq']:016x} is empty"
        lines = ["  WAIT_QUEUE_ENTRY       TASK        PID  ST  COMMAND          FUNC"]
        for w in d["waiters"]:
            who = (f"{w['private']:016x} {w['pid']:>7}  {w['state']}  {w['comm']:<16}" if w["pid"] is not None
                   else f"{w['private']:016x} {'-':>7}  --  {'(not a task)':<16}")
            lines.append(f"{w['entry']:016x}  {who} {w['func_name'] or hex(w['func'])}")
        return "\n".join(lines + problem_lines(self.name, d["problems"]))
