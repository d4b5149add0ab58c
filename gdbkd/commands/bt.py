"""kd bt: kernel backtrace of any task (crash's bt)."""

import gdb

from . import KdError, command
from ._util import KernelCommand, resolve_task, current_task
from ..kernel import stack as kstack
from ..kernel.tasks import all_tasks, cpu_thread_regs
from ..kernel.symbolize import describe
from ..kernel.memory import read_bytes, kernel
from ..kernel.access import user_thread
from ..kernel.vabits import strip_pac
from ..arm64.regs import pt_regs_dict, exception_level, is_aarch32, mode_name

__all__ = ["Bt", "BT_ADDRESSES", "bt_data", "bt_render", "add_bt_flags", "regs_for_task", "fmt_arg", "task_arg"]


def add_bt_flags(p):
    p.add_argument("-f", dest="frames_raw", action="store_true",
                   help="also print the raw stack words of each frame")
    p.add_argument("-l", dest="lines", action="store_true", help="show file:line of each frame")
    p.add_argument("-e", dest="exceptions", action="store_true",
                   help="search the whole stack for exception frames (pt_regs) and print them")
    p.add_argument("-t", dest="text", action="store_true",
                   help="list every kernel-text address found on the stack")
    p.add_argument("--fp", dest="fp_only", action="store_true",
                   help="for a task on a gdb thread, walk frame records instead of gdb's unwinder")
    p.add_argument("--args", dest="args", action="store_true",
                   help="every parameter of every frame: its value and how it was found "
                        "(DWARF location, entry value, callee-saved spill, move before a call)")


def regs_for_task(task, cur=None):
    """(thread, regs) when the task runs on a gdb thread (live vCPU or dump CPU), else (None, None)."""
    if cur is not None and cur[0].addr == task.addr:
        return user_thread(), cur[1]
    return cpu_thread_regs(task)


def task_arg(arg=None):
    """(task, gdb thread, regs) of a task argument (pid | task address | comm), or of the
    selected thread's task when ARG is None; thread and regs are None for a task no gdb
    thread runs (then it is unwound from its saved cpu_context)."""
    try:
        cur = current_task() if user_thread() is not None else None
    except KdError:
        cur = None
    if arg is not None:
        t = resolve_task(arg)
        th, regs = regs_for_task(t, cur)
        return t, th, regs
    if cur is None:
        raise KdError("no current task: give a PID or task address")
    return cur[0], user_thread(), cur[1]


#: kd bt's address keys (its frames, registers, stacks, words and --args values)
BT_ADDRESSES = frozenset(("task", "pc", "fp", "sp", "lo", "hi", "addr", "value", "raw", "pstate",
                          "orig_x0", *(f"x{i}" for i in range(31))))


def _regs_json(r: dict) -> dict:
    return {k: v for k, v in r.items() if k != "stackframe"}


def _frame_json(f, want_line):
    s = f.sym(want_line)
    name = f.gdb_name(s)
    d = {"level": f.level, "pc": f.pc, "fp": f.fp or None, "sp": f.sp or None, "kind": f.kind, "stack": f.stack,
         "function": name or s.name, "offset": s.offset if not name else None,
         "module": s.module, "inlined": False, "file": s.file, "line": s.line,
         "debuginfo": s.debuginfo}
    if f.regs is not None:
        d["exception"] = _regs_json(f.regs)
    out = []
    if not name:            # frame-record unwinding: show inline chain from DWARF blocks
        for fn in s.inlined:
            e = dict(d)
            e.update(function=fn, inlined=True, offset=None)
            e.pop("exception", None)
            out.append(e)
    else:
        d["inlined"] = bool(f.inline_of)
    out.append(d)
    return out


def _user_mode(task, regs, opts) -> dict:
    """The task runs in user mode on a CPU: no kernel frames; show the live registers."""
    r = pt_regs_dict([0] * 29 + [regs.get(n, 0) for n in ("fp", "lr", "sp", "pc", "cpsr")])
    r.update(orig_x0=0, syscallno=-1, addr=0)
    d = {**task.brief(), "source": "cpu registers (user mode)", "frames": [],
         "stop": "running in user mode", "stacks": [], "user_regs": _regs_json(r)}
    if getattr(opts, "exceptions", False):
        d["exception_frames"] = [_regs_json(x) for x in kstack.scan_exception_frames(task)]
    if getattr(opts, "text", False):
        d["text_words"] = []
    return d


