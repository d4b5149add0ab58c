"""Reaching kernel memory through a live gdbstub when some CPUs are in user mode.

QEMU's gdbstub translates virtual addresses with the MMU state of the CPU of
the selected gdb thread. With kernel page-table isolation (KPTI: arm64 since
4.16, forced on by KASLR for cores without E0PD) a CPU running user code — or
the trampoline on its way in or out — has only the trampoline mapped in TTBR1,
so every kernel address reads as "Cannot access memory" (and its VBAR_EL1 is
the trampoline alias, not ``vectors``). :func:`kernel_view` temporarily selects
a thread whose CPU maps the kernel, and restores the user's thread and frame.
Dumps and CPUs stopped in the kernel need no switch.
"""

import contextlib

import gdb

from . import memory
from .symbols import vmlinux_symbol_address
from .selection import selection

__all__ = ["kernel_view", "kernel_thread", "KernelUnmapped", "user_thread"]

_user_threads = []


def user_thread():
    """The thread the user had selected before :func:`kernel_view` switched away."""
    return _user_threads[-1] if _user_threads else gdb.selected_thread()


class KernelUnmapped(gdb.GdbError):
    pass


def _probe_addr():
    for name in ("init_task", "linux_banner", "jiffies_64"):
        a = vmlinux_symbol_address(name)
        if a is not None:
            return a
    return None


def _readable(addr) -> bool:
    """Whether the selected thread's CPU maps ``addr`` — asked of the target itself,
    past kd's block cache (cached kernel memory says nothing about this CPU's tables)."""
    return memory.target_readable(addr, 8)


def kernel_thread():
    """A thread whose CPU maps kernel memory (the selected one if it does), or None."""
    addr = _probe_addr()
    sel = gdb.selected_thread()
    if addr is None or sel is None or _readable(addr):
        return sel
    for t in sorted(gdb.selected_inferior().threads(), key=lambda t: t.num):
        if t == sel:
            continue
        with selection(t):
            if _readable(addr):
                return t
    return None


@contextlib.contextmanager
def kernel_view():
    """Run the body with a thread selected through which kernel memory is readable."""
    sel = gdb.selected_thread()
    _user_threads.append(sel)
    try:
        if _dump_in_process():
            # kd reads the dump itself: any thread (or none, when the dump server
            # could not list them) sees all of it, and KPTI advice would be wrong
            yield sel
            return
        t = kernel_thread()
        if t is None:
            raise KernelUnmapped(
                "no thread reads kernel memory: on a live target every stopped CPU is in "
                "user mode under KPTI (stop the guest inside the kernel, e.g. `hbreak "
                "schedule` + `continue`); on a dump served to gdb, the server's messages "
                "say which memory it could not read")
        with selection(t):
            yield t
    finally:
        _user_threads.pop()


def _dump_in_process() -> bool:
    """Whether kd reads a dump opened in this process (gdbkd core, kd reader --dump)."""
    return getattr(memory, "_dump", None) is not None
