"""kd deadlock: the wait-for graph of blocked tasks, deadlock cycles, victims."""

from . import KdCommand, KdError, command
from ..analysis import waitgraph
from ..kernel import locks


@command
class Deadlock(KdCommand):
    """Find who waits for whom: lock owners, deadlock cycles, victims.

For every task in D state, the lock it waits on is found from the waiter record
on its own stack (mutex, rw_semaphore, semaphore; completions are shown as
"waiting for an event"); the owner from the lock (mutex/rwsem owner word) or,
where the kernel records none (semaphores, reader-owned rwsems), from the other
tasks' stacks holding the lock's address (marked probable). Cycles are
deadlocks; tasks queued behind a cycle are victims; chains that end in an owner
not blocked on a lock are "blocked behind". CPUs spinning on a spin lock or rwlock
are waiters too (the lock and its holder proven from their code). A stalled RCU
grace period is shown with its age and the CPUs and tasks holding it up.
--dot writes Graphviz DOT,
--render draws it with Graphviz (dot)."""

    name = "deadlock"

    def add_arguments(self, p):
        p.add_argument("--dot", metavar="FILE", help="write the wait-for graph to FILE as Graphviz DOT")
        p.add_argument("--render", metavar="FILE.svg|FILE.png",
                       help="draw the wait-for graph with Graphviz (dot) into an SVG or PNG file")

    def run(self, args):
        r = locks.wait_graph()
        dot = waitgraph.to_dot(r)
        if args.dot:
            with open(args.dot, "w") as f:
                f.write(dot)
        if args.render:
            import shutil               # here: every kd start would import them otherwise
            import subprocess
            if not shutil.which("dot"):
                raise KdError("graphviz `dot` not found (apt-get install graphviz)")
            fmt = args.render.rsplit(".", 1)[-1].lower()
            if fmt not in ("svg", "png", "pdf"):
                raise KdError("--render wants a .svg, .png or .pdf file name")
            p = subprocess.run(["dot", f"-T{fmt}", "-o", args.render], input=dot, text=True,
                               capture_output=True)
            if p.returncode != 0:
                raise KdError(f"dot failed: {p.stderr.strip()[:200]}")
        return _jsonable(r)

    def render(self, data, args):
        return waitgraph.render_text(_unjson(data))


def _conv(r, f):
    """Map every task/lock address in an analysis result through f (int <-> hex string)."""
    opt = lambda a: f(a) if a is not None else None
    return {
        "tasks": {f(a): v for a, v in r["tasks"].items()},
        "locks": {f(a): dict(v, owners=[f(o) for o in v["owners"]], waiters=[f(w) for w in v["waiters"]])
                  for a, v in r["locks"].items()},
        "waits": {f(t): f(l) for t, l in r["waits"].items()},
        "cycles": [{"tasks": [f(t) for t in c["tasks"]], "probable": c["probable"],
                    "steps": [{"task": f(s["task"]), "waits_for": f(s["waits_for"]),
                               "held_by": [f(o) for o in s["held_by"]]} for s in c["steps"]]}
                   for c in r["cycles"]],
        "victims": [{"task": f(v["task"]), "chain": [f(x) for x in v["chain"]]} for v in r["victims"]],
        "blocked_behind": [{"task": f(b["task"]), "chain": [f(x) for x in b["chain"]],
                            "end": opt(b["end"]), "end_kind": b["end_kind"]} for b in r["blocked_behind"]],
        "hard_lockup": r.get("hard_lockup"),
        "rcu": None if not r.get("rcu") else dict(
            r["rcu"], cpus=[[c, opt(t)] for c, t in r["rcu"]["cpus"]],
            tasks=[f(t) for t in r["rcu"]["tasks"]]),
    }


def _jsonable(r):
    """The JSON: addresses as "0x…" strings, and pid and comm beside every ``task`` (null
    for a task outside the graph's task table)."""
    d = _conv(r, lambda a: f"{a:#x}")
    for o in ([s for c in d["cycles"] for s in c["steps"]] + d["victims"] + d["blocked_behind"]):
        t = d["tasks"].get(o["task"]) or {}
        o["pid"], o["comm"] = t.get("pid"), t.get("comm")
    return d


def _unjson(d):
    return _conv(d, lambda s: int(s, 16))