def bt_data(task, regs=None, thread=None, opts=None) -> dict:
    want_line = True
    if regs is not None:
        ps = regs.get("cpsr", 4)
        if exception_level(ps) == 0 and not is_aarch32(ps):
            return _user_mode(task, regs, opts)
    u = kstack.best_unwind(task, regs, thread, getattr(opts, "fp_only", False))
    raw = _raw_words(u) if getattr(opts, "frames_raw", False) else {}
    frames = []
    owners = []
    for i, f in enumerate(u.frames):
        entries = _frame_json(f, want_line)
        if i in raw:
            entries[-1]["raw"] = raw[i]
        frames.extend(entries)
        owners.extend([f] * len(entries))
    for i, fr in enumerate(frames):
        fr["level"] = i
    if getattr(opts, "args", False):
        _add_args(u, task, thread, frames, owners)
    d = {**task.brief(), "source": u.start.get("source"), "frames": frames, "stop": u.stop,
         "stacks": [{"name": n, "lo": lo, "hi": hi} for n, lo, hi in u.ranges
                    if n == "task" or any(fr["stack"] == n for fr in frames)]}
    if getattr(opts, "exceptions", False):
        d["exception_frames"] = [_regs_json(r) for r in kstack.scan_exception_frames(task)]
    if getattr(opts, "text", False):
        start = u.start.get("sp") or (task.cpu_context or {}).get("sp")
        d["text_words"] = [{"addr": a, "value": v, "symbol": describe(strip_pac(v))}
                           for a, v in kstack.text_words(task, start)]
    return d


def _add_args(u, task, thread, frames, owners):
    """Each JSON frame gets ``args`` (kernel/args.py) and, when none can be listed,
    ``args_reason`` (OWNERS: the unwound Frame each JSON frame came from)."""
    from ..kernel.args import contexts, frame_args
    ctxs = {id(c.frame): c for c in contexts(u, task, thread)}
    for e, f in zip(frames, owners):
        e["args"] = []
        ctx = ctxs.get(id(f))
        if ctx is None or e["inlined"]:
            e["args_reason"] = "inlined: kd recovers the parameters of out-of-line frames only"
            continue
        fa = frame_args(ctx)
        e["args"] = fa["args"]
        if fa["reason"]:
            e["args_reason"] = fa["reason"]


def fmt_arg(a) -> str:
    v = a["value"]
    if v is None:
        return f"{a['name']} = ?  ({a['reason']})"
    shown = f"{v:#x}" if "*" in a["type"] or v < 0 or v > 4096 else str(v)
    if v < 0:
        shown = str(v)
    return f"{a['name']} = {shown}{'@entry' if a.get('at_entry') else ''}  [{a['how']}]"


def _raw_words(u) -> dict:
    """{level: [[addr, word]...]}: the stack between a frame's record and its caller's."""
    out = {}
    fs = u.frames
    for i, f in enumerate(fs):
        if not f.fp or i + 1 >= len(fs):
            continue
        nxt = fs[i + 1].fp
        if not nxt or nxt <= f.fp or nxt - f.fp > 2048 or fs[i + 1].stack != f.stack:
            continue
        try:
            raw = read_bytes(f.fp, nxt - f.fp)
        except gdb.MemoryError:
            continue
        out[i] = [[f.fp + j, int.from_bytes(raw[j:j + 8], "little")] for j in range(0, len(raw), 8)]
    return out


def _regs_block(r: dict, indent="    ") -> list:
    def sym(v):
        return f"  [{describe(strip_pac(v))}]" if v >> 48 == 0xFFFF else ""
    ps = r["pstate"]
    mode = mode_name(ps)
    pc, lr, sp = r["pc"], r["x30"], r["sp"]
    lines = [f"{indent} PC: {pc:016x}{sym(pc)}",
             f"{indent} LR: {lr:016x}{sym(lr)}",
             f"{indent} SP: {sp:016x}  PSTATE: {ps:08x} ({mode})"]
    row = []
    for i in range(29, -1, -1):
        row.append(f"X{i}: {r[f'x{i}']:016x}".rjust(21))
        if len(row) == 3 or i == 0:
            lines.append(indent + " ".join(row))
            row = []
    lines.append(f"{indent}ORIG_X0: {r['orig_x0']:016x}  SYSCALLNO: {r['syscallno']}"
                 f"  (pt_regs at {r['addr']:016x})")
    return lines


