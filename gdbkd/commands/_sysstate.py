"""Helpers shared by the system-state commands (files, vm, mount, net, irq, timer, waitq,
tree, dev): the task header, guest strings, address arguments and a symbol namer."""

import gdb

from . import KdError
from ._util import resolve_task
from ..kernel.memory import kernel
from ..kernel.symbolize import eval_address
from ..textutil import escape

__all__ = ["task_header", "render_header", "guest_str", "address_arg", "kernel", "pick_task",
           "symbol_name"]


def guest_str(b) -> str:
    """A string read from guest memory, escaped for terminals and JSON."""
    return escape(b) if b is not None else None


def pick_task(arg):
    """The task named by a PID|TASK|COMM argument (the selected thread's task when None)."""
    return resolve_task(arg)


def task_header(t) -> dict:
    return {"pid": t.pid, "task": t.addr, "cpu": t.run_cpu, "comm": t.comm}


def render_header(h) -> str:
    return f'PID: {h["pid"]:<7} TASK: {h["task"]:016x}  CPU: {h["cpu"]:<3} COMMAND: "{h["comm"]}"'


def address_arg(expr: str, what: str) -> int:
    """An address from a hex number, symbol or gdb expression; a one-line error otherwise."""
    try:
        a = eval_address(expr)
    except gdb.error as e:
        raise KdError(f"cannot evaluate {escape(expr)} as {what}: {e}")
    if not a:
        raise KdError(f"{escape(expr)} is NULL, not {what}")
    return a


def symbol_name(addr: int):
    """``name+0xoff [module]`` of a kernel address gdb or a module's kallsyms knows, or None."""
    if not addr:
        return None
    from ..kernel.symbolize import lookup
    try:
        s = lookup(addr, want_line=False)
    except (gdb.error, gdb.MemoryError):
        return None
    return s.label() if s.name else None
