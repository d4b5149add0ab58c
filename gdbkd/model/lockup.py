"""The soft-lockup watchdog's view of a CPU (kernel/watchdog.c).

Each CPU's watchdog kthread (the stopper since v5.10) records when it last ran in the
per-CPU ``watchdog_touch_ts`` (v2.6.36 to at least 6.12), in the units of
``get_timestamp()`` = ``running_clock() >> 30`` (about a second). The hrtimer reports a
soft lockup when ``now - watchdog_touch_ts`` passes twice ``watchdog_thresh``: that
difference is what the kernel prints as "stuck for Ns". ``now`` here is the scheduler's
clock at the stop or dump (the latest ``rq->clock``, the same clock on arm64).

Hard lockups: arm64 has a hard-lockup detector only with pseudo-NMI perf events or, from
6.6, the buddy detector; gdbkd does not read either, and says so.
"""

from .percpu import per_cpu_addr, online_cpus
from .reader import MemoryFault

__all__ = ["softlockup_stuck_s", "sched_clock_now", "HARD_LOCKUP_UNKNOWN"]

HARD_LOCKUP_UNKNOWN = ("not read: arm64 detects hard lockups only with pseudo-NMI perf events or, "
                       "from 6.6, the buddy detector, and gdbkd reads neither")


def sched_clock_now(k):
    """The scheduler's clock at the stop or dump (ns): the latest ``rq->clock`` of any
    online CPU (each CPU updates its own at every tick and switch), or None."""
    rq0, off = k.sym("runqueues"), k.offset("struct rq", "clock")
    if rq0 is None or off is None:
        return None
    out = None
    for c in online_cpus(k):
        try:
            v = k.reader.u64(per_cpu_addr(k, rq0, c) + off)
        except (MemoryFault, IndexError):
            continue
        out = v if out is None else max(out, v)
    return out


def softlockup_stuck_s(k, cpu, now_ns):
    """How long (in the watchdog's ~1 s units) CPU ``cpu``'s watchdog has not run, as the
    kernel's "stuck for Ns"; None when this kernel has no ``watchdog_touch_ts``, the stamp
    is not the watchdog's alone (before v5.14), the CPU's value cannot be read, or
    ``now_ns`` is unknown."""
    a = k.sym("watchdog_touch_ts")
    if a is None or now_ns is None:
        return None
    try:
        ts = k.reader.u64(per_cpu_addr(k, a, cpu))
    except (MemoryFault, IndexError):
        return None
    now = now_ns >> 30
    # before v5.14 (Petr Mladek's "watchdog/softlockup: Report the overall time of
    # softlockups" series, which added watchdog_report_ts) every touch_softlockup_watchdog()
    # reset this very stamp, and panic() and the console touch it on the way down: after a
    # panic it no longer says how long the CPU was stuck. Since, touches go to
    # watchdog_report_ts and this stamp is the watchdog's alone.
    if k.sym("watchdog_report_ts") is None:
        return None
    return now - ts if now >= ts else None
