"""Where kernel stacks are, without gdb: a task's (THREAD_SIZE bytes from ``task->stack``)
and each possible CPU's IRQ, overflow and SDEI stacks.

* IRQ stacks: per-CPU ``irq_stack_ptr`` (arm64, since v4.14 with VMAP_STACK, commit
  f60fe78f1332 "arm64: use an irq stack pointer"), each THREAD_SIZE bytes.
* Overflow stacks: the per-CPU array ``overflow_stack`` (v4.14, commit 872d8327ce89
  "arm64: add VMAP_STACK overflow detection"), its own size.
* SDEI stacks: per-CPU ``sdei_stack_normal_ptr`` / ``sdei_stack_critical_ptr`` (v4.16,
  with firmware-first SDEI and VMAP_STACK), each THREAD_SIZE bytes.

A symbol this kernel lacks adds no range. kd's frame walk (gdbkd/kernel/stack.py) tags
every frame with the stack it lies on; the task list finds the CPU whose per-CPU stack
holds a thread's sp.
"""

from .kernel import per_stop
from .percpu import per_cpu_addr, possible_cpus
from .reader import MemoryFault
from .tasks import thread_size

__all__ = ["stack_ranges", "stack_of"]


def _percpu_ptr_stacks(k, name, size, label):
    out = []
    a = k.sym(name)
    if a is None:
        return out
    for cpu in possible_cpus(k):
        try:
            base = k.reader.u64(per_cpu_addr(k, a, cpu))
        except (MemoryFault, IndexError):
            continue
        if base:
            out.append((f"{label}:{cpu}", base, base + size))
    return out


@per_stop
def _global_stacks(k):
    size = thread_size(k)
    out = _percpu_ptr_stacks(k, "irq_stack_ptr", size, "IRQ")
    a = k.sym("overflow_stack")
    if a is not None:
        osz = k.sizeof("overflow_stack") or 4096
        for cpu in possible_cpus(k):
            try:
                b = per_cpu_addr(k, a, cpu)
            except (MemoryFault, IndexError):
                continue
            out.append((f"overflow:{cpu}", b, b + osz))
    out += _percpu_ptr_stacks(k, "sdei_stack_normal_ptr", size, "SDEI")
    out += _percpu_ptr_stacks(k, "sdei_stack_critical_ptr", size, "SDEI-critical")
    return out


def stack_ranges(k, task=None) -> list:
    """[(name, lo, hi)]: TASK's stack (a model Task), then every CPU's IRQ/overflow/SDEI
    stacks."""
    out = []
    if task is not None and task.stack:
        out.append(("task", task.stack, task.stack + thread_size(k)))
    return out + _global_stacks(k)


def stack_of(addr: int, ranges) -> str:
    """The name of the range in RANGES (:func:`stack_ranges`) holding ADDR, or None."""
    for name, lo, hi in ranges:
        if lo <= addr < hi:
            return name
    return None
