"""The wait-for graph of a hung kernel: tasks → locks → owners, cycles, victims.

Input is plain data gathered by ``gdbkd.kernel.locks`` (live or from a dump):

- ``tasks``: {task_addr: {"pid", "comm", "state", "where"[, "cpu"][, "inner_spins"]}}
  ("cpu": a running task, e.g. one spinning on a spin lock; "inner_spins": in words, the
  slow paths of an interrupt taken while it spun, on locks whose words say nobody holds
  them: not what it waits for)
- ``locks``: {lock_addr: {"name", "kind", "owners": [task_addr…], "probable": bool,
  "detail": str, "waiters": [task_addr…][, "unknown": why the owner could not be read]
  [, "free": True (a spin lock whose word says nobody holds it)]}}
- ``waits``: {task_addr: lock_addr} — what each blocked task waits on.

A cycle (a strongly connected component of the task graph, edge = waiter →
owner through a lock, with more than one task or a self-edge) is a deadlock.
Blocked tasks that reach a cycle are its victims; blocked tasks whose chain
ends in an owner that is not itself blocked are "blocked behind" that owner.
"""

__all__ = ["analyze", "to_dot", "render_text", "summary"]


def _scc(nodes, succ):
    """Tarjan's strongly connected components (iterative)."""
    index, low, on, stack, out = {}, {}, set(), [], []
    counter = [0]
    for root in nodes:
        if root in index:
            continue
        work = [(root, iter(succ.get(root, ())))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            advanced = False
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(succ.get(w, ()))))
                    advanced = True
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                out.append(comp)
    return out


def analyze(tasks: dict, locks: dict, waits: dict) -> dict:
    succ = {}
    for t, l in waits.items():
        succ[t] = [o for o in locks.get(l, {}).get("owners", []) if o != 0]
    nodes = list(waits)
    comps = _scc(nodes, succ)
    cycles = []
    in_cycle = set()
    for comp in comps:
        if len(comp) > 1 or (comp and comp[0] in succ.get(comp[0], [])):
            # order the cycle by following edges from the lowest pid
            members = set(comp)
            start = min(comp, key=lambda a: tasks.get(a, {}).get("pid", 0))
            order, cur = [], start
            while cur not in order:
                order.append(cur)
                nxt = [o for o in succ.get(cur, []) if o in members]
                if not nxt:
                    break
                cur = nxt[0]
            steps = [{"task": t, "waits_for": waits[t], "held_by": [o for o in succ[t] if o in members]}
                     for t in order]
            cycles.append({"tasks": order, "steps": steps,
                           "probable": any(locks[waits[t]].get("probable") for t in order)})
            in_cycle |= members
    victims, behind = [], []
    for t in waits:
        if t in in_cycle:
            continue
        seen, cur, path = set(), t, [t]
        reach = None
        while cur in waits and cur not in seen:
            seen.add(cur)
            owners = succ.get(cur, [])
            nxt = next((o for o in owners if o in in_cycle), None)
            if nxt is not None:
                reach = ("cycle", nxt)
                path.append(nxt)
                break
            nxt = next((o for o in owners if o in waits), owners[0] if owners else None)
            if nxt is None:
                reach = ("unknown owner", None)
                break
            path.append(nxt)
            cur = nxt
        else:
            if cur not in waits:
                reach = ("owner", cur)
        if reach and reach[0] == "cycle":
            victims.append({"task": t, "chain": path})
        else:
            behind.append({"task": t, "chain": path,
                           "end": reach[1] if reach else None,
                           "end_kind": reach[0] if reach else "unknown owner"})
    return {"tasks": tasks, "locks": locks, "waits": waits, "cycles": cycles,
            "victims": victims, "blocked_behind": behind}


def _tname(tasks, a):
    t = tasks.get(a)
    return f"{t['comm']} (pid {t['pid']})" if t else f"task {a:#x}"


def _lname(locks, a):
    l = locks.get(a, {})
    return f"{l.get('kind', 'lock')} {l.get('name') or hex(a)}"


def _state(t):
    """A task's state, its CPU when it is running there (a spinner), and for how long: on
    the CPU since it got it, or asleep since it last ran."""
    st = t.get("state", "?")
    if t.get("cpu") is not None:
        st += f", CPU {t['cpu']}"
    s = t.get("since_last_arrival_s")
    if s is not None:
        st += f", on it for {s:.1f}s" if t.get("cpu") is not None or st.startswith("RU") \
            else f", last ran {s:.1f}s ago"
    if t.get("watchdog_stuck_s"):
        st += f", watchdog stuck for {t['watchdog_stuck_s']}s"
    return st


