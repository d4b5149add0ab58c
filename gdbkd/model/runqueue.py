"""Per-CPU runqueues without gdb: current task, queued CFS and RT tasks (crash's runq).

``runqueues`` is a per-CPU ``struct rq`` (:func:`gdbkd.model.percpu.per_cpu_addr`).
CFS entities sit in the red-black tree ``rq->cfs.tasks_timeline`` (an
``rb_root_cached`` since 4.14, commit bfb068892d30, which begins with its
``rb_root``; 5.0, 5.10, 6.1 and 6.12 all have it) ordered by vruntime, linked by
``sched_entity.run_node``; the running entity is not in the tree (it is
``cfs_rq->curr``). With CONFIG_FAIR_GROUP_SCHED an entity with ``my_q`` set is a
task group (e.g. an autogroup) whose own cfs_rq is walked recursively, including
the group that is ``cfs_rq->curr`` (its other tasks are queued). A task's entity
is ``task->se``. RT tasks are on ``rq->rt.active.queue[prio]`` lists through
``task->rt.run_list`` (``struct sched_rt_entity``); the number of queues
(MAX_RT_PRIO, 100) is the size of the ``queue`` array as the types say.

Both are walked by the model's walkers (:func:`gdbkd.model.trees.rbtree_inorder`,
:func:`gdbkd.model.lists.walk_entries`): a loop or an unreadable node ends a tree
walk with its reason, a damaged RT list is walked back from its head; what was
wrong is in the runqueue's ``problems`` (:class:`gdbkd.model.lists.ListProblem`).
Every member read is named in :data:`gdbkd.model.layout.LAYOUTS`. No gdb import.
"""

from .kernel import per_stop
from .lists import ListProblem, tree_problem, walk_entries
from .percpu import online_cpus, per_cpu_addr, present_cpus
from .reader import MemoryFault
from .tasks import read_task, task_list
from .trees import rbtree_inorder, WrongType

__all__ = ["runqueue", "runqueues", "rq_layout", "rt_layout"]

_LIST_HEAD = 16          # struct list_head {next, prev}: unchanged since 2.6


@per_stop
def rq_layout(k):
    """{name: offset} of what a runqueue walk reads; a member this kernel lacks is None
    (``my_q``: no CONFIG_FAIR_GROUP_SCHED)."""
    o = k.offset
    return {"curr": o("struct rq", "curr"), "nr_running": o("struct rq", "nr_running"),
            "cfs": o("struct rq", "cfs"), "tasks_timeline": o("struct cfs_rq", "tasks_timeline"),
            "cfs_curr": o("struct cfs_rq", "curr"), "run_node": o("struct sched_entity", "run_node"),
            "my_q": o("struct sched_entity", "my_q"),
            "se_run_node": o("struct task_struct", "se.run_node")}


@per_stop
def rt_layout(k):
    """(offset of ``rq->rt.active``, offset of its ``queue`` in it, number of queues,
    offset of ``task->rt.run_list``), or None when this kernel's types do not say."""
    offs = [k.offset("struct rq", "rt"), k.offset("struct rt_rq", "active"),
            k.offset("struct rt_prio_array", "queue"),
            k.offset("struct task_struct", "rt.run_list")]
    q = k.types.member("struct rt_prio_array", "queue")
    if None in offs or q is None:
        return None
    rt, active, queue, run_list = offs
    return rt + active, queue, q[1] // _LIST_HEAD, run_list


@per_stop
def _tasks_by_addr(k) -> dict:
    return {t.addr: t for t in task_list(k)}


def _task(k, addr):
    """The task at ``addr`` as the task list has it (with its CPU, ppid), else read alone
    (an exiting task that reaped itself is on no list); raises MemoryFault."""
    t = _tasks_by_addr(k).get(addr)
    return t if t is not None else read_task(k, addr)


def _owner(k):
    tasks = _tasks_by_addr(k)

    def describe(addr):
        t = tasks.get(addr)
        return f"pid {t.pid} ({t.comm})" if t is not None else None
    return describe


