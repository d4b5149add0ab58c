"""Timer wheel and hrtimers without gdb (crash's ``timer`` and ``timer -r``).

Timer wheel: per-CPU ``timer_bases``, an array of ``struct timer_base``
(``NR_BASES`` = 2 with NO_HZ_COMMON up to 6.8 — BASE_STD, BASE_DEF — and 3
from 6.9, commit 83a665dc99a7: BASE_LOCAL, BASE_GLOBAL, BASE_DEF; the count is
``sizeof(timer_bases) / sizeof(struct timer_base)``). Each base has
``vectors[WHEEL_SIZE]`` hlist heads of ``struct timer_list`` (``entry``,
``expires`` in jiffies, ``function``), ``clk`` and ``next_expiry``. Expiry is
shown relative to ``jiffies_64``.

hrtimers: per-CPU ``hrtimer_bases`` (``struct hrtimer_cpu_base``) with
``clock_base[HRTIMER_MAX_CLOCK_BASES]``; each ``struct hrtimer_clock_base``
keeps its timers in ``active`` (a ``timerqueue_head``: an ``rb_root_cached``
since 5.1) of ``struct hrtimer`` linked by ``node.node``, expiring at
``node.expires`` (``_softexpires`` is the soft limit), running ``function``.
Times of clock base *i* are in that clock: monotonic plus ``offset``
(REALTIME/BOOTTIME/TAI). "Now" is the coarse monotonic time of the last tick
(gdbkd/model/timekeeping.py ``ktime_now``). Unchanged members from 5.10 to 6.12.
"""

from .kernel import per_stop
from .percpu import per_cpu_addr
from .trees import hlist_entries, rbtree_inorder

__all__ = ["timer_wheel", "hrtimers", "jiffies", "CLOCK_BASES", "timer_base_names"]

CLOCK_BASES = ["MONOTONIC", "REALTIME", "BOOTTIME", "TAI", "MONOTONIC_SOFT", "REALTIME_SOFT",
               "BOOTTIME_SOFT", "TAI_SOFT"]
_TIMER = ["entry", "expires", "function", "flags"]
_BASE = ["vectors", "clk", "next_expiry", "cpu"]
_HRT = ["node.node", "node.expires", "_softexpires", "function", "state"]
_CLK = ["index", "clockid", "active", "offset", "get_time"]


def jiffies(k) -> int:
    return k.reader.u64(k.need_sym("jiffies_64"))


@per_stop
def timer_base_names(k) -> tuple:
    size = k.sizeof("struct timer_base")
    total = k.sizeof("timer_bases")
    n = total // size if size and total else 1
    return {1: ("BASE_STD",), 2: ("BASE_STD", "BASE_DEF"),
            3: ("BASE_LOCAL", "BASE_GLOBAL", "BASE_DEF")}.get(n, tuple(f"BASE_{i}" for i in range(n)))


def timer_wheel(k, cpus) -> list:
    """[{cpu, base, name, clk, next_expiry, timers: [{timer, expires, function}], stop}]
    for each timer base of each CPU in ``cpus``; timers in expiry order."""
    sym = k.need_sym("timer_bases")
    size = k.sizeof("struct timer_base")
    bl = k.layout("struct timer_base", _BASE)
    tl = k.layout("struct timer_list", _TIMER)
    voff = bl.offset("vectors")
    nvec = bl.members["vectors"].size // 8
    entry = tl.offset("entry")
    out = []
    for cpu in cpus:
        for i, name in enumerate(timer_base_names(k)):
            base = per_cpu_addr(k, sym, cpu) + i * size
            b = bl.read(k.reader, base)
            heads = k.reader.read(base + voff, 8 * nvec)
            timers, stop = [], None
            for v in range(nvec):
                if not int.from_bytes(heads[8 * v:8 * v + 8], "little"):
                    continue
                w = hlist_entries(k, base + voff + 8 * v)
                for node in w.entries:
                    t = tl.read(k.reader, node - entry)
                    timers.append({"timer": node - entry, "expires": t["expires"],
                                   "function": t["function"], "flags": t["flags"]})
                stop = stop or w.stop
            timers.sort(key=lambda t: t["expires"])
            out.append({"cpu": cpu, "base": base, "name": name, "clk": b["clk"],
                        "next_expiry": b["next_expiry"], "timers": timers, "stop": stop})
    return out


def hrtimers(k, cpus) -> list:
    """[{cpu, clock_base, index, name, offset, timers: [{hrtimer, expires, softexpires,
    function, state}], stop}] of each CPU's clock bases that have timers."""
    sym = k.need_sym("hrtimer_bases")
    cl = k.layout("struct hrtimer_clock_base", _CLK)
    hl = k.layout("struct hrtimer", _HRT)
    cb_off = k.offset("struct hrtimer_cpu_base", "clock_base")
    cb_size = k.sizeof("struct hrtimer_clock_base")
    nbases = min(len(CLOCK_BASES), 8)
    node_off = hl.offset("node.node")
    out = []
    for cpu in cpus:
        cpu_base = per_cpu_addr(k, sym, cpu)
        for i in range(nbases):
            cb = cpu_base + cb_off + i * cb_size
            c = cl.read(k.reader, cb)
            w = rbtree_inorder(k, cb + cl.offset("active"))
            timers = []
            for node in w.entries:
                h = hl.read(k.reader, node - node_off)
                timers.append({"hrtimer": node - node_off, "expires": h["node.expires"],
                               "softexpires": h["_softexpires"], "function": h["function"],
                               "state": h["state"]})
            if timers or w.stop:
                out.append({"cpu": cpu, "clock_base": cb, "index": c["index"],
                            "name": CLOCK_BASES[c["index"]] if c["index"] < len(CLOCK_BASES)
                            else str(c["index"]), "offset": c.get("offset", 0),
                            "timers": timers, "stop": w.stop})
    return out

