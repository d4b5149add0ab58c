"""kd timer: the per-CPU timer wheel and hrtimers (crash's timer, timer -r)."""

from . import KdError, command
from ._util import KernelCommand, problem_lines
from ..model.lists import stop_problem
from ._sysstate import kernel, symbol_name
from ..model import timer as mtimer
from ..model.timekeeping import ktime_now
from ..model.percpu import present_cpus

__all__ = ["Timer"]


@command
class Timer(KernelCommand):
    """Pending timers of every CPU, soonest first, with the function they run (crash's timer).

Timer wheel entries expire in jiffies (EXPIRES, and TJ = EXPIRES - jiffies);
hrtimers (-r) in ns of their clock (EXPIRES, and +NS relative to the coarse
monotonic now plus the clock's offset). Only CPUs present are shown."""

    name = "timer"
    json_addresses = frozenset(("base", "timer", "function", "hrtimer", "clock_base"))

    def add_arguments(self, p):
        p.add_argument("-r", dest="hrtimers", action="store_true", help="hrtimers instead of the wheel")
        p.add_argument("-C", dest="cpus", metavar="CPU[,CPU...]", help="only these CPUs")

    def run(self, args):
        k = kernel()
        cpus = present_cpus(k)
        if args.cpus:
            try:
                want = [int(c) for c in args.cpus.split(",")]
            except ValueError:
                raise KdError(f"-C wants CPU numbers, not {args.cpus}") from None
            bad = [c for c in want if c not in cpus]
            if bad:
                raise KdError(f"no CPU {bad[0]} (present: {','.join(map(str, cpus))})")
            cpus = want
        if args.hrtimers:
            now = ktime_now(k)
            bases = mtimer.hrtimers(k, cpus)
            for b in bases:
                for t in b["timers"]:
                    t["function_name"] = symbol_name(t["function"])
                    t["delta_ns"] = t["expires"] - (now + b["offset"])
            return {"now_ns": now, "clock_bases": bases, "problems": [
                stop_problem(f"hrtimers of CPU {b['cpu']} {b['name']}", b["clock_base"],
                             b["stop"], len(b["timers"])).to_json() for b in bases if b["stop"]]}
        jiffies = mtimer.jiffies(k)
        bases = mtimer.timer_wheel(k, cpus)
        for b in bases:
            for t in b["timers"]:
                t["function_name"] = symbol_name(t["function"])
                t["delta"] = t["expires"] - jiffies
        return {"jiffies": jiffies, "bases": bases, "problems": [
            stop_problem(f"timer wheel of CPU {b['cpu']} {b['name']}", b["base"], b["stop"],
                         len(b["timers"])).to_json() for b in bases if b["stop"]]}

    def render(self, d, args):
        lines = []
        if "now_ns" in d:
            lines.append(f"NOW (coarse CLOCK_MONOTONIC): {d['now_ns']} ns")
            for b in d["clock_bases"]:
                lines.append(f"CPU: {b['cpu']}  HRTIMER_CLOCK_BASE: {b['clock_base']:016x}  [{b['name']}]")
                lines.append("          EXPIRES              +NS          HRTIMER       FUNCTION")
                for t in b["timers"]:
                    fn = t["function_name"] or f"{t['function']:#x}"
                    lines.append(f"  {t['expires']:>19} {t['delta_ns']:>16}  {t['hrtimer']:016x}  {fn}")
            return "\n".join(lines + problem_lines(self.name, d["problems"]))
        lines.append(f"JIFFIES: {d['jiffies']}")
        for b in d["bases"]:
            lines.append(f"CPU: {b['cpu']}  TIMER_BASE: {b['base']:016x}  [{b['name']}]")
            if not b["timers"]:
                lines.append("  (none)")
            else:
                lines.append("       EXPIRES        TJ      TIMER_LIST      FUNCTION")
            for t in b["timers"]:
                fn = t["function_name"] or f"{t['function']:#x}"
                lines.append(f"  {t['expires']:>12} {t['delta']:>9}  {t['timer']:016x}  {fn}")
        return "\n".join(lines + problem_lines(self.name, d["problems"]))
