"""Per-CPU runqueues: current task, queued CFS and RT tasks.

``runqueues`` is a per-CPU ``struct rq``. CFS entities sit in the red-black tree
``rq->cfs.tasks_timeline`` (an ``rb_root_cached`` since 4.14; a plain
``rb_root`` plus ``rb_leftmost`` before) ordered by vruntime, linked by
``sched_entity.run_node``; the running entity is not in the tree (it is
``cfs_rq->curr``). With CONFIG_FAIR_GROUP_SCHED an entity with ``my_q`` set is
a task group (e.g. an autogroup) whose own cfs_rq is walked recursively,
including the group that is ``cfs_rq->curr`` (its other tasks are queued). RT tasks are on
``rq->rt.active.queue[prio]`` lists through ``sched_rt_entity.run_list``.
"""

from .types import read_bytes, read_ulong, symbol_address, field_offset, lookup_type, has_field
from .percpu import per_cpu_addr, online_cpus
from .tasks import task_by_addr, read_task

__all__ = ["runqueue", "runqueues"]


def _u64(b, o):
    return int.from_bytes(b[o:o + 8], "little")


def _rb_inorder(root_node: int, limit=100000):
    """rb_node addresses in order (rb_node = {__rb_parent_color, rb_right, rb_left})."""
    out, stack, node = [], [], root_node
    while (stack or node) and len(out) < limit:
        while node:
            stack.append(node)
            raw = read_bytes(node, 24)
            node = _u64(raw, 16)
        node = stack.pop()
        out.append(node)
        node = _u64(read_bytes(node, 24), 8)
    return out


def _task(addr):
    t = task_by_addr(addr)
    return t if t is not None else read_task(addr)


def _cfs_tasks(cfs_rq: int, depth=0) -> list:
    root = read_ulong(cfs_rq + field_offset("struct cfs_rq", "tasks_timeline"))
    run_node = field_offset("struct sched_entity", "run_node")
    has_myq = has_field("struct sched_entity", "my_q")
    myq_off = field_offset("struct sched_entity", "my_q") if has_myq else None
    se_off = field_offset("struct task_struct", "se")
    out = []
    ses = [node - run_node for node in _rb_inorder(root)]
    if has_myq:
        # the running entity is cfs_rq->curr, not in the tree; when it is a group, the
        # group's other tasks are still queued inside it
        curr = read_ulong(cfs_rq + field_offset("struct cfs_rq", "curr"))
        if curr and read_ulong(curr + myq_off):
            ses.insert(0, curr)
    for se in ses:
        myq = read_ulong(se + myq_off) if has_myq else 0
        if myq:
            if depth < 16:
                out.append({"group": f"{se:#x}", "cfs_rq": f"{myq:#x}",
                            "tasks": _cfs_tasks(myq, depth + 1)})
            continue
        t = _task(se - se_off)
        out.append({"task": t})
    return out


def _rt_tasks(rq: int) -> list:
    if not has_field("struct rq", "rt"):
        return []
    arr = rq + field_offset("struct rq", "rt") + field_offset("struct rt_rq", "active")
    q_off = field_offset("struct rt_prio_array", "queue")
    nprio = lookup_type("struct rt_prio_array")["queue"].type.range()[1] + 1
    lh = lookup_type("struct list_head").sizeof
    raw = read_bytes(arr + q_off, nprio * lh)
    run_list = field_offset("struct task_struct", "rt") + field_offset("struct sched_rt_entity", "run_list")
    out = []
    for prio in range(nprio):
        head = arr + q_off + prio * lh
        node = _u64(raw, prio * lh)
        n = 0
        while node and node != head and n < 10000:
            t = _task(node - run_list)
            out.append({"prio": prio, "task": t})
            node = read_ulong(node)
            n += 1
    return out


def runqueue(cpu: int) -> dict:
    rq = per_cpu_addr(symbol_address("runqueues"), cpu)
    curr = read_ulong(rq + field_offset("struct rq", "curr"))
    nr = int.from_bytes(read_bytes(rq + field_offset("struct rq", "nr_running"), 4), "little")
    cfs = rq + field_offset("struct rq", "cfs")
    return {"cpu": cpu, "rq": rq, "curr": _task(curr), "nr_running": nr,
            "rt_array": rq + field_offset("struct rq", "rt") + field_offset("struct rt_rq", "active"),
            "rt": _rt_tasks(rq), "cfs_root": cfs + field_offset("struct cfs_rq", "tasks_timeline"),
            "cfs": _cfs_tasks(cfs)}


def runqueues(cpus=None) -> list:
    return [runqueue(c) for c in (cpus if cpus is not None else online_cpus())]