def bt_render(d: dict, opts=None) -> str:
    t = d
    lines = [f'PID: {t["pid"]:<7} TASK: {t["task"]:016x}  CPU: {t["cpu"]:<3} '
             f'COMMAND: "{t["comm"]}"']
    if "user_regs" in d:
        r = d["user_regs"]
        lines.append(f"    (running in user mode)  PC: {r['pc']:016x}  LR: {r['x30']:016x}"
                     f"  SP: {r['sp']:016x}  PSTATE: {r['pstate']:08x}")
    if d.get("source") == "thread.cpu_context" and t.get("active"):
        lines.append("    (running task without a gdb thread: shown from its last saved context)")
    prev_stack = None
    for f in d["frames"]:
        st = f["stack"]
        if prev_stack and st and st != prev_stack and prev_stack != "task":
            lines.append(f"--- <{prev_stack.split(':')[0]} stack> ---")
        if st:
            prev_stack = st
        name = f["function"] or "??"
        if f["inlined"]:
            name += " (inlined)"
        if f["module"] and not name.startswith("["):
            name += f" [{f['module']}]"
        addr = f["fp"] or f["sp"] or 0
        lines.append(f" #{f['level']:<2} [{addr:016x}] {name} at {f['pc']:016x}")
        if opts is not None and getattr(opts, "lines", False) and f["file"]:
            lines.append(f"     {f['file']}: {f['line']}")
        if "args" in f:
            for a in f["args"]:
                lines.append(f"     {fmt_arg(a)}")
            if f.get("args_reason"):
                lines.append(f"     (args: {f['args_reason']})")
        if "exception" in f:
            lines.extend(_regs_block(f["exception"]))
        if "raw" in f:
            words = f["raw"]
            for i in range(0, len(words), 2):
                pair = words[i:i + 2]
                lines.append(f"    {pair[0][0]:016x}: " + " ".join(f"{w[1]:016x}" for w in pair))
    nodwarf = {}
    for f in d["frames"]:
        if f.get("module") and f.get("debuginfo") not in (None, "dwarf"):
            nodwarf.setdefault(f["module"], f["debuginfo"])
    for mod, why in nodwarf.items():
        lines.append(f"    ({mod}: {why})")
    if d["stop"] and not d["stop"].startswith("end of stack") and "user" not in d["stop"]:
        lines.append(f"    (unwinding stopped: {d['stop']})")
    if "exception_frames" in d:
        lines.append("  EXCEPTION FRAMES ON THE STACK:" if d["exception_frames"]
                     else "  (no exception frames on the stack)")
        for r in d["exception_frames"]:
            lines.append(f"  pt_regs at {r['addr']:016x}:")
            lines.extend(_regs_block(r))
    if "text_words" in d:
        lines.append("  TEXT ADDRESSES ON THE STACK:")
        for w in d["text_words"]:
            lines.append(f"  [{w['addr']:016x}] {w['symbol']} at {w['value']:016x}")
    return "\n".join(lines)


@command
class Bt(KernelCommand):
    """Kernel backtrace of a task (crash's bt).

Without a task: the task running on the selected gdb thread (live: the vCPU's
current task; postmortem: the selected thread). Sleeping tasks are unwound
from task->thread.cpu_context through arm64 frame records, across exception
entries (struct pt_regs, printed as a register block), IRQ and overflow stacks.
With --args, a parameter whose chain of evidence is incomplete shows "?" with the
reason (kd args N spells out the evidence).
Frame lines read: #N [frame record address] function at pc."""

    name = "bt"
    json_addresses = BT_ADDRESSES

    def add_arguments(self, p):
        p.add_argument("-a", dest="all_cpus", action="store_true",
                       help="the active task on every CPU")
        add_bt_flags(p)
        p.add_argument("tasks", nargs="*", metavar="PID|TASK|COMM",
                       help="the tasks (default: the task on the selected gdb thread)")

    def run(self, args):
        out = []
        try:
            cur = current_task() if user_thread() is not None else None
        except KdError:
            cur = None
        if args.all_cpus:
            by_addr = {t.addr: t for t in all_tasks()}
            from ..model.tasks import active_tasks
            for cpu, addr in sorted(active_tasks(kernel()).items()):
                t = by_addr.get(addr)
                if t is None:
                    continue
                th, regs = regs_for_task(t, cur)
                out.append(bt_data(t, regs, th, args))
        elif args.tasks:
            for a in args.tasks:
                t = resolve_task(a)
                th, regs = regs_for_task(t, cur)
                out.append(bt_data(t, regs, th, args))
        else:
            if cur is None:
                raise KdError("no current task: give a PID or task address")
            t, regs = cur
            out.append(bt_data(t, regs, user_thread(), args))
        return out

    def render(self, data, args):
        return "\n\n".join(bt_render(d, args) for d in data)
