"""The timekeeper without gdb: coarse monotonic now, uptime, wall clock, boot time.

One reader of ``tk_core.timekeeper`` (``struct timekeeper``, kernel/time/timekeeping.c)
serves ``kd timer -r`` (now), ``kd sys`` (uptime and the wall clock, which ``gdbkd
triage`` takes as the crash time) and ``kd log -T`` (the boot time).

* ``tk_core`` (3.17+) is an anonymous struct ``{seqcount; struct timekeeper
  timekeeper;}`` up to 6.10, ``struct tk_data`` from 6.11 (commit 8c4799b18a9b): the
  timekeeper follows the 8-byte-aligned seqcount either way, and ``struct
  tk_data`` says where when it exists.
* Members read, present from 3.17 through 6.12: ``tkr_mono.base`` (ktime_t, the last tick's
  CLOCK_MONOTONIC), ``tkr_mono.xtime_nsec >> tkr_mono.shift`` (ns since that base),
  ``xtime_sec`` (CLOCK_REALTIME seconds of the last tick), ``offs_real`` and
  ``offs_boot`` (ktime_t offsets of REALTIME and BOOTTIME from MONOTONIC).

Everything here is "as of the last timer tick": a stopped or crashed kernel's
clocks do not move.
"""

from .kernel import per_stop
from .reader import MemoryFault

__all__ = ["timekeeper", "ktime_now", "uptime_seconds", "wall_clock_sec", "boot_wall_clock"]


@per_stop
def _tk_offset(k) -> int:
    off = k.offset("struct tk_data", "timekeeper")
    if off is not None:
        return off
    seq = k.sizeof("seqcount_raw_spinlock_t") or 4
    return (seq + 7) & ~7


@per_stop
def timekeeper(k) -> dict:
    """The timekeeper's members (model/layout.py LAYOUTS["struct timekeeper"]); raises
    MemoryFault when the kernel has no ``tk_core`` or it cannot be read."""
    tk = k.need_sym("tk_core") + _tk_offset(k)
    f = k.layout("struct timekeeper").read(k.reader, tk)
    if "tkr_mono.base" not in f:
        raise MemoryFault(tk, "this kernel's struct timekeeper has no tkr_mono")
    return f


def ktime_now(k) -> int:
    """Coarse CLOCK_MONOTONIC now, in ns (the last tick's; drgn's ktime_get_coarse_ns)."""
    f = timekeeper(k)
    return f["tkr_mono.base"] + (f["tkr_mono.xtime_nsec"] >> f["tkr_mono.shift"])


def _or_none(k, fn):
    try:
        f = timekeeper(k)
    except MemoryFault:
        return None
    try:
        return fn(f)
    except KeyError:            # a member this kernel's timekeeper lacks
        return None


def uptime_seconds(k):
    """Seconds since boot, sleep included (the coarse ``ktime_get_boottime()`` of the last
    tick: :func:`ktime_now` + ``offs_boot``; drgn's ``uptime``), or None when the
    timekeeper cannot be read. ``tkr_mono.base`` alone is not the monotonic time: the
    kernel keeps in it only whole seconds of xtime (plus wall_to_monotonic's nanoseconds,
    ``tk_update_ktime_data``); the rest of the second is ``xtime_nsec >> shift``."""
    return _or_none(k, lambda f: (f["tkr_mono.base"] + (f["tkr_mono.xtime_nsec"] >> f["tkr_mono.shift"])
                                  + f["offs_boot"]) / 1e9)


def wall_clock_sec(k):
    """CLOCK_REALTIME of the last tick in whole seconds since the epoch (``xtime_sec``),
    or None."""
    return _or_none(k, lambda f: f["xtime_sec"])


def boot_wall_clock(k):
    """Wall-clock time (seconds since the epoch) at boot, ``offs_real - offs_boot``, or
    None (inexact when the clock was set after boot)."""
    return _or_none(k, lambda f: (f["offs_real"] - f["offs_boot"]) / 1e9)
