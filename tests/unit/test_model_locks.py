"""Runqueues and sleeping locks in the gdb-free model (gdbkd/model/runqueue.py, locks.py)
over the real 6.1 test dump, read with the dump's own layouts (the per-vmlinux offsets
cache, which records only what model/layout.py's LAYOUTS names), against drgn 0.3.0; and
what a lock whose words cannot be read or decoded shows: "unknown" and the reason, never
"no owner" (issue 23, item 8)."""

import pytest

from tests.unit.test_model import FaultyReader
from gdbkd.model.kernel import Kernel
from gdbkd.model.layout import TypeSource
from gdbkd.model.reader import DumpReader, MemoryFault
from gdbkd.model import locks as mlocks
from gdbkd.model.runqueue import runqueues
from gdbkd.analysis import waitgraph

_MUTEXES = ("module_mutex", "cgroup_mutex", "tty_mutex", "event_mutex", "oom_lock", "rtnl_mutex")
_RWSEMS = ("uts_sem", "pernet_ops_rwsem", "namespace_sem", "umhelper_sem")


def kernel_of(d, reader=None, types=None):
    return Kernel(reader or DumpReader(d), types or d.kernel.types, d.sym)


def test_runqueues_equal_drgn_through_the_offsets_cache(td_dump, td_drgn):
    from drgn import offsetof
    from drgn.helpers.linux.cpumask import for_each_present_cpu
    from drgn.helpers.linux.percpu import per_cpu
    from drgn.helpers.linux.rbtree import rbtree_inorder_for_each_entry
    from drgn.helpers.linux.sched import cpu_curr
    got = runqueues(kernel_of(td_dump))
    assert [rq["cpu"] for rq in got] == list(for_each_present_cpu(td_drgn))
    for rq in got:
        d = per_cpu(td_drgn["runqueues"], rq["cpu"])
        assert rq["rq"] == d.address_ and rq["curr"].addr == cpu_curr(td_drgn, rq["cpu"]).value_()
        assert rq["nr_running"] == int(d.nr_running) and rq["problems"] == []
        top = [se.value_() for se in rbtree_inorder_for_each_entry(
            "struct sched_entity", d.cfs.tasks_timeline.rb_root.address_of_(), "run_node")]
        se = offsetof(td_drgn.type("struct task_struct"), "se")
        flat = [it["group"] if "group" in it else it["task"].addr + se for it in rq["cfs"]]
        # the tree in order, and before it at most the running group (cfs_rq->curr)
        assert flat[len(flat) - len(top):] == top
        assert flat[:len(flat) - len(top)] in ([], [d.cfs.curr.value_()])


def _drgn_state(prog, kind, name):
    from drgn import Object
    from drgn.helpers.linux.locking import RwsemLocked, mutex_owner, rwsem_locked, rwsem_owner
    a = prog.symbol(name).address
    if kind == "mutex":
        o = mutex_owner(Object(prog, "struct mutex *", a)).value_()
        return "locked" if o else "unlocked", o
    p = Object(prog, "struct rw_semaphore *", a)
    st = rwsem_locked(p)
    return ({RwsemLocked.UNLOCKED: "unlocked", RwsemLocked.READ_LOCKED: "read-locked",
             RwsemLocked.WRITE_LOCKED: "write-locked"}[st],
            rwsem_owner(p).value_() if st != RwsemLocked.UNLOCKED else 0)


def test_lock_owners_equal_drgn_through_the_offsets_cache(td_dump, td_drgn):
    k = kernel_of(td_dump)
    for kind, names in (("mutex", _MUTEXES), ("rwsem", _RWSEMS)):
        for n in names:
            a = td_drgn.symbol(n).address
            st = mlocks.lock_state(k, kind, a)
            assert st.unknown is None, (n, st.unknown)
            owner = st.owners[0] if st.owners else (st.hint or 0)
            assert (st.state, owner) == _drgn_state(td_drgn, kind, n), n
            assert list(mlocks.lock_waiters(k, kind, a)) == []
    sem = mlocks.lock_state(k, "semaphore", td_drgn.symbol("console_sem").address)
    assert sem.count == int(td_drgn["console_sem"].count) and sem.probable


