"""CPUs and per-CPU variables.

``per_cpu(sym, cpu)`` = ``&sym + __per_cpu_offset[cpu]`` (generic SMP per-CPU
layout, unchanged from 2.6 through 6.12). gdb itself cannot print a per-CPU
variable (it reads the unrelocated ``.data..percpu`` address), so commands go
through here.

The CPU a gdb thread runs on: the CPU whose per-CPU offset its ``TPIDR_EL1`` or
``TPIDR_EL2`` holds (gdbkd/model/percpu.py ``cpu_of_percpu_offset``); QEMU's
gdbstub exposes both.
When neither matches (dump stubs without system registers) the thread's number
minus one is used, QEMU's numbering of vCPUs (only when there are no more
threads than CPUs: a dump stub that shows every task as a thread gets None).
"""

import gdb

from .types import lookup_type
from .symbols import symbol_address
from .snapshot import stop_cached
from .memory import kernel
from .selection import selection
from ..model import percpu as _percpu
from ..model.reader import MemoryFault

__all__ = ["cpu_offsets", "per_cpu_addr", "per_cpu", "cpu_of_thread", "on_thread"]


def on_thread(thread, fn):
    """Run ``fn(newest_frame)`` with ``thread`` selected; restore thread and frame."""
    with selection(thread):
        return fn(gdb.newest_frame())


def cpu_offsets() -> list:
    """__per_cpu_offset[0 .. nr_cpu_ids) ([0] on !SMP kernels)."""
    try:
        return _percpu.cpu_offsets(kernel())
    except MemoryFault as e:
        raise gdb.MemoryError(str(e)) from None


def per_cpu_addr(addr: int, cpu: int) -> int:
    """Address of CPU ``cpu``'s copy of the per-CPU object at link address ``addr``."""
    try:
        return _percpu.per_cpu_addr(kernel(), addr, cpu)
    except MemoryFault as e:
        raise gdb.MemoryError(str(e)) from None


def per_cpu(name: str, cpu: int, typename: str = None) -> gdb.Value:
    """CPU ``cpu``'s instance of per-CPU variable ``name`` as a gdb lvalue."""
    addr = per_cpu_addr(symbol_address(name), cpu)
    t = lookup_type(typename) if typename else gdb.parse_and_eval(name).type
    return gdb.Value(addr).cast(t.pointer()).dereference()


def _reg(frame, name):
    try:
        return int(frame.read_register(name)) & 0xFFFFFFFFFFFFFFFF
    except (gdb.error, ValueError):
        return None


def cpu_of_thread(thread) -> int:
    """The CPU number a gdb thread stands for (see module docstring), or None."""
    offs = cpu_offsets()
    k = kernel()

    def probe(fr):
        for reg in ("TPIDR_EL1", "TPIDR_EL2"):
            c = _percpu.cpu_of_percpu_offset(k, _reg(fr, reg))
            if c is not None:
                return c
        return None
    try:
        c = on_thread(thread, probe)
        if c is not None:
            return c
    except gdb.error:
        pass
    if _thread_count() > len(offs):
        return None           # threads are tasks (dump stub), not vCPUs
    n = thread.num - 1
    return n if 0 <= n < len(offs) else None


@stop_cached
def _thread_count() -> int:
    # one thread-list fetch per stop: with a dump stub serving 10,000 tasks each
    # inferior.threads() re-reads and re-parses the whole list
    return len(gdb.selected_inferior().threads())
