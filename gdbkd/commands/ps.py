"""kd ps: the task list, like crash's ps."""

from . import KdError, command
from ._util import KernelCommand, is_state, problem_lines
from ..kernel.tasks import all_tasks, parse_task_spec, select_tasks, state_code, STATE_CODES
from ..kernel.memory import kernel
from ..model.mm import mm_counters, task_rss_delta
from ..model.sysinfo import totalram_pages, page_size

__all__ = ["Ps"]


@command
class Ps(KernelCommand):
    """Show tasks: PID, PPID, CPU, TASK, ST, %MEM, VSZ, RSS, COMM (crash's ps).

Active tasks (running on a CPU) are marked with '>'. Kernel threads are shown
in [brackets]. States: RU running/runnable, IN interruptible, UN
uninterruptible (D), ID idle kthread (TASK_IDLE), ST stopped, TR traced,
ZO zombie, DE dead, PA parked, WA waking, NE new.
VSZ and RSS are in KiB; %MEM is RSS against total RAM. A damaged task or
thread list (a loop, NULL, poison, an unreadable or disagreeing link) is walked
back from its head, each task shown once, and said in one line under the table
("problems" in --json), naming the task whose link is wrong."""

    name = "ps"
    json_addresses = frozenset(("task",))

    def add_arguments(self, p):
        p.add_argument("-S", dest="summary", action="store_true",
                       help="count tasks per state instead of listing them")
        p.add_argument("-k", dest="kernel", action="store_true", help="kernel threads only")
        p.add_argument("-u", dest="user", action="store_true", help="user tasks only")
        p.add_argument("-A", dest="active", action="store_true",
                       help="active tasks only (one per CPU)")
        p.add_argument("filters", nargs="*", metavar="STATE|PID|TASK|COMM",
                       help="only tasks in these states (e.g. UN) or these tasks "
                            "(decimal pid, hex task address, or name)")

    def run(self, args):
        states = {f for f in args.filters if is_state(f)}
        specs = [parse_task_spec(f) for f in args.filters if not is_state(f)]
        tasks = all_tasks()
        if not tasks:
            raise KdError("no tasks found (is init_task readable?)")
        k = kernel()
        total = totalram_pages(k) or 0
        kib_per_page = page_size(k) // 1024
        mm_cache = {}
        deltas = {}
        for t in tasks:
            if t.mm and not t.is_kthread:
                deltas[t.mm] = deltas.get(t.mm, 0) + task_rss_delta(k, t)
        rows = []
        for t in select_tasks(tasks, specs, states, kernel=args.kernel, user=args.user,
                              active=args.active):
            vsz = rss = 0
            mm, kthread = t.mm, t.is_kthread
            if mm and not kthread:
                c = mm_cache.get(mm)
                if c is None:
                    c = mm_counters(k, mm) or (0, 0)
                    c = mm_cache[mm] = (c[0], max(c[1] + deltas.get(mm, 0), 0))
                vsz, rss = c
            state, exit_state, active = t.state, t.exit_state, t.active_cpu
            rows.append({
                "pid": t.pid, "ppid": t.ppid, "cpu": active if active is not None else t.cpu,
                "task": t.addr, "state": state_code(state, exit_state), "state_raw": state,
                "exit_state": exit_state, "active": active is not None,
                "kthread": kthread, "comm": t.comm, "tgid": t.tgid,
                "mem_pct": round(100.0 * rss / total, 1) if total else None,
                "vsz_kib": vsz * kib_per_page, "rss_kib": rss * kib_per_page,
            })
        problems = [p.to_json() for p in getattr(tasks, "damage", ())]
        if args.summary:
            counts = {}
            for r in rows:
                counts[r["state"]] = counts.get(r["state"], 0) + 1
            return {"summary": counts, "total": len(rows), "problems": problems}
        if (states or specs) and not rows:
            raise KdError("no matching tasks")
        return {"tasks": rows, "problems": problems}

    def render(self, data, args):
        damage = problem_lines(self.name, data.get("problems", ()))
        if "summary" in data:
            order = list(STATE_CODES) + sorted(set(data["summary"]) - set(STATE_CODES))
            return "\n".join(["  ".join(f"{s}: {data['summary'][s]}" for s in order
                                        if s in data["summary"])] + damage)
        lines = ["   PID    PPID  CPU       TASK        ST  %MEM      VSZ      RSS  COMM"]
        for r in data["tasks"]:
            mark = ">" if r["active"] else " "
            comm = f"[{r['comm']}]" if r["kthread"] else r["comm"]
            pct = f"{r['mem_pct']:4.1f}" if r["mem_pct"] is not None else "   -"
            lines.append(f"{mark}{r['pid']:>6} {r['ppid']:>7} {r['cpu']:>4}  {r['task']:016x}"
                         f"  {r['state']}  {pct} {r['vsz_kib']:>8} {r['rss_kib']:>8}  {comm}")
        return "\n".join(lines + damage)
