"""Where kernel stacks are: a task's (THREAD_SIZE bytes from ``task->stack``) and each
CPU's IRQ, overflow and SDEI stacks (per-CPU ``irq_stack_ptr``, ``overflow_stack``,
``sdei_stack_*_ptr``).

The frame-record unwinder (:mod:`.stack`) tags every frame with the stack it lies
on; the task list (:mod:`.tasks`) finds the CPU whose per-CPU stack holds a
thread's sp.
"""

import gdb

from ..model.tasks import thread_size
from ..model.percpu import possible_cpus
from .memory import kernel, read_bytes
from .percpu import per_cpu_addr
from .snapshot import stop_cached
from .symbols import vmlinux_symbol_address

__all__ = ["stack_ranges", "stack_of"]


def _percpu_ptr_stacks(name, size, label):
    out = []
    a = vmlinux_symbol_address(name)
    if a is None:
        return out
    for cpu in possible_cpus(kernel()):
        try:
            base = int.from_bytes(read_bytes(per_cpu_addr(a, cpu), 8), "little")
        except (gdb.MemoryError, IndexError):
            continue
        if base:
            out.append((f"{label}:{cpu}", base, base + size))
    return out


@stop_cached
def _global_stacks():
    size = thread_size(kernel())
    out = _percpu_ptr_stacks("irq_stack_ptr", size, "IRQ")
    a = vmlinux_symbol_address("overflow_stack")
    if a is not None:
        osz = kernel().sizeof("overflow_stack") or 4096
        for cpu in possible_cpus(kernel()):
            b = per_cpu_addr(a, cpu)
            out.append((f"overflow:{cpu}", b, b + osz))
    out += _percpu_ptr_stacks("sdei_stack_normal_ptr", size, "SDEI")
    out += _percpu_ptr_stacks("sdei_stack_critical_ptr", size, "SDEI-critical")
    return out


def stack_ranges(task=None) -> list:
    """[(name, lo, hi)]: the task's stack, then every CPU's IRQ/overflow/SDEI stacks."""
    out = []
    if task is not None and task.stack:
        out.append(("task", task.stack, task.stack + thread_size(kernel())))
    return out + _global_stacks()


def stack_of(addr: int, ranges) -> str:
    """The name of the range in RANGES (:func:`stack_ranges`) holding ADDR, or None."""
    for name, lo, hi in ranges:
        if lo <= addr < hi:
            return name
    return None
