"""kd unwind: the arm64 frame-record walk, optionally step by step (lab 8)."""

from . import command
from ._util import KernelCommand
from .bt import task_arg

__all__ = ["Unwind"]


def _h(v):
    return f"{v:016x}" if v is not None else "?" * 16


@command
class Unwind(KernelCommand):
    """Walk a task's frame records by hand, as lab 8 teaches, and recover past a broken one.

x29 (fp) points at the frame record {[fp] = caller's fp, [fp+8] = lr}; the
instruction before lr is the call; the caller's prologue says where its record
sits in its frame. Where a record is garbage (a stack overflow), the walk
resumes from the stack: the broken function's prologue gives its frame size,
the first plausible record above it (fp higher on the same stack, lr after a
bl/blr) continues the chain, and those frames are marked RECOVERED.
Unlike kd bt, this is always the frame-record walk (no DWARF unwinding)."""

    name = "unwind"
    json_addresses = frozenset(("task", "pc", "fp", "start", "pt_regs", "x29", "lr", "sp", "at",
                                "caller_fp"))

    def add_arguments(self, p):
        p.add_argument("--explain", action="store_true",
                       help="show every record read, every check, and the recovery steps")
        p.add_argument("task", nargs="?", metavar="PID|TASK|COMM",
                       help="PID, task address or comm (default: the selected thread's task)")

    def run(self, args):
        from ..kernel.unwind_explain import explain_unwind
        t, _thread, regs = task_arg(args.task)
        return explain_unwind(t, regs)

    def render(self, d, args):
        t = d
        lines = [f'PID: {t["pid"]}  TASK: {t["task"]:016x}  COMMAND: "{t["comm"]}"  '
                 f'(start: {d["source"]})']
        for f in d["frames"]:
            mark = "  RECOVERED" if f["recovered"] else ""
            mod = f" [{f['module']}]" if f["module"] and "[" not in f["label"] else ""
            lines.append(f" #{f['level']:<2} fp {_h(f['fp'])}  {f['label']}{mod}"
                         f"{' at ' + _h(f['pc']) if f['pc'] else ''}{mark}")
            if not args.explain:
                continue
            if f.get("note"):
                lines.append(f"      {f['note']}")
            p = f.get("prologue") or {}
            if p.get("record_insn"):
                lines.append(f"      prologue: `{p['record_insn']}`, `{p['x29_insn']}` "
                             f"(frame record {p['frame_size']:#x} bytes below its entry sp)"
                             if p.get("frame_size") is not None else
                             f"      prologue: `{p['record_insn']}`")
            elif f["pc"] and "error" not in p:
                lines.append("      prologue: no frame record before this pc (a leaf, or interrupted early)")
            if "exception" in f:
                e = f["exception"]
                lines.append(f"      exception entry: pt_regs at {e['pt_regs']:#x}: pc {e['pc']:#x}, "
                             f"x29 {e['x29']:#x}, lr {e['lr']:#x}, sp {e['sp']:#x} -> the interrupted frame")
            if f.get("lr_frame"):
                lines.append("      interrupted before it stored its frame record: its caller is in lr")
            r = f.get("record")
            if r:
                lines.append(f"      record at fp {r['at']:#x}: [fp] = {r['caller_fp']:#x} (caller's fp), "
                             f"[fp+8] = {r['lr']:#x} (lr)" + ("  <- BROKEN" if r.get("broken") else "")
                             + ("  (found by the stack scan)" if r.get("found_by_scan") else ""))
            for c in f.get("checks", []):
                lines.append(f"        [{'ok' if c['ok'] else 'FAIL'}] {c['check']}")
        if d["broken"]:
            lines.append("  the frame-record chain was broken; recovery from the stack:")
            for s in d["recovery"]["steps"]:
                lines.append(f"    - {s}")
            if d["recovery"]["failed"]:
                lines.append(f"    recovery failed: {d['recovery']['failed']}")
        lines.append(f"  (walk ended: {d['stop']})")
        return "\n".join(lines)
