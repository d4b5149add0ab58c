"""RCU grace-period stalls: how old the current grace period is, and who holds it up.

Tree RCU (kernel/rcu/tree.h), one ``struct rcu_state rcu_state`` since v4.20 (Paul
McKenney's RCU flavour consolidation, which replaced rcu_sched_state/rcu_bh_state/
rcu_preempt_state; the course's 5.0 has it), with:

* ``gp_seq``: the grace-period sequence, low two bits the phase (non-zero: a grace period
  is running; ``gp_seq`` since v4.19, commit de30ad512a66);
* ``gp_start``: jiffies when the running grace period began; ``jiffies_stall``: jiffies
  at which the kernel's own stall check fires (``record_gp_stall_check_time``);
* ``node[]``: the rcu_node tree, ``rcu_num_nodes`` of them, ``rcu_num_lvls`` levels; in a
  leaf (``level == rcu_num_lvls - 1``) bit i of ``qsmask`` is CPU ``grplo + i`` that has
  not yet reported a quiescent state for this grace period;
* with ``CONFIG_PREEMPT_RCU``, ``blkd_tasks``: the tasks preempted inside a read-side
  critical section (``task_struct.rcu_node_entry``), those from ``gp_tasks`` onward
  blocking this grace period.

The stall is the kernel's own criterion: a grace period is running and ``jiffies`` has
passed ``jiffies_stall``, or it is older than ``rcu_cpu_stall_timeout`` seconds (once the
kernel reported the stall it moves ``jiffies_stall`` on). Seconds need HZ, which no symbol holds: it is read back from
``tick_nsec`` (kernel/time/ntp.c, NSEC_PER_SEC / HZ up to NTP's adjustment), and said
unknown where that is missing.
"""

from .lists import walk_list
from .percpu import online_cpus, per_cpu_addr
from .reader import MemoryFault

__all__ = ["grace_period", "hz"]


def hz(k):
    """The kernel's HZ from ``tick_nsec``, or None."""
    t = k.sym_u64("tick_nsec")
    return round(1e9 / t) if t else None


def _curr(k, cpu):
    rq = k.sym("runqueues")
    off = k.offset("struct rq", "curr")
    if rq is None or off is None:
        return None
    try:
        return k.reader.u64(per_cpu_addr(k, rq, cpu) + off)
    except MemoryFault:
        return None


def grace_period(k):
    """The running grace period, or None when no grace period is running or this kernel
    has no ``rcu_state`` (before v4.20): {"gp_seq", "age_jiffies", "age_s" (or None:
    HZ unknown), "stalled" (the kernel's own check is due), "cpus": [(cpu, its current
    task)], "tasks": [task addresses blocking it], "problems": [why a part could not be
    read]}."""
    st = k.sym("rcu_state")
    o = lambda f: k.offset("struct rcu_state", f)
    if st is None or None in (o("gp_seq"), o("gp_start"), o("jiffies_stall"), o("node")):
        return None
    r = k.reader
    seq = r.u64(st + o("gp_seq"))
    if seq & 3 == 0:
        return None
    jiffies = r.u64(k.need_sym("jiffies"))
    start, stall_at = r.u64(st + o("gp_start")), r.u64(st + o("jiffies_stall"))
    age = (jiffies - start) & ((1 << 64) - 1)
    h = hz(k)
    due = ((jiffies - stall_at) & ((1 << 64) - 1)) < (1 << 63)
    timeout = k.sym("rcu_cpu_stall_timeout")
    try:
        timeout = r.s32(timeout) if timeout is not None else None
    except MemoryFault:
        timeout = None
    # stalled: the kernel's check is due, or it already fired (it then moves jiffies_stall
    # on): the grace period is older than rcu_cpu_stall_timeout seconds
    stalled = due or (timeout is not None and h is not None and age >= timeout * h)
    out = {"gp_seq": seq - (1 << 64) if seq >> 63 else seq,     # signed, as the kernel prints g=
           "age_jiffies": age, "age_s": round(age / h, 3) if h else None,
           "hz": h, "stall_timeout_s": timeout, "stalled": stalled,
           "cpus": [], "tasks": [], "problems": []}
    n_nodes = k.sym("rcu_num_nodes")
    n_lvls = k.sym("rcu_num_lvls")
    nodes = r.s32(n_nodes) if n_nodes is not None else 1
    lvls = r.s32(n_lvls) if n_lvls is not None else 1
    size = k.sizeof("struct rcu_node")
    no = lambda f: k.offset("struct rcu_node", f)
    online = set(online_cpus(k))
    entry = k.offset("struct task_struct", "rcu_node_entry")
    for i in range(nodes):
        node = st + o("node") + i * size
        try:
            if r.read(node + no("level"), 1)[0] != lvls - 1:
                continue
            qsmask, grplo = r.u64(node + no("qsmask")), r.s32(node + no("grplo"))
        except MemoryFault as e:
            out["problems"].append(f"rcu_node {node:#x}: {e}")
            continue
        for bit in range(64):
            cpu = grplo + bit
            if qsmask >> bit & 1 and cpu in online:
                out["cpus"].append((cpu, _curr(k, cpu)))
        if entry is None or no("blkd_tasks") is None:
            continue                    # not CONFIG_PREEMPT_RCU: readers cannot be preempted
        gp_tasks = r.u64(node + no("gp_tasks"))
        if not gp_tasks:
            continue
        head = node + no("blkd_tasks")
        w = walk_list(r, head, limit=1 << 16)
        if w.stop:
            out["problems"].append(f"rcu_node {node:#x} blkd_tasks: {w.stop}")
        blocking = w.nodes[w.nodes.index(gp_tasks):] if gp_tasks in w.nodes else []
        out["tasks"] += [n - entry for n in blocking]
    return out
