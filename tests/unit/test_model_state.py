"""The gdb-free system-state model (model/fs, vma, net, irq, timer, trees) over the real 6.1
test dump, against drgn 0.3.0 on the same dump, in seconds and without gdb.

Struct layouts come from drgn's reading of the vmlinux's DWARF here (a TypeSource
over drgn types), where kd inside gdb takes gdb's: the decoders are the same."""

import pytest

from tests.conftest import module_dumps
from gdbkd.model.kernel import Kernel
from gdbkd.model.layout import TypeSource
from gdbkd.model.reader import DumpReader
from gdbkd.model import fs, vma, irq, timer, net, tasks as mtasks, trees

drgn = pytest.importorskip("drgn")

TD = MDF = None
_dumps = module_dumps(globals())


class DrgnTypes(TypeSource):
    """Member offsets, sizes and kinds from drgn's types (what GdbTypes gives inside gdb)."""

    def __init__(self, prog):
        self.prog = prog

    @staticmethod
    def _strip(t):
        t = t.unqualified()
        while t.kind == drgn.TypeKind.TYPEDEF:
            t = t.type.unqualified()
        return t

    def member(self, typename, path):
        try:
            t = self.prog.type(typename)
            off = drgn.offsetof(t, path)
            mt = t
            for part in path.replace("]", "").replace("[", ".").split("."):
                mt = self._strip(mt).type if part.isdigit() else self._strip(mt).member(part).type
        except (LookupError, ValueError):
            return None
        u = self._strip(mt)
        if u.kind in (drgn.TypeKind.ARRAY, drgn.TypeKind.UNION):
            kind = "b"
        elif u.kind == drgn.TypeKind.STRUCT:
            kind = "b"
            if u.size <= 8 and len(u.members) == 1:
                inner = self._strip(u.members[0].type)
                if inner.kind in (drgn.TypeKind.INT, drgn.TypeKind.POINTER, drgn.TypeKind.ENUM):
                    kind = "s" if inner.kind == drgn.TypeKind.INT and inner.is_signed else "u"
        else:
            kind = "s" if u.kind == drgn.TypeKind.INT and u.is_signed else "u"
        return off, drgn.sizeof(mt), kind

    def sizeof(self, name):
        try:
            if name.startswith(("struct ", "union ")):
                return drgn.sizeof(self.prog.type(name))
            return drgn.sizeof(self.prog[name])
        except (LookupError, ValueError):
            return None


@pytest.fixture(scope="module")
def prog():
    p = drgn.Program()
    p.set_core_dump(str(TD.elf))
    p.load_debug_info([str(TD.vmlinux)])
    return p


@pytest.fixture(scope="module")
def k(prog):
    from gdbkd.target import open_dump
    d = open_dump(TD.elf, TD.vmlinux)

    def sym(name):
        try:
            return prog.symbol(name).address
        except LookupError:
            return None
    yield Kernel(DumpReader(d), DrgnTypes(prog), sym)
    d.close()


def test_files_and_paths_equal_drgn(k, prog):
    from drgn.helpers.linux.fs import for_each_file, d_path
    from drgn.helpers.linux.pid import find_task
    n = 0
    for t in mtasks.task_list(k):
        if t.pid == 0:
            continue
        ours = [(fd, fs.file_info(k, f, fd)["path"]) for fd, f in fs.task_files(k, t.addr)[2]]
        theirs = [(fd, d_path(f.f_path)) for fd, f in for_each_file(find_task(prog, t.pid)) if f]
        assert ours == theirs, t.pid
        n += len(ours)
    assert n > 10


def test_vmas_equal_drgn(k, prog):
    from drgn.helpers.linux.mm import for_each_vma
    from drgn.helpers.linux.pid import find_task
    users = [t for t in mtasks.task_list(k) if t.mm and not t.is_kthread]
    for t in users:
        vmas, how, stop = vma.vma_list(k, t.mm)
        assert how.startswith("mm->mm_mt") and stop is None
        assert [vma.vma_info(k, v)["start"] for v in vmas] == \
            [v.vm_start.value_() for v in for_each_vma(find_task(prog, t.pid).mm)]
    assert users


def test_mounts_equal_drgn(k, prog):
    from drgn.helpers.linux.fs import for_each_mount, mount_dst, mount_fstype
    ms, stop = fs.mount_list(k, fs.init_mnt_ns(k))
    assert stop is None
    assert [(m, fs.mount_info(k, m)["dirname"], fs.mount_info(k, m)["fstype"]) for m in ms] == \
        [(m.value_(), mount_dst(m), mount_fstype(m)) for m in for_each_mount(prog)]


def test_irqs_netdevs_timers_equal_drgn(k, prog):
    from drgn.helpers.linux.irq import for_each_irq_desc, irq_desc_action_names
    from drgn.helpers.linux.net import for_each_netdev
    from drgn.helpers.linux.timer import timer_base_for_each
    from drgn.helpers.linux.percpu import per_cpu
    descs, source, stop = irq.irq_descs(k)
    assert source.startswith("irq_desc_tree") and stop is None
    assert [(i, d, [a["name"] for a in irq.irq_info(k, i, d)["actions"] if a["name"]])
            for i, d in descs] == \
        [(i, d.value_(), irq_desc_action_names(d)) for i, d in for_each_irq_desc(prog)]
    devs, _ = net.netdevs(k, k.sym("init_net"))
    assert [net.netdev_info(k, d)["name"] for d in devs] == \
        [d.name.string_() for d in for_each_netdev(prog)]
    ours = sorted(t["timer"] for b in timer.timer_wheel(k, [0, 1]) for t in b["timers"])
    theirs = sorted(t.value_() for c in (0, 1) for base in per_cpu(prog["timer_bases"], c)
                    for t in timer_base_for_each(base.address_of_()))
    assert ours == theirs and ours


def test_wrong_roots_are_refused(k):
    task = k.sym("init_task")
    for walk in (trees.rbtree_inorder, trees.xarray_entries, trees.maple_entries):
        with pytest.raises(trees.WrongType):
            walk(k, task)
