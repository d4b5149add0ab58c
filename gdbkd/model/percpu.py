"""CPUs and per-CPU variables, without gdb.

``per_cpu(sym, cpu)`` = ``&sym + __per_cpu_offset[cpu]`` (generic SMP per-CPU
layout, unchanged from 2.6 through 6.12).

CPU masks: ``__cpu_{possible,present,online}_mask`` (v4.5+; ``cpu_*_bits``
before). On a dump the online mask is not what it was while the machine ran:
panic() and crash_kexec() take the other CPUs offline before the dump is
written, so "the CPUs that ran tasks" is the *present* mask
(:func:`present_cpus`); the idle tasks exist for every possible CPU.

Which CPU a register set belongs to: arm64 keeps the CPU's per-CPU offset in
``TPIDR_EL1`` (``TPIDR_EL2`` when the kernel runs at EL2 with VHE, since 4.16):
:func:`cpu_of_percpu_offset` (kd's gdb threads, the live proxy's vCPUs).
"""

from .kernel import per_stop
from .reader import MemoryFault

__all__ = ["nr_cpu_ids", "cpu_offsets", "per_cpu_addr", "cpu_mask", "possible_cpus",
           "present_cpus", "online_cpus", "cpu_of_percpu_offset"]


@per_stop
def nr_cpu_ids(k) -> int:
    a = k.sym("nr_cpu_ids")          # unsigned int (a macro on !SMP kernels)
    if a is None:
        return 1
    try:
        n = k.reader.u32(a)
    except MemoryFault:
        return 1
    return max(1, min(n, 4096))


@per_stop
def cpu_offsets(k) -> list:
    """``__per_cpu_offset[0 .. nr_cpu_ids)`` ([0] on !SMP kernels)."""
    addr = k.sym("__per_cpu_offset")
    if addr is None:
        return [0]
    n = nr_cpu_ids(k)
    raw = k.reader.read(addr, 8 * n)
    return [int.from_bytes(raw[i * 8:i * 8 + 8], "little") for i in range(n)]


def per_cpu_addr(k, addr: int, cpu: int) -> int:
    """Address of CPU ``cpu``'s copy of the per-CPU object at (link-relocated) ``addr``."""
    offs = cpu_offsets(k)
    if not 0 <= cpu < len(offs):
        raise IndexError(f"no CPU {cpu} (nr_cpu_ids = {len(offs)})")
    return (addr + offs[cpu]) & 0xFFFFFFFFFFFFFFFF


@per_stop
def cpu_mask(k, kind: str) -> list:
    """CPUs in ``__cpu_<kind>_mask`` (``cpu_<kind>_bits`` before 4.5); every CPU below
    nr_cpu_ids when the kernel has neither."""
    n = nr_cpu_ids(k)
    for name in (f"__cpu_{kind}_mask", f"cpu_{kind}_bits"):
        a = k.sym(name)
        if a is not None:
            bits = int.from_bytes(k.reader.read(a, ((n + 63) // 64) * 8), "little")
            return [c for c in range(n) if bits >> c & 1]
    return list(range(n))


def possible_cpus(k) -> list:
    return cpu_mask(k, "possible")


def present_cpus(k) -> list:
    return cpu_mask(k, "present")


def online_cpus(k) -> list:
    return cpu_mask(k, "online")


def cpu_of_percpu_offset(k, value):
    """The CPU whose ``__per_cpu_offset`` is VALUE (a ``TPIDR_EL1``/``TPIDR_EL2``), or None
    when VALUE is None or not exactly one CPU's (an early-boot or offline CPU)."""
    offs = cpu_offsets(k)
    if value is None or offs.count(value) != 1:
        return None
    return offs.index(value)
