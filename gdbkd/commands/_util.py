"""Helpers shared by the kd command modules (not a command itself)."""

import gdb

from . import KdCommand, KdError
from ..kernel.access import user_thread
from ..kernel.tasks import task_from_arg, thread_task, STATE_CODES

__all__ = ["resolve_task", "current_task", "is_state", "hexaddr", "kd_error", "KernelCommand",
           "problem_lines"]


def kd_error(msg):
    raise KdError(msg)


def resolve_task(arg):
    """Task named by a pid / task address / comm argument, or the current task."""
    if arg is None:
        return current_task()[0]
    return task_from_arg(arg, kd_error)


def current_task():
    """(Task, regs) of the selected gdb thread (see kernel.tasks.thread_task)."""
    if user_thread() is None:
        raise KdError("no thread selected: connect to a target first")
    try:
        return thread_task()
    except gdb.GdbError as e:
        raise KdError(str(e))


def is_state(tok: str) -> bool:
    return tok.upper() in STATE_CODES and tok.isupper()


def problem_lines(command: str, problems) -> list:
    """One line per damaged kernel list (``ListProblem.to_json()`` dicts), as kd prints
    them under a command's output: ``kd ps: task list (init_task.tasks) damaged at …``."""
    return [f"kd {command}: {p['line']}" for p in problems]


def hexaddr(v) -> str:
    return f"{v:016x}" if v is not None else "-"


class KernelCommand(KdCommand):
    """A kd command that reads kernel memory (the framework now selects a thread whose
    CPU maps the kernel for every command; kept as a name for the command files)."""