def _behind(r, t):
    """The rest of ``t``'s blocked chain in words: " held by X [UN], which waits for mutex M
    held by Y [RU]", ending where the chain ends (a running owner, an event nobody is
    recorded to signal, an unknown owner)."""
    tasks, locks, waits = r["tasks"], r["locks"], r["waits"]
    chain = next((b["chain"] for b in r["blocked_behind"] if b["task"] == t), [t])
    out = ""
    for x in chain[1:]:
        out += f" held by {_tname(tasks, x)} [{_state(tasks.get(x, {}))}]"
        if x in waits:
            verb = "spins on" if locks.get(waits[x], {}).get("kind") in ("spinlock", "rwlock") else "waits for"
            out += f", which {verb} {_lname(locks, waits[x])}"
    last = chain[-1]
    if last in waits and not locks.get(waits[last], {}).get("owners"):
        l = locks.get(waits[last], {})
        out += f" ({l['detail']})" if l.get("kind") in ("completion", "wait queue", "event") and l.get("detail") \
            else " held by nobody (its word says unlocked)" if l.get("free") \
            else " held by an unknown owner" + (f" ({l['unknown']})" if l.get("unknown") else "")
    return out


def render_text(r: dict) -> str:
    tasks, locks = r["tasks"], r["locks"]
    L = []
    rcu = _rcu_line(r)
    if not r["waits"]:
        return "no task is blocked on a lock" + (f"\nRCU STALL: {rcu}" if rcu else "")
    for i, c in enumerate(r["cycles"], 1):
        L.append(f"DEADLOCK {i}: cycle of {len(c['tasks'])} tasks" + (" (an owner is probable)" if c["probable"] else ""))
        for s in c["steps"]:
            t = tasks.get(s["task"], {})
            l = locks.get(s["waits_for"], {})
            L.append(f"  {_tname(tasks, s['task'])} [{_state(t)}] waits for {_lname(locks, s['waits_for'])}"
                     + (f" at {t['where']}" if t.get("where") else ""))
            took = l.get("taken_at", {})
            L.append(f"      held by {', '.join(_tname(tasks, o) + (f' (took it at {took[hex(o)]})' if hex(o) in took else '') for o in s['held_by'])}"
                     + (f"  ({l['detail']})" if l.get("detail") else ""))
    if not r["cycles"]:
        L.append("no deadlock cycle")
    if r["victims"]:
        L.append("VICTIMS (blocked behind a deadlock):")
        for v in r["victims"]:
            t = v["task"]
            L.append(f"  {_tname(tasks, t)} waits for {_lname(locks, r['waits'][t])} -> "
                     + " -> ".join(_tname(tasks, x) for x in v["chain"][1:]))
    if r["blocked_behind"]:
        L.append("BLOCKED BEHIND (owner not blocked on a lock):")
        for b in r["blocked_behind"]:
            t = b["task"]
            L.append(f"  {_tname(tasks, t)} waits for {_lname(locks, r['waits'][t])}"
                     + _behind(r, t))
    inner = [(a, t) for a, t in tasks.items() if t.get("inner_spins")]
    if inner:
        L.append("INNER SPINS (in an interrupt taken while spinning; not waits: nobody holds these):")
        for a, t in inner:
            L.extend(f"  {_tname(tasks, a)} on {x}" for x in t["inner_spins"])
    if rcu:
        L.append(f"RCU STALL: {rcu}")
    if r.get("hard_lockup"):
        L.append(f"HARD LOCKUPS: {r['hard_lockup']}")
    L.append("LOCKS:")
    for a, l in locks.items():
        owners = ", ".join(_tname(tasks, o) for o in l.get("owners", [])) \
            or (f"unknown ({l['unknown']})" if l.get("unknown") else "none found")
        L.append(f"  {a:#018x} {l.get('kind')} {l.get('name') or ''}: owner {owners}"
                 + (" (probable)" if l.get("probable") else "") + (f"; {l['detail']}" if l.get("detail") else "")
                 + f"; waiters {len(l.get('waiters', []))}")
    return "\n".join(L)


def _rcu_line(r):
    """The stalled RCU grace period in words, or None."""
    gp = r.get("rcu")
    if not gp:
        return None
    tasks = r["tasks"]
    age = f"{gp['age_s']:.1f}s" if gp.get("age_s") is not None else \
        f"{gp['age_jiffies']} jiffies (HZ unknown)"
    who = [f"CPU {c}" + (f" ({_tname(tasks, t)} [{_state(tasks.get(t, {}))}])" if t else "")
           for c, t in gp["cpus"]]
    who += [f"{_tname(tasks, t)} [{_state(tasks.get(t, {}))}], preempted in a read-side critical section"
            for t in gp["tasks"]]
    s = f"grace period {gp['gp_seq']} running for {age}, " + (
        f"held up by {'; '.join(who)}" if who else
        "no CPU or task is recorded as holding it up (every leaf rcu_node's qsmask is empty)")
    if gp.get("stalled") is None:
        s += " (whether it stalled is unknown)"
    for p in gp.get("problems") or []:
        s += f" ({p})"
    return s


