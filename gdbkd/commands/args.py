"""kd args: the parameters of one frame, each with its whole chain of evidence."""

from . import KdError, command
from ._util import KernelCommand
from .bt import bt_data, fmt_arg, task_arg

__all__ = ["Args"]


@command
class Args(KernelCommand):
    """The parameters of one frame of a task's backtrace and how each was found.

The values are kd bt --args's; here every link of each value's chain is listed:
the registers known at the frame's pc (the CPU's, an exception's pt_regs, a
deeper frame's prologue spill), the DWARF location or entry value, the moves and
the call site that carry an argument register to a callee-saved one. A value
is shown only when the chain is complete; otherwise the missing link is named."""

    name = "args"
    json_addresses = frozenset(("task", "pc", "value"))

    def add_arguments(self, p):
        p.add_argument("frame", nargs="?", default="0", metavar="FRAME|FUNCTION",
                       help="frame level as kd bt numbers it, or a function name "
                            "(its innermost frame); default 0")
        p.add_argument("task", nargs="?", metavar="PID|TASK|COMM",
                       help="PID, task address or comm (default: the selected thread's task)")

    def run(self, args):
        t, th, regs = task_arg(args.task)

        class _Opts:
            args = True
        d = bt_data(t, regs, th, _Opts())
        frames = d["frames"]
        if not frames:
            raise KdError(f"no kernel frames ({d['stop']})")
        if args.frame.isdigit():
            n = int(args.frame)
            if n >= len(frames):
                raise KdError(f"no frame {n}: the backtrace has {len(frames)} frames (0-{len(frames) - 1})")
            f = frames[n]
        else:
            f = next((x for x in frames if x["function"] == args.frame), None)
            if f is None:
                raise KdError(f"no frame of function {args.frame!r} in the backtrace of pid {t.pid}")
        return {**{k: d[k] for k in ("pid", "tgid", "task", "comm", "state", "cpu", "active")},
                "level": f["level"], "function": f["function"], "pc": f["pc"],
                "kind": f["kind"], "module": f["module"], "args": f.get("args", []),
                "args_reason": f.get("args_reason")}

    def render(self, d, args):
        t = d
        where = "return address" if d["kind"] != "exact" else "exact pc"
        lines = [f'PID: {t["pid"]}  COMMAND: "{t["comm"]}"',
                 f'#{d["level"]} {d["function"]}{" [" + d["module"] + "]" if d["module"] else ""}'
                 f' at {d["pc"]:#x} ({where})']
        if d["args_reason"]:
            lines.append(f"  ({d['args_reason']})")
        for a in d["args"]:
            lines.append(f"  {a['type']} {fmt_arg(a)}")
            for k, e in enumerate(reversed(a["evidence"]), 1):
                lines.append(f"      {k}. {e}")
        return "\n".join(lines)
