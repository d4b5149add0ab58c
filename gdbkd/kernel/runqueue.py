"""Per-CPU runqueues: current task, queued CFS and RT tasks.

``runqueues`` is a per-CPU ``struct rq``. CFS entities sit in the red-black tree
``rq->cfs.tasks_timeline`` (an ``rb_root_cached`` since 4.14; a plain
``rb_root`` plus ``rb_leftmost`` before) ordered by vruntime, linked by
``sched_entity.run_node``; the running entity is not in the tree (it is
``cfs_rq->curr``). With CONFIG_FAIR_GROUP_SCHED an entity with ``my_q`` set is
a task group (e.g. an autogroup) whose own cfs_rq is walked recursively,
including the group that is ``cfs_rq->curr`` (its other tasks are queued). RT tasks are on
``rq->rt.active.queue[prio]`` lists through ``sched_rt_entity.run_list``.

Both are walked by the model's walkers (gdbkd/model/trees.py ``rbtree_inorder``,
gdbkd/model/lists.py ``walk_entries``): a loop or an unreadable node ends a tree
walk with its reason, a damaged RT list is walked back from its head; what was
wrong is in the runqueue's ``problems`` (:class:`gdbkd.model.lists.ListProblem`).
"""

from .memory import kernel, read_bytes, read_ulong
from .symbols import symbol_address
from .types import field_offset, lookup_type, has_field
from .percpu import per_cpu_addr, online_cpus, present_cpus
from .tasks import task_by_addr, read_task
from ..model.lists import ListProblem, tree_problem, walk_entries
from ..model.trees import rbtree_inorder, WrongType

__all__ = ["runqueue", "runqueues"]


def _u64(b, o):
    return int.from_bytes(b[o:o + 8], "little")


def _rb_inorder(root: int, name: str, problems: list) -> list:
    """rb_node addresses of the rb_root at ROOT in order; a walk that stopped early (a
    loop, an unreadable node) adds a ListProblem named NAME to PROBLEMS."""
    try:
        w = rbtree_inorder(kernel(), root, limit=100000)
    except WrongType as e:
        problems.append(ListProblem(list=name, kind="unreadable", node=root, detail=str(e)))
        return []
    if w.stop:
        problems.append(tree_problem(name, root, w))
    return w.entries


def _task(addr):
    t = task_by_addr(addr)
    return t if t is not None else read_task(addr)


def _cfs_tasks(cfs_rq: int, problems: list, depth=0) -> list:
    root = cfs_rq + field_offset("struct cfs_rq", "tasks_timeline")
    run_node = field_offset("struct sched_entity", "run_node")
    has_myq = has_field("struct sched_entity", "my_q")
    myq_off = field_offset("struct sched_entity", "my_q") if has_myq else None
    se_off = field_offset("struct task_struct", "se")
    out = []
    ses = [node - run_node for node in
           _rb_inorder(root, f"CFS tree of cfs_rq {cfs_rq:#x} (tasks_timeline)", problems)]
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
                out.append({"group": se, "cfs_rq": myq,
                            "tasks": _cfs_tasks(myq, problems, depth + 1)})
            continue
        t = _task(se - se_off)
        out.append({"task": t})
    return out


def _rt_tasks(rq: int, problems: list) -> list:
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
        if _u64(raw, prio * lh) == head:
            continue                         # empty (next is the head; prev checked below)
        w = walk_entries(kernel().reader, head, run_list, limit=10000)
        for t in w.entries():
            out.append({"prio": prio, "task": _task(t)})
        problems += w.problems(f"RT queue {prio} of rq {rq:#x} (rt.active.queue)", _owner)
    return out


def _owner(addr):
    t = task_by_addr(addr)
    return f"pid {t.pid} ({t.comm})" if t is not None else None


def runqueue(cpu: int) -> dict:
    rq = per_cpu_addr(symbol_address("runqueues"), cpu)
    curr = read_ulong(rq + field_offset("struct rq", "curr"))
    nr = int.from_bytes(read_bytes(rq + field_offset("struct rq", "nr_running"), 4), "little")
    cfs = rq + field_offset("struct rq", "cfs")
    problems = []
    rt = _rt_tasks(rq, problems)
    return {"cpu": cpu, "rq": rq, "curr": _task(curr), "nr_running": nr,
            "rt_array": rq + field_offset("struct rq", "rt") + field_offset("struct rt_rq", "active"),
            "rt": rt, "cfs_root": cfs + field_offset("struct cfs_rq", "tasks_timeline"),
            "cfs": _cfs_tasks(cfs, problems), "problems": problems}


def runqueues(cpus=None) -> list:
    """The runqueues of ``cpus``, by default of every present CPU: a dump taken after a
    panic has the other CPUs offline (stopped by panic's IPI), and what they ran matters
    as much (crash's runq shows them too). Each says whether its CPU is ``online``."""
    online = set(online_cpus())
    out = []
    for c in (cpus if cpus is not None else present_cpus() or sorted(online)):
        rq = runqueue(c)
        rq["online"] = c in online
        out.append(rq)
    return out
