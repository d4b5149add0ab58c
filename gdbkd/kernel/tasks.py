"""Tasks inside gdb: the model's task list (gdbkd/model/tasks.py) over kd's reader,
plus what needs gdb: the task a gdb thread stands for, its registers, and the gdb
thread of each CPU's current task.

Enumeration, state letters, version differences and the one task selector
live in :mod:`gdbkd.model.tasks` (no gdb); this module binds them to
:func:`gdbkd.kernel.memory.kernel`.
"""

import gdb

from .memory import kernel
from .percpu import cpu_of_thread, cpu_offsets, on_thread
from .access import user_thread
from .snapshot import stop_cached
from ..model.stacks import stack_ranges, stack_of
from ..model import tasks as _model
from ..model.tasks import (Task, state_code, STATE_CODES, PF_KTHREAD, parse_task_spec,
                           select_tasks, is_state)
from ..model.reader import MemoryFault
from ..textutil import escape

__all__ = ["Task", "all_tasks", "task_by_addr", "find_tasks", "state_code",
           "STATE_CODES", "thread_task", "thread_regs", "PF_KTHREAD", "parse_task_spec",
           "task_from_arg", "select_tasks", "is_state", "read_task", "cpu_thread_regs",
           "threads_by_cpu"]


def read_task(addr: int) -> Task:
    try:
        return _model.read_task(kernel(), addr)
    except MemoryFault as e:
        raise gdb.MemoryError(str(e)) from None


def all_tasks() -> list:
    """Every task (idle tasks, processes, threads), sorted by pid; cached per stop."""
    try:
        return _model.task_list(kernel())
    except MemoryFault as e:
        raise gdb.GdbError(f"cannot read the task list: {e}") from None


def task_by_addr(addr: int):
    for t in all_tasks():
        if t.addr == addr:
            return t
    return None


def find_tasks(spec) -> list:
    kind, v = spec
    out = select_tasks(all_tasks(), [spec])
    if kind == "task" and not out:
        # not on the lists (exited, or a stale pointer): decode it anyway
        try:
            out.append(read_task(v))
        except (gdb.MemoryError, gdb.error):
            pass
    return out


def task_from_arg(arg: str, error):
    """The single task named by ``arg`` (pid, task address or comm); calls ``error(msg)``."""
    spec = parse_task_spec(arg)
    found = find_tasks(spec)
    if not found:
        error(f"no task {escape(arg)}")
    if spec[0] == "pid" and spec[1] == 0 and len(found) > 1:
        return found[0]
    if len(found) > 1 and spec[0] == "comm":
        pids = ", ".join(str(t.pid) for t in found[:8])
        error(f"{len(found)} tasks named {escape(arg)} (pids {pids}…): give a pid")
    return found[0]


_REGS = ("pc", "sp", "x29", "x30", "cpsr", "SP_EL0", "ELR_EL1")


def thread_regs(thread=None) -> dict:
    """pc, sp, fp, lr, cpsr (and SP_EL0, ELR_EL1 if the target has them: live, not dumps) of
    a gdb thread's newest frame."""
    thread = thread or user_thread()
    if thread is None:
        raise gdb.GdbError("no thread selected (is a target connected?)")

    def read(fr):
        out = {}
        for r in _REGS:
            try:
                out[r] = int(fr.read_register(r)) & 0xFFFFFFFFFFFFFFFF
            except (gdb.error, ValueError):
                pass
        return out
    regs = on_thread(thread, read)
    regs["fp"] = regs.pop("x29", 0)
    regs["lr"] = regs.pop("x30", 0)
    return regs


@stop_cached
def threads_by_cpu() -> dict:
    """{cpu: gdb.InferiorThread}: live, the vCPU threads; on the dump stub (a thread per
    task, thread id = ``Task.tid``), the thread of each CPU's ``rq->curr``."""
    out = {}
    inf = gdb.selected_inferior()
    threads = inf.threads()
    if len(threads) > len(cpu_offsets()):
        by_tid = {(t.ptid[1] or t.ptid[2]): t for t in threads}
        for cpu, addr in _model.active_tasks(kernel()).items():
            tk = task_by_addr(addr)
            if tk is None:
                continue
            th = by_tid.get(tk.tid)
            if th is not None:
                out[cpu] = th
        return out
    for t in threads:
        c = cpu_of_thread(t)
        if c is not None and c not in out:
            out[c] = t
    return out


def cpu_thread_regs(task):
    """(gdb thread, regs) of a task running on a CPU (a live vCPU or a dump's CPU), else
    (None, None); then it is unwound from its saved cpu_context."""
    if task.active_cpu is None:
        return None, None
    th = threads_by_cpu().get(task.active_cpu)
    if th is not None:
        return th, thread_regs(th)
    # a dump stub with one thread per task: the thread whose sp is on this task's stack
    size = _model.thread_size(kernel())
    for th in gdb.selected_inferior().threads():
        try:
            r = thread_regs(th)
        except gdb.error:
            continue
        if task.stack <= r.get("sp", 0) < task.stack + size:
            return th, r
    return None, None


def _cpu_of_percpu_stack(sp):
    """The CPU whose IRQ, overflow or SDEI stack holds ``sp`` (a CPU that took an interrupt,
    e.g. the soft-lockup watchdog's panic in its hrtimer), or None."""
    where = stack_of(sp, stack_ranges(kernel())) if sp else None
    return int(where.rsplit(":", 1)[1]) if where and ":" in where else None


def thread_task(thread=None):
    """(Task, regs) for the task a gdb thread is running.

    Live: ``SP_EL0`` holds ``current`` while the CPU is in EL1 (arm64 since 4.10);
    otherwise the task whose stack holds ``sp``; otherwise ``rq->curr`` of the CPU
    whose per-CPU (IRQ, overflow, SDEI) stack holds ``sp``, or of the thread's CPU."""
    thread = thread or user_thread()
    regs = thread_regs(thread)
    tasks = all_tasks()
    t = _model.current_task(kernel(), regs)
    if t is not None:
        return t, regs
    sp = regs.get("sp", 0)
    size = _model.thread_size(kernel())
    for t in tasks:
        if t.stack and t.stack <= sp < t.stack + size:
            return t, regs
    cpu = _cpu_of_percpu_stack(sp)
    if cpu is None:
        cpu = cpu_of_thread(thread)
    if cpu is not None:
        t = _model.current_task(kernel(), regs, cpu)
        if t is not None:
            return t, regs
    raise gdb.GdbError("cannot tell which task the selected thread is running")
