"""kd foreach: run bt or task for a set of tasks (crash's foreach)."""

import argparse

import gdb

from . import KdError, command, _Parser
from ._util import KernelCommand, is_state, current_task
from .bt import bt_data, bt_render, add_bt_flags, regs_for_task, BT_ADDRESSES
from .task import task_data, task_render, TASK_ADDRESSES
from ..kernel.tasks import all_tasks, parse_task_spec, select_tasks

__all__ = ["Foreach"]

_SUBCOMMANDS = ("bt", "task", "ps")


@command
class Foreach(KernelCommand):
    """Run bt or task for every task that matches (crash's foreach).

Selects tasks by state (RU IN UN ID ST TR ZO DE PA WA NE), pid, task
address or command name (all given selectors must match one of their kind),
then runs the command for each: `kd foreach UN bt` shows where every
D-state task sleeps. bt flags (-f -l -e -t --fp --args) follow `bt`."""

    name = "foreach"
    json_addresses = BT_ADDRESSES | TASK_ADDRESSES        # the subcommands' own

    def add_arguments(self, p):
        # the grammar, for -h and `help kd foreach`: invoke gives argparse only --json or
        # -h, run reads the words itself (flags after the subcommand are the subcommand's)
        p.add_argument("-k", dest="kernel", action="store_true",
                       help="kernel threads only (before the command)")
        p.add_argument("-u", dest="user", action="store_true",
                       help="user tasks only (before the command)")
        p.add_argument("selectors", nargs="*", metavar="STATE|PID|TASK|COMM",
                       help="only tasks in these states (e.g. UN) or these tasks "
                            "(decimal pid, hex task address, or name)")
        p.add_argument("command", nargs="?", metavar="bt|task|ps",
                       help="the command to run for each task (required)")
        p.add_argument("flags", nargs=argparse.REMAINDER, metavar="FLAGS",
                       help="after bt: bt's flags (-f -l -e -t --fp --args)")

    def invoke(self, arg, from_tty):
        # flags after the subcommand belong to it: keep argparse away from them; -h/--help
        # (no selector, no bt flag) anywhere is argparse's help
        argv = gdb.string_to_argv(arg)
        self._argv = argv
        if "-h" in argv or "--help" in argv:
            return super().invoke("--help", from_tty)
        super().invoke(" ".join(a for a in argv if a == "--json"), from_tty)

    def run(self, args):
        argv = [a for a in self._argv if a != "--json"]
        sub_i = next((i for i, a in enumerate(argv) if a in _SUBCOMMANDS), None)
        if sub_i is None:
            raise KdError("missing command: bt, task or ps (e.g. `kd foreach UN bt`)")
        sel, sub, rest = argv[:sub_i], argv[sub_i], argv[sub_i + 1:]
        states = {s for s in sel if is_state(s)}
        kernel = "-k" in sel
        user = "-u" in sel
        specs = [parse_task_spec(s) for s in sel if not is_state(s) and s not in ("-k", "-u")]
        bad = [s for s in sel if s.startswith("-") and s not in ("-k", "-u")]
        if bad:
            raise KdError(f"unknown selector {bad[0]} (flags for {sub} go after it)")
        opts = None
        if sub == "bt":
            p = _Parser(prog="kd foreach ... bt", add_help=False)
            add_bt_flags(p)
            opts = p.parse_args(rest)
        elif rest:
            raise KdError(f"{sub} takes no flags here")
        chosen = select_tasks(all_tasks(), specs, states, kernel=kernel, user=user)
        try:
            cur = current_task()
        except KdError:
            cur = None
        self._opts = opts
        # text: each task's part is written as soon as it is made (first output at once, and
        # memory stays flat over 10,000 tasks); --json collects them into one document
        stream = not args.json
        out = []
        sep = "\n" if sub == "ps" else "\n\n"
        for i, t in enumerate(chosen):
            # each result is the subcommand's own JSON for one task (task, pid, comm in it)
            if sub == "bt":
                th, regs = regs_for_task(t, cur)
                r = bt_data(t, regs, th, opts)
            elif sub == "task":
                r = task_data(t)
            else:
                r = t.brief()
            if stream:
                gdb.write((sep if i else "") + self._render_one(sub, r))
            else:
                out.append(r)
        if stream:
            if chosen:
                gdb.write("\n")
            return {"command": sub, "results": None, "count": len(chosen)}
        return {"command": sub, "results": out}

    def _render_one(self, sub, r):
        if sub == "bt":
            return bt_render(r, self._opts)
        if sub == "task":
            return task_render(r)
        p = r
        return (f"{'>' if p['active'] else ' '}{p['pid']:>6}  {p['task']:016x}  "
                f"{p['state']}  {p['comm']}")

    def render(self, data, args):
        if data["results"] is None:            # written while it ran
            return "" if data["count"] else "(no matching tasks)"
        if not data["results"]:
            return "(no matching tasks)"
        sep = "\n" if data["command"] == "ps" else "\n\n"
        return sep.join(self._render_one(data["command"], r) for r in data["results"])
