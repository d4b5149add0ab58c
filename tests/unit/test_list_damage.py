"""A damaged kernel list is evidence (issue 26): each kind of damage planted in each of
the kernel's main lists of the real 6.1 test dump, read through the real reader with
the planted words in place (tests/listdamage.py). For each: the model keeps every
entry once (the intact walk's set, derived from the same dump), says one problem of
the right kind at the right entry with the right recovered count, and kd check's
model (gdbkd/model/listcheck.py) says the same.

Layouts: the offsets cache's where it records them, drgn's reading of the
vmlinux's DWARF for the rest (what gdb gives kd inside gdb)."""

import pytest

from tests.conftest import module_dumps
from listdamage import KERNELS, KINDS, WILD, kernel_dumps, list_heads, model_kernels, plant
from gdbkd.model.lists import walk_list, DAMAGE_KINDS
from gdbkd.model.reader import MemoryFault
from gdbkd.model import fs, net, slab, tasks as mtasks
from gdbkd.model.listcheck import check_lists
from gdbkd.model.modules import module_list

pytestmark = pytest.mark.unit

drgn = pytest.importorskip("drgn")

TD = MDF = None
_dumps = module_dumps(globals())


@pytest.fixture(scope="module", params=KERNELS)
def env(request):
    from gdbkd.target import open_dump
    td = kernel_dumps(request.param, TD)
    d = open_dump(td.elf, td.vmlinux)
    kernel = model_kernels(d, td.elf, td.vmlinux)
    yield kernel
    d.close()


def _tasks(k):
    tl = mtasks.task_list(k)
    return [t.addr for t in tl], tl.damage


def _modules(k):
    mods, _ = module_list(k)
    return [m.addr for m in mods], mods.damage


def _caches(k):
    cs = slab.slab_caches(k)
    return [c.addr for c in cs], cs.damage


def _mounts(k):
    ms, _ = fs.mount_list(k, fs.init_mnt_ns(k))
    return list(ms), ms.damage


def _netdevs(k):
    nets, _ = net.net_namespaces(k)
    devs, _ = net.netdevs(k, nets[0])
    return list(devs), devs.damage


def _waitq(k):
    from gdbkd.model.wait import waitqueue_entries
    ents, _ = waitqueue_entries(k, k.sym("oom_reaper_wait"))
    return [e["entry"] for e in ents], ents.damage


# list: (what the model gives, the name kd says, kd check's row or None)
LISTS = {
    "tasks": (_tasks, "task list (init_task.tasks)", "task list (init_task.tasks) and thread lists"),
    "modules": (_modules, "module list (modules)", "module list (modules)"),
    "slab caches": (_caches, "slab cache list (slab_caches)", "slab cache list (slab_caches)"),
    "mounts": (_mounts, "mount list of namespace", "mounts of init's namespace"),
    "net devices": (_netdevs, "net device list of namespace", "net device lists (net.dev_base_head)"),
    "wait queue": (_waitq, "wait queue ", None),
}


def _owner(which, k, entry):
    """The victim's owner as kd must name it, read from the intact dump."""
    if which == "tasks":
        t = mtasks.read_task(k, entry)
        return f"pid {t.pid} ({t.comm})"
    if which == "modules":
        return f"module {next(m.name for m in module_list(k)[0] if m.addr == entry)}"
    if which == "slab caches":
        return f"cache {next(c.name for c in slab.slab_caches(k) if c.addr == entry)}"
    if which == "net devices":
        return f"device {k.reader.cstring(entry + k.offset('struct net_device', 'name'), 16).decode()}"
    return None


def test_wild_address_is_not_in_the_dump(env):
    with pytest.raises(MemoryFault):
        env().reader.read(WILD, 16)


def test_intact_lists_say_nothing(env):
    k = env()
    assert set(list_heads(k)) <= set(LISTS) and "tasks" in list_heads(k)
    for which in list_heads(k):
        model = LISTS[which][0]
        entries, damage = model(k)
        assert entries and damage == [], which
        assert len(entries) == len(set(entries)), which
    assert all(not c.problems for c in check_lists(k))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("which", list(LISTS))
