"""The kernel's main lists checked at once (``kd check``, ``kd analyze``, triage).

Each list is walked by its own model function (the one walker,
:func:`gdbkd.model.lists.walk_entries`: back links checked, a break walked back
from the head, every entry once) and what the walk found wrong is gathered as
:class:`gdbkd.model.lists.ListProblem`:

* the task list (``init_task.tasks``) and every thread group's list
  (``signal->thread_head`` / ``thread_node``, or ``thread_group`` before 6.7):
  :func:`gdbkd.model.tasks.task_list`;
* the module list (``modules``): :func:`gdbkd.model.modules.module_list`;
* the slab caches (``slab_caches``) and, per cache and NUMA node, the SLUB
  partial-slab lists (``kmem_cache_node.partial``): :mod:`gdbkd.model.slab`;
* the mounts of init's mount namespace (``mnt_namespace.list``, up to 6.7; an
  rbtree from 6.8, whose walk stops on a loop or an unreadable node):
  :func:`gdbkd.model.fs.mount_list`;
* the network namespaces and each namespace's devices (``net.dev_base_head``):
  :mod:`gdbkd.model.net`;
* each possible CPU's runqueue: ``rq->curr`` and ``rq->idle`` readable tasks (not
  checked against the task list: an exiting task that reaped itself runs off it),
  the CFS tree (``rq->cfs.tasks_timeline``, an ``rb_root_cached`` since 4.14,
  commit bfb068892d30) walked without a loop, and the RT priority lists
  (``rq->rt.active.queue[MAX_RT_PRIO]``, linked by ``sched_rt_entity.run_list``;
  their number is the ``queue`` array's size: :func:`gdbkd.model.runqueue.rt_layout`).

A list this kernel does not have (a symbol or member the type source lacks) is
reported as skipped with the reason, never as damaged. No gdb import.
"""

from .lists import ListProblem, tree_problem
from .reader import MemoryFault

__all__ = ["check_lists", "CheckedList"]


class CheckedList:
    """One list as checked: ``name``, ``entries`` (how many the walk kept),
    ``problems`` (:class:`ListProblem`), ``skipped`` (why it was not checked, or None)."""

    __slots__ = ("name", "entries", "problems", "skipped")

    def __init__(self, name, entries=0, problems=(), skipped=None):
        self.name, self.entries, self.problems, self.skipped = name, entries, list(problems), skipped

    def to_json(self) -> dict:
        return {"list": self.name, "entries": self.entries, "ok": not self.problems,
                "skipped": self.skipped, "problems": [p.to_json() for p in self.problems]}


class _Unknown(Exception):
    """A list this kernel's symbols or types do not describe: skipped, said why."""


def _need(k, *members):
    """Raise _Unknown unless every (struct, member) pair and symbol name is known."""
    for m in members:
        if isinstance(m, str):
            if k.sym(m) is None:
                raise _Unknown(f"no symbol {m}")
        elif k.offset(*m) is None:
            raise _Unknown(f"no member {m[1]} in {m[0]}")


def _tasks(k):
    from .tasks import task_list
    tl = task_list(k)
    yield CheckedList("task list (init_task.tasks) and thread lists", len(tl), tl.damage)


def _modules(k):
    from .modules import module_list, MODULE_LIST
    mods, stop = module_list(k)
    if not mods and not mods.damage and stop:
        yield CheckedList(MODULE_LIST, skipped=stop)
        return
    yield CheckedList(MODULE_LIST, len(mods), mods.damage)


def _slabs(k, partial=True):
    from . import slab
    caches = slab.slab_caches(k)
    yield CheckedList(slab.CACHE_LIST, len(caches), caches.damage)
    if not partial:
        return
    n = 0
    problems = []
    for c in caches:
        for nid, node in enumerate(c.nodes):
            if not node:
                continue
            try:
                w = slab.partial_walk(k, node)
            except MemoryFault as e:
                problems.append(ListProblem(
                    list=f"partial slabs of cache {_esc(c.name)} node {nid}", kind="unreadable",
                    node=node, detail=f"cannot read its kmem_cache_node: {e}"))
                continue
            n += len(w.entries())
            problems += w.problems(f"partial slabs of cache {_esc(c.name)} node {nid} "
                                   f"(kmem_cache_node.partial)")
    yield CheckedList("slab partial lists (kmem_cache_node.partial)", n, problems)


def _esc(s):
    from ..textutil import escape
    return escape(s)


def _mounts(k):
    from . import fs
    name = "mounts of init's namespace"
    _need(k, "init_task", ("struct task_struct", "nsproxy"), ("struct nsproxy", "mnt_ns"),
          ("struct mount", "mnt.mnt_sb"))
    try:
        ns = fs.init_mnt_ns(k)
        mounts, _ = fs.mount_list(k, ns)
    except MemoryFault as e:
        yield CheckedList(name, skipped=str(e))
        return
    yield CheckedList(name, len(mounts), mounts.damage)