def _rb_inorder(k, root: int, name: str, problems: list) -> list:
    """rb_node addresses of the rb_root at ROOT in order; a walk that stopped early (a
    loop, an unreadable node) adds a ListProblem named NAME to PROBLEMS."""
    try:
        w = rbtree_inorder(k, root, limit=100000)
    except WrongType as e:
        problems.append(ListProblem(list=name, kind="unreadable", node=root, detail=str(e)))
        return []
    if w.stop:
        problems.append(tree_problem(name, root, w))
    return w.entries


def _cfs_tasks(k, lay, cfs_rq: int, problems: list, depth=0) -> list:
    """[{"task": Task} | {"group": se, "cfs_rq": its cfs_rq, "tasks": [...]}] in vruntime order."""
    r = k.reader
    ses = [node - lay["run_node"] for node in
           _rb_inorder(k, cfs_rq + lay["tasks_timeline"],
                       f"CFS tree of cfs_rq {cfs_rq:#x} (tasks_timeline)", problems)]
    myq = lay["my_q"]
    if myq is not None:
        # the running entity is cfs_rq->curr, not in the tree; when it is a group, the
        # group's other tasks are still queued inside it
        curr = r.u64(cfs_rq + lay["cfs_curr"])
        if curr and r.u64(curr + myq):
            ses.insert(0, curr)
    out = []
    for se in ses:
        q = r.u64(se + myq) if myq is not None else 0
        if q:
            if depth < 16:
                out.append({"group": se, "cfs_rq": q,
                            "tasks": _cfs_tasks(k, lay, q, problems, depth + 1)})
            continue
        out.append({"task": _task(k, se + lay["run_node"] - lay["se_run_node"])})
    return out


def _rt_tasks(k, rq: int, problems: list) -> list:
    """[{"prio", "task"}] of the RT priority lists, highest priority (lowest number) first."""
    active, q_off, nprio, run_list = rt_layout(k)
    head0 = rq + active + q_off
    raw = k.reader.read(head0, nprio * _LIST_HEAD)
    out = []
    for prio in range(nprio):
        head = head0 + prio * _LIST_HEAD
        if int.from_bytes(raw[prio * _LIST_HEAD:prio * _LIST_HEAD + 8], "little") == head:
            continue                         # empty (next is the head; prev checked below)
        w = walk_entries(k.reader, head, run_list, limit=10000)
        for t in w.entries():
            out.append({"prio": prio, "task": _task(k, t)})
        problems += w.problems(f"RT queue {prio} of rq {rq:#x} (rt.active.queue)", _owner(k))
    return out


_NEEDED = ("curr", "nr_running", "cfs", "tasks_timeline", "cfs_curr", "run_node", "se_run_node")


def runqueue(k, cpu: int) -> dict:
    """CPU's runqueue: {"cpu", "rq", "curr" (Task), "nr_running", "rt_array", "rt",
    "cfs_root", "cfs", "problems"}; raises MemoryFault (the rq, a task unreadable; a
    member this kernel's types lack), or IndexError (no such CPU)."""
    lay = rq_layout(k)
    rt = rt_layout(k)
    missing = [n for n in _NEEDED if lay[n] is None] + (["rq->rt.active.queue"] if rt is None else [])
    if missing:
        raise MemoryFault(0, f"this kernel's types do not describe the runqueue "
                             f"(no {', '.join(missing)})")
    rq = per_cpu_addr(k, k.need_sym("runqueues"), cpu)
    r = k.reader
    curr = r.u64(rq + lay["curr"])
    nr = r.u32(rq + lay["nr_running"])
    cfs = rq + lay["cfs"]
    problems = []
    rt_tasks = _rt_tasks(k, rq, problems)
    return {"cpu": cpu, "rq": rq, "curr": _task(k, curr), "nr_running": nr,
            "rt_array": rq + rt[0], "rt": rt_tasks, "cfs_root": cfs + lay["tasks_timeline"],
            "cfs": _cfs_tasks(k, lay, cfs, problems), "problems": problems}


def runqueues(k, cpus=None) -> list:
    """The runqueues of ``cpus``, by default of every present CPU: a dump taken after a
    panic has the other CPUs offline (stopped by panic's IPI), and what they ran matters
    as much (crash's runq shows them too). Each says whether its CPU is ``online``."""
    online = set(online_cpus(k))
    out = []
    for c in (cpus if cpus is not None else present_cpus(k) or sorted(online)):
        rq = runqueue(k, c)
        rq["online"] = c in online
        out.append(rq)
    return out