def test_damage_is_said_and_every_entry_kept_once(env, which, kind):
    model, said, row = LISTS[which]
    k0 = env()
    if which not in list_heads(k0):
        pytest.skip(f"no {which} list in this kernel (an rbtree from 6.8)")
    head, off = list_heads(k0)[which]
    intact = walk_list(k0.reader, head, entry_offset=off)
    assert intact.stop is None and intact.nodes
    want, _ = model(k0)
    if kind == "loop-back" and len(intact.nodes) < 2:
        pytest.skip(f"this dump's {which} has one entry: no earlier one to loop back to")
    patches, exp = plant(kind, head, intact.nodes)
    k = env(patches)
    got, damage = model(k)
    # every entry once, none lost: the walk back from the head recovers the rest
    assert len(got) == len(set(got)) and set(got) == set(want)
    assert len(damage) == 1, [p.line() for p in damage]
    p = damage[0]
    assert p.kind == exp["kind"] and p.kind in DAMAGE_KINDS
    assert p.node == exp["node"] and p.value == exp["value"]
    assert p.recovered == exp["recovered"] and p.entries == len(intact.nodes)
    entry = None if exp["node"] == head else exp["node"] - off
    assert p.entry == entry
    owner = _owner(which, k0, entry) if entry is not None else None
    if owner is not None:
        assert p.owner == owner
    line = p.line()
    assert "\n" not in line and line.startswith(said) and " damaged " in line
    assert (f"at {entry:#x}" if entry is not None else f"at its head {head:#x}") in line
    if owner is not None:
        assert f"({owner})" in line
    if kind == "prev":
        assert f"->prev is {exp['value']:#x}" in line and "recovered" not in line
    else:
        assert f"{exp['value']:#x}" in line or (kind == "null" and "NULL" in line)
        if exp["recovered"]:
            r = exp["recovered"]
            assert f"{r} {'entry' if r == 1 else 'entries'} recovered by walking back from the head" in line
        else:
            assert "nothing recovered" in line
    if kind == "poison":
        assert "LIST_POISON1" in line
    if kind == "wild":
        assert WILD not in set(got)
    if which == "tasks":         # the damage's line among the task list's problems
        assert line in mtasks.task_list(k).problems
    j = p.to_json()
    assert j["kind"] == p.kind and j["recovered"] == p.recovered and j["line"] == line
    assert j["entry"] == (f"{entry:#x}" if entry is not None else None)
    # kd check's model says the same, in the row of this list only
    checked = {c.name: c for c in check_lists(env(patches))}
    if row is not None:
        assert [q.line() for q in checked[row].problems] == [line]
    assert all(not c.problems for name, c in checked.items() if name != row)


def test_partial_slab_list_damage_is_checked(env):
    """The SLUB per-node partial lists: a NULL planted in the first non-empty one."""
    k0 = env()
    off = k0.offset("struct kmem_cache_node", "partial")
    for c in slab.slab_caches(k0):
        node = next((n for n in c.nodes if n and slab.partial_walk(k0, n).nodes), None)
        if node is not None:
            break
    else:
        pytest.skip("no partial slab in this dump")
    w = slab.partial_walk(k0, node)
    patches, exp = plant("null", node + off, w.nodes)
    checked = {x.name: x for x in check_lists(env(patches))}
    probs = checked["slab partial lists (kmem_cache_node.partial)"].problems
    assert [(p.kind, p.node, p.recovered) for p in probs] == [("null", exp["node"], exp["recovered"])]
    assert probs[0].line().startswith(f"partial slabs of cache {c.name} node ")


def test_bound_is_said():
    """A list longer than the walk's bound: the bound is named, nothing is recovered."""
    from gdbkd.model.reader import BytesReader
    words = []
    for i in range(8):                       # head 0x1000 and 7 entries, a consistent ring
        words += [0x1000 + 16 * ((i + 1) % 8), 0x1000 + 16 * ((i - 1) % 8)]
    b = b"".join(x.to_bytes(8, "little") for x in words)
    w = walk_list(BytesReader({0x1000: b + bytes(4096 - len(b))}), 0x1000, limit=3, recover=True)
    p, = w.problems("test list")
    assert p.kind == "bound" and p.recovered == 0 and p.entries == 3
    assert "stopped after 3 entries" in p.line() and "a bound: 3 entries shown" in p.line()


RUNQ_ROW_PREFIX = "runqueues ("


def _runq_row(checked):
    row, = [c for c in checked if c.name.startswith(RUNQ_ROW_PREFIX)]
    return row