def _faulty(d, addrs):
    """The td_dump's memory with the 4 KiB blocks holding ADDRS made unreadable."""
    return FaultyReader(d, {a // 4096 for a in addrs})


class _Without(TypeSource):
    """The td_dump's layouts less some members (a kernel that lacks them)."""

    def __init__(self, inner, hidden):
        self.inner, self.hidden = inner, set(hidden)

    def member(self, typename, path):
        return None if (typename, path) in self.hidden else self.inner.member(typename, path)

    def sizeof(self, name):
        return self.inner.sizeof(name)


@pytest.mark.parametrize("kind,name", [("mutex", "module_mutex"), ("rwsem", "uts_sem"),
                                       ("semaphore", "console_sem")])
def test_an_unreadable_lock_is_unknown_with_the_reason(td_dump, td_drgn, kind, name):
    a = td_drgn.symbol(name).address
    st = mlocks.lock_state(kernel_of(td_dump, _faulty(td_dump, [a])), kind, a)
    assert st.state == "unknown" and st.owners == [] and not st.probable
    assert "corrupt page (injected)" in st.unknown
    # its wait list: nothing found, and the walk says why (not "no waiters")
    w = mlocks.lock_waiters(kernel_of(td_dump, _faulty(td_dump, [a])), kind, a)
    assert list(w) == [] and w.damage
    assert "corrupt page (injected)" in w.damage[0].line()


def test_a_member_the_kernel_lacks_is_unknown_with_the_reason(td_dump, td_drgn):
    k = kernel_of(td_dump, types=_Without(td_dump.kernel.types, [("struct mutex", "owner")]))
    st = mlocks.lock_state(k, "mutex", td_drgn.symbol("module_mutex").address)
    assert st.state == "unknown" and st.owners == []
    assert st.unknown == "this kernel's struct mutex has no owner"


def test_runqueue_without_its_members_says_which(td_dump):
    k = kernel_of(td_dump, types=_Without(td_dump.kernel.types, [("struct rq", "cfs")]))
    with pytest.raises(MemoryFault, match="no cfs"):
        runqueues(k)


def test_an_unreadable_stack_is_said_not_searched(td_dump):
    k = kernel_of(td_dump)
    scan = mlocks.StackScan(k)
    victim = next(t for t in scan.tasks if t.pid > 1 and t.stack)
    k = kernel_of(td_dump, _faulty(td_dump, [victim.stack]))
    scan = mlocks.StackScan(k)
    t = scan.by_addr[victim.addr]
    assert scan.find_wait_list(t) == (None, None)
    assert "corrupt page (injected)" in scan.unreadable[t.addr]


def test_the_wait_graph_says_unknown_owner_and_why():
    tasks = {1: {"pid": 10, "comm": "a", "state": "UN", "where": ""}}
    locks = {0x1000: {"name": "m", "kind": "mutex", "owners": [], "probable": False,
                      "detail": "", "unknown": "cannot read 0x1000: corrupt page",
                      "waiters": [1]}}
    r = waitgraph.analyze(tasks, locks, {1: 0x1000})
    text = waitgraph.render_text(r)
    assert "owner unknown (cannot read 0x1000: corrupt page)" in text
    assert "none found" not in text
    assert "held by an unknown owner (cannot read 0x1000: corrupt page)" in text


# -- the rw_semaphore words of both schemes: the layouts of 5.0 and 6.1 (as their DWARF
# says: count at 0, owner at 8; 5.0's owner a pointer, 6.1's an atomic_long_t), words
# written as each kernel's rwsem code leaves them ------------------------------------------
_TASK = 0xffff000012345600
_SEM = 0xffff800010000000


def _rwsem_kernel(count, owner, new_scheme):
    from gdbkd.model.layout import RecordedTypes
    from gdbkd.model.reader import BytesReader
    members = {"count": [0, 8, "s"], "owner": [8, 8, "s" if new_scheme else "u"],
               "wait_list": [24, 16, "b"]}
    if new_scheme:
        members["owner.counter"] = [8, 8, "s"]
    types = RecordedTypes({"struct rw_semaphore": {"size": 40, "members": members}})
    raw = (count & (1 << 64) - 1).to_bytes(8, "little") + owner.to_bytes(8, "little") + bytes(24)
    return Kernel(BytesReader({_SEM: raw}, cache=False), types, lambda name: None)


@pytest.mark.parametrize("new,count,owner,state,owners,probable", [
    # v5.3+: count bit 0 the writer; readers from bit 8, bit 63 (READ_FAILED) not one of them
    (True, 0x1, _TASK, "write-locked", [_TASK], False),
    (True, 0x3, _TASK | 0x2, "write-locked", [_TASK], False),
    (True, (1 << 63) | 0x300, _TASK | 0x1, "read-locked", [_TASK], True),
    (True, 0, _TASK | 0x1, "unlocked", [], False),
    # v4.20-v5.2 (xadd): a writer is count -0xffffffff (WAITING_BIAS + 1) and owner = task;
    # readers leave owner = last reader | READER_OWNED | ANONYMOUSLY_OWNED
    (False, -0xffffffff, _TASK, "write-locked", [_TASK], False),
    (False, -0x1ffffffff, _TASK, "write-locked", [_TASK], False),
    (False, 2, _TASK | 0x3, "read-locked", [_TASK], True),
    (False, -0x100000000 + 2, _TASK | 0x3, "read-locked", [_TASK], True),
    (False, 0, _TASK | 0x3, "unlocked", [], False),
])
def test_rwsem_words_of_both_schemes(new, count, owner, state, owners, probable):
    st = mlocks.lock_state(_rwsem_kernel(count, owner, new), "rwsem", _SEM)
    assert (st.state, st.owners, st.probable, st.unknown) == (state, owners, probable, None)
    if state == "read-locked":
        assert st.detail.startswith(f"read-locked by {3 if new else 2} reader(s)")


def test_an_xadd_count_without_an_owner_is_unknown():
    # 5.0: one active locker with waiters queued (-0x100000000 + 1) and no owner recorded:
    # a reader with waiters or a writer before it set the owner; the count cannot tell
    st = mlocks.lock_state(_rwsem_kernel(-0x100000000 + 1, 0, False), "rwsem", _SEM)
    assert st.state == "unknown" and st.owners == [] and "no owner is recorded" in st.unknown
