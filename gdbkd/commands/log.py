"""kd log: the kernel message buffer (crash's log / dmesg)."""

import time

import gdb

from ._util import KernelCommand
from . import KdError, command
from ..kernel.memory import kernel
from ..kernel.printk import records
from ..model.timekeeping import boot_wall_clock
from ..textutil import escape

__all__ = ["Log"]


@command
class Log(KernelCommand):
    """Print the kernel log buffer (crash's log).

Reads the printk ringbuffer (5.10+) or the legacy log_buf (older kernels)
straight from memory, so it works on a hung or crashed kernel.
-T's wall-clock time is the boot time from the timekeeper plus the record's
timestamp: inexact if the clock was set after boot.
Control characters in messages are shown escaped."""

    name = "log"

    def add_arguments(self, p):
        p.add_argument("-T", dest="human", action="store_true",
                       help="human-readable wall-clock timestamps")
        p.add_argument("-t", dest="no_ts", action="store_true", help="no timestamps")
        p.add_argument("-m", dest="level", action="store_true",
                       help="prefix each message with its log level <N>")

    def run(self, args):
        try:
            recs = records()
        except gdb.MemoryError as e:
            raise KdError(f"cannot read the log buffer: {e}")
        except gdb.GdbError as e:
            raise KdError(str(e))
        boot = boot_wall_clock(kernel()) if args.human else None
        if args.human and boot is None:
            raise KdError("-T: no readable timekeeper (tk_core) in this kernel")
        out = []
        for r in recs:
            d = {"seq": r.seq, "ts_nsec": r.ts_nsec, "level": r.level, "facility": r.facility,
                 "caller": r.caller(), "lines": [escape(l) for l in r.text.split(b"\n")]}
            if boot is not None:
                d["wall"] = boot + r.ts_nsec / 1e9
            out.append(d)
        return {"records": out}

    def render(self, data, args):
        lines = []
        for r in data["records"]:
            if args.no_ts:
                pre = ""
            elif args.human:
                pre = "[" + time.strftime("%a %b %e %H:%M:%S %Y", time.localtime(r["wall"])) + "] "
            else:
                ns = r["ts_nsec"]
                pre = f"[{ns // 1000000000:5d}.{ns % 1000000000 // 1000:06d}] "
            if args.level:
                pre += f"<{r['level']}>"
            for l in r["lines"]:
                lines.append(pre + l)
        return "\n".join(lines)
