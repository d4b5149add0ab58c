"""The queued spin lock's word and its MCS queue (kernel/locking/qspinlock.c; arm64 uses
qspinlock since v4.19).

The 32-bit word (include/asm-generic/qspinlock_types.h, NR_CPUS < 16K): byte 0 locked,
byte 1 pending (one waiter spinning on the word itself), bits 16-17 the tail's node index,
bits 18-31 the tail's CPU + 1 (0: no queue). Further waiters queue in per-CPU MCS nodes:
``qnodes[MAX_NODES]`` of ``struct qnode {struct mcs_spinlock mcs; …}`` (v5.1+; before,
``mcs_nodes[]`` of ``struct mcs_spinlock``), ``mcs_spinlock {next; locked; count}``, with
``qnodes[0].mcs.count`` the CPU's nodes in use (one per nesting context). The queue runs
from its head (the next to take the lock) through ``next`` to the tail the word names.
"""

from .percpu import per_cpu_addr, possible_cpus
from .reader import MemoryFault

__all__ = ["decode", "mcs_queue", "describe_qrwlock", "describe", "describe_spin", "free_spin"]


def decode(word):
    """{locked, pending, tail_cpu, tail_idx} of a qspinlock word (tail_* None: no queue)."""
    tail_cpu = (word >> 18) - 1 if word >> 18 else None
    return {"locked": word & 0xFF, "pending": (word >> 8) & 0xFF,
            "tail_cpu": tail_cpu, "tail_idx": (word >> 16) & 3 if tail_cpu is not None else None}


def _nodes(k):
    """(per-CPU array address, node size, next offset, count offset) or None."""
    for sym, typ, pre in (("qnodes", "struct qnode", "mcs."), ("mcs_nodes", "struct mcs_spinlock", "")):
        a = k.sym(sym)
        size = k.sizeof(typ)
        nxt = k.offset(typ, pre + "next") if pre else k.offset(typ, "next")
        cnt = k.offset(typ, pre + "count") if pre else k.offset(typ, "count")
        if a is not None and size and None not in (nxt, cnt):
            return a, size, nxt, cnt
    return None


def mcs_queue(k, tail_cpu, tail_idx):
    """[(cpu, node index)] of the MCS queue from its head to the tail (tail_cpu,
    tail_idx); [] when this kernel's nodes cannot be read, or the tail is not in use."""
    layout = _nodes(k)
    if layout is None or tail_cpu is None:
        return []
    a, size, nxt, cnt = layout
    r = k.reader
    node_at, nexts = {}, {}
    try:
        for c in possible_cpus(k):
            base = per_cpu_addr(k, a, c)
            used = r.s32(base + cnt)
            for i in range(max(0, min(used, 4))):
                n = base + i * size
                node_at[n] = (c, i)
                nexts[n] = r.u64(n + nxt)
    except (MemoryFault, IndexError):
        return []
    tail = per_cpu_addr(k, a, tail_cpu) + tail_idx * size
    if tail not in node_at:
        return []
    prev = {v: n for n, v in nexts.items() if v in node_at}
    order, cur = [tail], tail
    while cur in prev and prev[cur] not in order and len(order) < len(node_at):
        cur = prev[cur]
        order.append(cur)
    return [node_at[n] for n in reversed(order)]


def describe_qrwlock(cnts):
    """struct qrwlock's ``cnts`` (include/asm-generic/qrwlock.h) in words: the writer byte
    0xff, bit 8 a waiting writer, the readers from bit 9."""
    return (f"cnts={cnts:#x}: " + ("write-locked" if cnts & 0xFF else f"{cnts >> 9} reader(s)")
            + (", a writer waiting" if cnts & 0x100 else ""))


def describe(k, addr):
    """The qspinlock word at ``addr`` in words, with the MCS queue when one has formed; an
    unreadable word is said ("lock word unreadable (why)")."""
    try:
        w = k.reader.u32(addr)
    except MemoryFault as e:
        return f"lock word unreadable ({e})"
    d = decode(w)
    s = f"val={w:#x}: {'locked' if d['locked'] else 'unlocked'}"
    if d["pending"]:
        s += ", pending"
    if d["tail_cpu"] is not None:
        s += f", queue tail CPU {d['tail_cpu']} (node {d['tail_idx']})"
        q = mcs_queue(k, d["tail_cpu"], d["tail_idx"])
        if q:
            s += ", MCS queue " + " -> ".join(f"CPU {c}" + (f" (node {i})" if i else "") for c, i in q)
    return s


def describe_spin(k, kind, addr):
    """A spin lock ("spinlock": a qspinlock) or rwlock (a qrwlock, whose ``cnts`` is its
    first word) at ``addr`` in words."""
    if kind == "spinlock":
        return describe(k, addr)
    try:
        return describe_qrwlock(k.reader.u32(addr))
    except MemoryFault as e:
        return f"lock word unreadable ({e})"


def free_spin(k, kind, addr):
    """The lock word in words when it proves that nobody holds the spin lock or rwlock at
    ``addr``, else None (held, or unreadable): a qspinlock whose locked byte is 0 (its
    holder always has it set: pending and queued waiters do not), a qrwlock with no writer
    and no reader (``cnts`` 0 but for the waiting-writer bit)."""
    try:
        w = k.reader.u32(addr)
    except MemoryFault:
        return None
    if (w & 0xFF) if kind == "spinlock" else (w & ~0x100):
        return None
    return describe_spin(k, kind, addr)