def summary(r: dict, limit=5) -> list:
    """Lines that say what hung, for reports and titles: one per cycle (e.g. "spinlock ABBA:
    CPU 0 a (pid 1) holds A, spins on B; CPU 1 b (pid 2) holds B, spins on A"); with no
    cycle, one per blocked chain that nobody waits behind (at most ``limit``)."""
    tasks, locks, out = r["tasks"], r["locks"], []
    for c in r["cycles"]:
        steps = c["steps"]
        kinds = sorted({locks.get(s["waits_for"], {}).get("kind", "lock") for s in steps})
        name = lambda a: locks.get(a, {}).get("name") or hex(a)
        who = lambda t: (f"CPU {tasks[t]['cpu']} " if tasks.get(t, {}).get("cpu") is not None else "") \
            + _tname(tasks, t)
        spin = lambda a: "spins on" if locks.get(a, {}).get("kind") in ("spinlock", "rwlock") else "waits for"
        if len(steps) == 1:
            s = steps[0]
            out.append(f"{'/'.join(kinds)} AA: {who(s['task'])} {spin(s['waits_for'])} "
                       f"{name(s['waits_for'])}, which it holds itself")
            continue
        parts = []
        for i, s in enumerate(steps):
            held = steps[i - 1]["waits_for"]        # what the previous task waits for: its holder is this one
            parts.append(f"{who(s['task'])} holds {name(held)}, {spin(s['waits_for'])} {name(s['waits_for'])}")
        label = "ABBA" if len(steps) == 2 else f"cycle of {len(steps)}"
        out.append(f"{'/'.join(kinds)} {label}: " + "; ".join(parts))
    if not out:
        # no cycle: each longest blocked chain (its first task holds nothing another waits for)
        owners = {o for l in locks.values() for o in l.get("owners", [])}
        heads = [b["task"] for b in sorted(r["blocked_behind"], key=lambda b: -len(b["chain"]))
                 if b["task"] not in owners]
        for t in heads[:limit]:
            who = (f"CPU {tasks[t]['cpu']} " if tasks.get(t, {}).get("cpu") is not None else "") + _tname(tasks, t)
            verb = "spins on" if locks.get(r["waits"][t], {}).get("kind") in ("spinlock", "rwlock") else "waits for"
            out.append(f"{who} {verb} {_lname(locks, r['waits'][t])}{_behind(r, t)}")
        if len(heads) > limit:
            out.append(f"and {len(heads) - limit} more blocked chains (kd deadlock)")
    rcu = _rcu_line(r)
    if rcu:                         # last: a stall is often the others' consequence
        out.append(f"RCU stall: {rcu}")
    return out


def _q(s):
    """A DOT string: quotes and backslashes escaped, newlines as DOT line breaks."""
    s = str(s).replace(BS, BS + BS).replace('"', BS + '"')
    return '"' + s.replace(NL, BS + "n") + '"'


BS, NL = chr(92), chr(10)


def to_dot(r: dict) -> str:
    tasks, locks = r["tasks"], r["locks"]
    cyc_tasks = {t for c in r["cycles"] for t in c["tasks"]}
    cyc_locks = {r["waits"][t] for t in cyc_tasks}
    victims = {v["task"] for v in r["victims"]}
    L = ["digraph waitfor {", '  node [fontname="Helvetica"]; edge [fontname="Helvetica"];']
    involved = set(r["waits"]) | {o for l in locks.values() for o in l.get("owners", [])}
    for a in involved:
        t = tasks.get(a, {"comm": hex(a), "pid": "?", "state": "?"})
        color = "red" if a in cyc_tasks else ("orange" if a in victims else "gray40")
        fill = "mistyrose" if a in cyc_tasks else ("lightyellow" if a in victims else "white")
        label = f"{t['comm']}\npid {t['pid']} [{_state(t)}]"
        if t.get("where"):
            label += f"\n{t['where']}"
        L.append(f"  t{a:x} [shape=box style=\"rounded,filled\" color={color} fillcolor={fill} label={_q(label)}];")
    shapes = {"mutex": "ellipse", "rwsem": "hexagon", "semaphore": "octagon", "spinlock": "diamond",
              "event": "note", "completion": "note", "wait queue": "note"}
    for a, l in locks.items():
        color = "red" if a in cyc_locks else "steelblue"
        label = f"{l.get('kind')}\n{l.get('name') or hex(a)}"
        L.append(f"  l{a:x} [shape={shapes.get(l.get('kind'), 'ellipse')} color={color} label={_q(label)}];")
    for t, l in r["waits"].items():
        red = t in cyc_tasks
        L.append(f"  t{t:x} -> l{l:x} [label=\"waits\"{' color=red penwidth=2' if red else ''}];")
    for a, l in locks.items():
        for o in l.get("owners", []):
            red = a in cyc_locks and o in cyc_tasks
            style = " style=dashed" if l.get("probable") else ""
            L.append(f"  l{a:x} -> t{o:x} [label=\"held by\"{style}{' color=red penwidth=2' if red else ''}];")
    L.append("}")
    return "\n".join(L) + "\n"