def test_runqueue_damage_is_checked(env):
    """kd check's runqueues: a CFS tree node whose rb_left points at itself (a loop),
    rq->curr made a wild pointer, an empty RT priority list's next made a wild pointer."""
    from gdbkd.model.percpu import per_cpu_addr, possible_cpus
    from gdbkd.model.trees import rbtree_inorder
    k = env()
    row = _runq_row(check_lists(k))
    assert "CFS trees" in row.name and "RT lists" in row.name and not row.problems
    rqs = [per_cpu_addr(k, k.sym("runqueues"), c) for c in possible_cpus(k)]
    cfs = k.offset("struct rq", "cfs") + k.offset("struct cfs_rq", "tasks_timeline")
    full = [(rq, rq + cfs) for rq in rqs if k.reader.u64(rq + cfs)]
    if full:
        rq, root = full[0]
        node = rbtree_inorder(k, root).entries[0]
        loop = {node + k.offset("struct rb_node", "rb_left"): node.to_bytes(8, "little")}
    else:
        # every CFS tree of this dump is empty (each CPU ran its only runnable task when
        # the dump was taken): queue init_task's run_node in the first one, looping left
        rq, root = rqs[0], rqs[0] + cfs
        node = k.sym("init_task") + k.offset("struct task_struct", "se") \
            + k.offset("struct sched_entity", "run_node")
        loop = {root: node.to_bytes(8, "little"),
                node + k.offset("struct rb_node", "rb_left"): node.to_bytes(8, "little"),
                node + k.offset("struct rb_node", "rb_right"): bytes(8)}
    p, = _runq_row(check_lists(env(loop))).problems
    assert p.kind == "loop" and f"rb_node {node:#x} reached twice" in p.line()
    assert "CFS tree (rq->cfs.tasks_timeline)" in p.list
    curr = {rq + k.offset("struct rq", "curr"): WILD.to_bytes(8, "little")}
    p, = _runq_row(check_lists(env(curr))).problems
    assert p.kind == "unreadable" and f"rq->curr {WILD:#x} cannot be read" in p.line()
    # an RT priority list: the first empty one's next made a wild pointer
    qoff = k.offset("struct rq", "rt") + k.offset("struct rt_rq", "active") \
        + k.offset("struct rt_prio_array", "queue")
    nq = (k.sizeof("struct rt_prio_array") - k.offset("struct rt_prio_array", "queue")) // 16
    head = next(rq + qoff + 16 * i for rq in rqs for i in range(nq)
                if k.reader.u64(rq + qoff + 16 * i) == rq + qoff + 16 * i)
    p, = _runq_row(check_lists(env({head: WILD.to_bytes(8, "little")}))).problems
    assert (p.kind, p.node, p.entry, p.recovered) == ("unreadable", head, None, 0)
    assert "RT queue" in p.list and f"at its head {head:#x}" in p.line()


def test_triage_titles_damaged_lists_when_there_is_no_trap():
    """Triage's signature (analysis/crashsig.py): with no trap and no panic, damaged lists
    get a title of their own, signed without the addresses that differ per boot; with a
    trap the trap decides the title."""
    from gdbkd.analysis.crashsig import classify
    probs = [{"list": "mount list of namespace 0xffff16378202ba80 (mnt_namespace.list)",
              "kind": "loop"}, {"list": "task list (init_task.tasks)", "kind": "null"}]
    c = classify({"trap": None, "backtrace": [], "damaged_lists": probs})
    assert c["kind"] == "damaged list"
    assert c["title"] == ("damaged kernel list: mount list of namespace X (mnt_namespace.list) "
                          "(loop) and 1 more")
    other_boot = [dict(probs[0], list=probs[0]["list"].replace("16378202", "2222aaaa")), probs[1]]
    assert classify({"trap": None, "damaged_lists": other_boot[::-1]})["signature"] == c["signature"]
    assert classify({"trap": None, "damaged_lists": probs[:1]})["signature"] != c["signature"]
    assert classify({"trap": None})["kind"] == "unknown"
    assert classify({"trap": {"trap": "panic", "message": "sysrq triggered crash"},
                     "damaged_lists": probs})["kind"] == "sysrq"


def test_mount_tree_damage_is_checked(env):
    """6.8+ keeps a namespace's mounts in an rbtree (mnt_namespace.mounts): a node whose
    rb_left points at itself is a loop in kd check's mounts row."""
    from gdbkd.model.trees import rbtree_inorder
    k = env()
    off = k.offset("struct mnt_namespace", "mounts")
    if k.offset("struct mnt_namespace", "list") is not None:
        pytest.skip("this kernel's mounts are a list (before 6.8): see the list tests")
    root = fs.init_mnt_ns(k) + off
    node = rbtree_inorder(k, root).entries[-1]
    patches = {node + k.offset("struct rb_node", "rb_left"): node.to_bytes(8, "little")}
    row, = [c for c in check_lists(env(patches)) if c.name == "mounts of init's namespace"]
    p, = row.problems
    assert p.kind == "loop" and f"rb_node {node:#x} reached twice" in p.line()
    assert p.line().startswith("mount tree of namespace ")


