"""Interrupt descriptors without gdb (crash's ``irq``, /proc/interrupts).

Where the descriptors are (CONFIG_SPARSE_IRQ, which arm64 selects):

* up to 6.4 (5.10, 6.1): the radix tree ``irq_desc_tree`` — an XArray since
  4.20 — indexed by irq number;
* 6.5+ (6.12): the maple tree ``sparse_irqs`` (commit 721255b9826b, "genirq:
  Use a maple tree for interrupt descriptor management").

``struct irq_desc`` {``irq_data.irq``, ``irq_data.hwirq``, ``irq_data.chip``
(``struct irq_chip``: ``name``), ``action`` (``struct irqaction`` chain:
``handler``, ``thread_fn``, ``name``, ``next``), ``handle_irq`` (the flow
handler), ``kstat_irqs``, ``irq_common_data.affinity``}. ``kstat_irqs`` is a
per-CPU ``unsigned int`` up to 6.9 and a per-CPU ``struct irqstat`` whose
first member ``cnt`` is that counter from 6.10 (commit 86d2a2f51fba): either
way the count is the ``u32`` at the per-CPU address. ``affinity`` is a
``cpumask_var_t``: an inline bitmap, or a pointer with CPUMASK_OFFSTACK.
"""

from .kernel import per_stop
from .percpu import per_cpu_addr, possible_cpus, nr_cpu_ids
from .reader import MemoryFault
from .trees import xarray_entries, maple_entries

__all__ = ["irq_descs", "irq_info"]

_DESC = ["irq_data.irq", "irq_data.hwirq", "irq_data.chip", "action", "handle_irq",
         "kstat_irqs", "irq_common_data.affinity", "name", "depth"]
_ACTION = ["handler", "thread_fn", "name", "next", "irq", "flags", "dev_id"]


def irq_descs(k):
    """([(irq, struct irq_desc *)], where they were found, stop reason)."""
    mt = k.sym("sparse_irqs")
    if mt is not None:
        w = maple_entries(k, mt)
        return [(first, e) for first, _, e in w.entries], "sparse_irqs (maple tree)", w.stop
    xa = k.sym("irq_desc_tree")
    if xa is not None:
        w = xarray_entries(k, xa, values=False)
        return [(i, e) for i, _, e in w.entries], "irq_desc_tree (radix tree)", w.stop
    arr = k.sym("irq_desc")
    if arr is None:
        raise MemoryFault(0, "this kernel has neither sparse_irqs, irq_desc_tree nor irq_desc[]")
    size = k.sizeof("struct irq_desc")
    n = _nr_irqs(k)
    return [(i, arr + i * size) for i in range(n)], "irq_desc[] (array)", None


def _nr_irqs(k) -> int:
    for name in ("total_nr_irqs", "nr_irqs"):
        a = k.sym(name)
        if a is not None:
            return k.reader.u32(a)
    return 0


def _cstr(k, addr, n=64):
    return k.reader.cstring(addr, n) if addr else b""


@per_stop
def _affinity_kind(k):
    lay = k.layout("struct irq_desc", _DESC)
    m = lay.members.get("irq_common_data.affinity")
    if m is None:
        return None
    return m.kind


def _cpus_of(bits: bytes, n: int) -> list:
    v = int.from_bytes(bits, "little")
    return [c for c in range(n) if v >> c & 1]


def irq_info(k, irq: int, desc: int, cpus=None) -> dict:
    """One descriptor: irq, hwirq, chip name, flow handler, actions (name, handler),
    per-CPU counts and affinity. ``actions_stop``: why the action chain was cut (a loop,
    an unreadable irqaction, more than 64), else None."""
    d = k.layout("struct irq_desc", _DESC).read(k.reader, desc)
    if d["irq_data.irq"] != irq:
        raise MemoryFault(desc, f"irq_desc {desc:#x} says irq {d['irq_data.irq']}, "
                                f"but it is indexed as {irq}")
    chip = d["irq_data.chip"]
    chip_name = _cstr(k, k.reader.u64(chip + k.offset("struct irq_chip", "name"))) if chip else b""
    al = k.layout("struct irqaction", _ACTION)
    actions, a, seen, actions_stop = [], d["action"], set(), None
    while a:                                    # irqaction->next: NULL-terminated
        if a in seen:
            actions_stop = f"loop: irqaction {a:#x} reached twice"
            break
        if len(actions) >= 64:
            actions_stop = "stopped after 64 actions"
            break
        seen.add(a)
        try:
            f = al.read(k.reader, a)
        except MemoryFault as e:
            actions_stop = f"cannot read irqaction {a:#x}: {e.reason}"
            break
        actions.append({"action": a, "name": _cstr(k, f["name"]), "handler": f["handler"],
                        "thread_fn": f["thread_fn"], "flags": f["flags"]})
        a = f["next"]
    cpus = possible_cpus(k) if cpus is None else cpus
    counts = {}
    if d["kstat_irqs"]:
        for c in cpus:
            counts[c] = k.reader.u32(per_cpu_addr(k, d["kstat_irqs"], c))
    n = nr_cpu_ids(k)
    aff = d.get("irq_common_data.affinity")
    if aff is None:
        affinity = None
    elif _affinity_kind(k) == "b":
        affinity = _cpus_of(aff, n)
    else:
        affinity = _cpus_of(k.reader.read(aff, (n + 7) // 8), n) if aff else None
    return {"irq": irq, "desc": desc, "hwirq": d["irq_data.hwirq"], "chip": chip,
            "chip_name": chip_name, "handle_irq": d["handle_irq"], "actions": actions,
            "counts": counts, "total": sum(counts.values()), "affinity": affinity,
            "depth": d.get("depth"), "actions_stop": actions_stop}