def _net(k):
    from . import net
    _need(k, "net_namespace_list", ("struct net", "list"), ("struct net", "dev_base_head"),
          ("struct net_device", "dev_list"), ("struct net_device", "name"))
    try:
        nets, _ = net.net_namespaces(k)
    except MemoryFault as e:
        yield CheckedList("network namespace list (net_namespace_list)", skipped=str(e))
        return
    yield CheckedList("network namespace list (net_namespace_list)", len(nets), nets.damage)
    n = 0
    problems = []
    for ns in nets:
        try:
            devs, _ = net.netdevs(k, ns)
        except MemoryFault as e:
            problems.append(ListProblem(list=f"net device list of namespace {ns:#x}",
                                        kind="unreadable", node=ns, detail=str(e)))
            continue
        n += len(devs)
        problems += devs.damage
    yield CheckedList("net device lists (net.dev_base_head)", n, problems)


def _runqueues(k):
    from .percpu import per_cpu_addr, possible_cpus
    from .tasks import read_task
    from .trees import rbtree_inorder, WrongType
    from .runqueue import rt_layout
    rq_sym = k.sym("runqueues")
    off_curr, off_idle = k.offset("struct rq", "curr"), k.offset("struct rq", "idle")
    if rq_sym is None or off_curr is None or off_idle is None:
        yield CheckedList("runqueues", skipped="this kernel's struct rq is unknown")
        return
    off_cfs = k.offset("struct rq", "cfs")
    off_tl = k.offset("struct cfs_rq", "tasks_timeline")
    rt = rt_layout(k)
    problems = []
    queued = 0
    cpus = possible_cpus(k)
    for cpu in cpus:
        name = f"CPU {cpu} runqueue"
        try:
            rq = per_cpu_addr(k, rq_sym, cpu)
            curr, idle = k.reader.u64(rq + off_curr), k.reader.u64(rq + off_idle)
        except (MemoryFault, IndexError) as e:
            problems.append(ListProblem(list=name, kind="unreadable", node=rq_sym,
                                        detail=f"cannot read the runqueue: {e}"))
            continue
        for what, t in (("rq->curr", curr), ("rq->idle", idle)):
            try:
                read_task(k, t)
            except MemoryFault as e:
                problems.append(ListProblem(list=name, kind="unreadable", node=rq, value=t,
                                            detail=f"{what} {t:#x} cannot be read: {e.reason}"))
                continue
        if rt is not None:
            queued += _rt_queues(k, rq, rt, name, problems)
        if off_cfs is None or off_tl is None:
            continue
        root = rq + off_cfs + off_tl
        try:
            w = rbtree_inorder(k, root, limit=1 << 16)
        except WrongType as e:
            problems.append(ListProblem(list=f"{name} CFS tree (rq->cfs.tasks_timeline)",
                                        kind="unreadable", node=root, detail=str(e)))
            continue
        queued += len(w.entries)
        if w.stop:
            problems.append(tree_problem(f"{name} CFS tree (rq->cfs.tasks_timeline)", root, w))
    parts = ["curr", "idle"] + (["RT lists"] if rt is not None else []) \
        + (["CFS trees"] if off_cfs is not None and off_tl is not None else [])
    yield CheckedList(f"runqueues ({len(cpus)} CPUs: {', '.join(parts)})", queued, problems)


def _rt_queues(k, rq, layout, name, problems) -> int:
    """Walk CPU's RT priority lists (:func:`gdbkd.model.runqueue.rt_layout`); returns how
    many tasks they hold."""
    from .lists import walk_entries
    active, queue, n, link = layout
    qoff = active + queue
    raw = k.reader.read(rq + qoff, 16 * n)
    queued = 0
    for prio in range(n):
        head = rq + qoff + 16 * prio
        nxt, prev = (int.from_bytes(raw[16 * prio + i:16 * prio + i + 8], "little") for i in (0, 8))
        if nxt == head == prev:
            continue                     # empty
        w = walk_entries(k.reader, head, link, limit=1 << 16)
        queued += len(w.entries())
        problems += w.problems(f"{name} RT queue {prio} (rt.active.queue)")
    return queued


#: the checks, in the order kd check prints them
CHECKS = (("task list", _tasks), ("module list", _modules), ("slab caches", _slabs),
          ("mounts", _mounts), ("net devices", _net), ("runqueues", _runqueues))


def check_lists(k) -> list:
    """Every :class:`CheckedList` of the kernel's main lists (module docstring)."""
    out = []
    for name, check in CHECKS:
        try:
            for c in check(k):
                out.append(c)
        except (MemoryFault, _Unknown) as e:
            # a head this kernel's memory or types do not hold: that list unchecked, said why
            out.append(CheckedList(name, skipped=str(e)))
    return out