@pytest.mark.parametrize("kind", ["self-loop", "null", "poison", "wild"])
def test_thread_list_damage_is_said(env, kind):
    """A thread group's list (signal->thread_head linking task->thread_node, 3.14+;
    task->thread_group, which 6.7 removed, otherwise): damage planted in the last user
    process's list (one thread in these dumps: the head and the leader's node). Every
    task is still listed once. (A stale prev in the head of a one-thread group is not
    seen: the leader's own list_head pointing both ways at the head spares the walk.)"""
    k0 = env()
    tl = mtasks.task_list(k0)
    lay = mtasks.task_layout(k0)
    leader = [t for t in tl if not t.is_kthread and t.pid == t.tgid and t.pid > 0][-1]
    if lay.get_offset("thread_node") is not None:
        link = lay.offset("thread_node")
        head = leader.fields["signal"] + k0.offset("struct signal_struct", "thread_head")
    else:
        link = lay.offset("thread_group")
        head = leader.addr + link
    w = walk_list(k0.reader, head, entry_offset=link)
    assert w.stop is None and leader.addr + link in w.nodes
    v = w.nodes.index(leader.addr + link)
    patches, exp = plant(kind, head, w.nodes, victim=v)
    got = mtasks.task_list(env(patches))
    addrs = [t.addr for t in got]
    assert len(addrs) == len(set(addrs)) and set(addrs) == {t.addr for t in tl}
    p, = got.damage
    assert p.list == f"thread list of pid {leader.pid} ({leader.comm})"
    assert (p.kind, p.node, p.recovered) == (exp["kind"], exp["node"], exp["recovered"])
    assert p.line() in got.problems


@pytest.mark.parametrize("kind", ["self-loop", "wild"])
def test_irq_action_chain_cut_is_said(env, kind):
    """irq_desc->action is a NULL-terminated chain (irqaction->next): a loop or an
    unreadable irqaction ends it with the reason, the actions before it kept once."""
    from gdbkd.model import irq as mirq
    k = env()
    irq, desc, info = next((i, d, x) for i, d in mirq.irq_descs(k)[0]
                           for x in [mirq.irq_info(k, i, d)] if x["actions"])
    assert info["actions_stop"] is None
    last = info["actions"][-1]["action"]
    value = last if kind == "self-loop" else WILD
    patches = {last + k.offset("struct irqaction", "next"): value.to_bytes(8, "little")}
    got = mirq.irq_info(env(patches), irq, desc)
    assert [a["action"] for a in got["actions"]] == [a["action"] for a in info["actions"]]
    want = f"loop: irqaction {last:#x} reached twice" if kind == "self-loop" \
        else f"cannot read irqaction {WILD:#x}: "
    assert got["actions_stop"].startswith(want)


def test_timer_wheel_loop_is_a_problem(env):
    """A timer wheel bucket (hlist of timer_list.entry) whose first timer points at itself:
    the walk stops with a loop, kd timer's problem says it (stop_problem)."""
    from gdbkd.model import timer as mtimer
    from gdbkd.model.lists import stop_problem
    from gdbkd.model.percpu import present_cpus
    k = env()
    cpus = present_cpus(k)
    base = next(b for b in mtimer.timer_wheel(k, cpus) if b["timers"])
    assert base["stop"] is None
    t = base["timers"][-1]["timer"]
    node = t + k.offset("struct timer_list", "entry")
    got = next(b for b in mtimer.timer_wheel(env({node: node.to_bytes(8, "little")}), cpus)
               if b["base"] == base["base"])
    assert got["stop"] == f"loop: hlist_node {node:#x} reached twice"
    p = stop_problem("timer wheel", got["base"], got["stop"], len(got["timers"]))
    assert p.kind == "loop" and p.line().startswith(f"timer wheel damaged at its head {base['base']:#x}: loop")


def test_char_device_chain_loop_is_said(env):
    """chrdevs[] chains (char_device_struct.next, NULL-terminated): an entry pointing at
    itself ends its chain with a loop problem; kd dev still lists every device once."""
    from gdbkd.model import dev as mdev
    k = env()
    want = mdev.char_devices(k)
    assert want and want.damage == []
    cd = want[0]["char_device_struct"]
    patches = {cd + k.offset("struct char_device_struct", "next"): cd.to_bytes(8, "little")}
    got = mdev.char_devices(env(patches))
    addrs = [c["char_device_struct"] for c in got]
    assert len(addrs) == len(set(addrs)) and cd in addrs and set(addrs) <= {c["char_device_struct"] for c in want}
    p, = got.damage
    assert p.kind == "loop" and p.line().startswith("chrdevs[") and f"loop: {cd:#x} reached twice" in p.line()
