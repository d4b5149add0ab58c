"""drgn 0.3.0's view of a dump, for tests/e2e/test_kd_state.py (run as a script:
``python drgn_state_ref.py DUMP VMLINUX PID... [wq=HEX rbroot=HEX xa=HEX mt=HEX] [kernel-trees]``;
prints JSON)."""

import json
import sys

import drgn
from drgn.helpers.linux.fs import d_path, for_each_file, for_each_mount, mount_dst, mount_fstype, mount_src
from drgn.helpers.linux.mm import for_each_vma, follow_phys
from drgn.helpers.linux.pid import find_task


def trees(prog, wq, rbroot, xa, mt):
    """Entries of the test module's wait queue and trees, by address (the module's
    symbols are not loaded into drgn)."""
    from drgn import Object
    from drgn.helpers.linux.wait import waitqueue_for_each_entry
    from drgn.helpers.linux.rbtree import rbtree_inorder_for_each
    from drgn.helpers.linux.xarray import xa_for_each
    from drgn.helpers.linux.mapletree import mt_for_each
    return {
        "waitq": [[e.value_(), e.private.value_()] for e in
                  waitqueue_for_each_entry(Object(prog, "struct wait_queue_head *", wq))],
        "rbtree": [n.value_() for n in rbtree_inorder_for_each(Object(prog, "struct rb_root *", rbroot))],
        "xarray": [[i, e.value_()] for i, e in xa_for_each(Object(prog, "struct xarray *", xa))],
        "maple": [[a, b, e.value_()] for a, b, e in mt_for_each(Object(prog, "struct maple_tree *", mt))],
    }


def _has(prog, name):
    try:
        prog[name]
    except KeyError:
        return False
    return True


def kernel_trees(prog):
    """The kernel's own wait queues and trees that every guest has (for the 5.10/6.12
    dumps, which have no test module): kthreads' wait queues, the irq descriptor
    tree (a radix tree up to 6.4, the sparse_irqs maple tree after) and an rbtree
    (vmap_area_root up to 6.8; 6.12 has per-node vmap trees, so the init mount
    namespace's mounts rbtree, 6.8+)."""
    from drgn import container_of
    from drgn.helpers.linux.wait import waitqueue_for_each_entry
    from drgn.helpers.linux.rbtree import rbtree_inorder_for_each
    from drgn.helpers.linux.xarray import xa_for_each
    from drgn.helpers.linux.mapletree import mt_for_each
    out = {"waitq": {n: [[e.value_(), e.private.value_()] for e in
                         waitqueue_for_each_entry(prog[n].address_of_())]
                     for n in ("khugepaged_wait", "kauditd_wait", "oom_reaper_wait")
                     if _has(prog, n)}}
    try:
        out["xarray"] = [[i, e.value_()] for i, e in xa_for_each(prog["irq_desc_tree"].address_of_())]
    except KeyError:
        out["maple"] = [[a, b, e.value_()] for a, b, e in mt_for_each(prog["sparse_irqs"].address_of_())]
    try:
        out["rbtree"] = [n.value_() for n in rbtree_inorder_for_each(prog["vmap_area_root"].address_of_())]
    except KeyError:
        root = prog["init_task"].nsproxy.mnt_ns.mounts.address_of_()
        out["mounts_rbtree"] = [container_of(n, "struct mount", "mnt_node").value_()
                                for n in rbtree_inorder_for_each(root)]
    return out


def disks(prog):
    """[gendisk, name, major, first_minor, queue, reads, writes, sectors read, sectors
    written] of each disk: drgn's for_each_disk and the per-CPU part0 statistics
    summed over the possible CPUs (part_stat_read)."""
    from drgn.helpers.linux.block import for_each_disk, disk_name
    from drgn.helpers.linux.cpumask import for_each_possible_cpu
    from drgn.helpers.linux.percpu import per_cpu_ptr
    out = []
    for d in for_each_disk(prog):
        try:
            stats = d.part0.bd_stats
        except AttributeError:
            stats = d.part0.dkstats
        s = [0, 0, 0, 0]
        for c in for_each_possible_cpu(prog):
            st = per_cpu_ptr(stats, c)
            s = [s[0] + st.ios[0].value_(), s[1] + st.ios[1].value_(),
                 s[2] + st.sectors[0].value_(), s[3] + st.sectors[1].value_()]
        out.append([d.value_(), disk_name(d).decode(), d.major.value_(), d.first_minor.value_(),
                    d.queue.value_(), *s])
    return out


def _hrtimers(clock_base):
    """drgn 0.3.0's hrtimer_clock_base_for_each needs v5.4's rb_root_cached timerqueue
    (commit 511885d7061e "lib/timerqueue: Rely on rbtree semantics for next timer"); before
    it, ``timerqueue_head.head`` is a plain rb_root: walked with drgn's rbtree helper."""
    from drgn.helpers.linux.rbtree import rbtree_inorder_for_each_entry
    from drgn.helpers.linux.timer import hrtimer_clock_base_for_each
    if clock_base.prog_.type("struct timerqueue_head").has_member("rb_root"):
        return hrtimer_clock_base_for_each(clock_base.address_of_())
    return rbtree_inorder_for_each_entry("struct hrtimer", clock_base.active.head.address_of_(),
                                         "node.node")


def main():
    prog = drgn.Program()
    prog.set_core_dump(sys.argv[1])
    prog.load_debug_info([sys.argv[2]])
    out = {"files": {}, "vmas": {}, "phys": {}}
    addrs = dict(a.split("=") for a in sys.argv[3:] if "=" in a)
    if "disks" in sys.argv[3:]:
        out["disks"] = disks(prog)
    if "kernel-trees" in sys.argv[3:]:
        out["kernel_trees"] = kernel_trees(prog)
    if addrs:
        out["trees"] = trees(prog, *(int(addrs[n], 16) for n in ("wq", "rbroot", "xa", "mt")))
    for pid in (int(a) for a in sys.argv[3:] if a.isdigit()):
        t = find_task(prog, pid)
        files = {}
        for fd, f in for_each_file(t):
            if f:
                files[fd] = d_path(f.f_path).decode("utf-8", "backslashreplace")
        out["files"][pid] = files
        if t.mm:
            out["vmas"][pid] = [v.vm_start.value_() for v in for_each_vma(t.mm)]
            phys = {}
            for v in for_each_vma(t.mm):
                for va in range(v.vm_start.value_(), v.vm_end.value_(), 4096):
                    try:
                        phys[va] = follow_phys(t.mm, va).value_()
                    except drgn.FaultError:
                        pass
            out["phys"][pid] = phys
    out["mounts"] = [[m.value_(), mount_dst(m).decode(), mount_fstype(m).decode(),
                      mount_src(m).decode()] for m in for_each_mount(prog)]
    from drgn.helpers.linux.net import for_each_netdev, netdev_ipv4_addrs
    from drgn.helpers.linux.irq import for_each_irq_desc, irq_desc_action_names, irq_desc_kstat_cpu
    from drgn.helpers.linux.timer import timer_base_for_each, hrtimer_clock_base_for_each
    from drgn.helpers.linux.percpu import per_cpu
    from drgn.helpers.linux.cpumask import for_each_present_cpu
    from drgn.helpers.linux.timekeeping import ktime_get_coarse_ns
    out["netdevs"] = [[d.name.string_().decode(), [str(a) for a in netdev_ipv4_addrs(d)]]
                      for d in for_each_netdev(prog)]
    cpus = list(for_each_present_cpu(prog))
    out["irqs"] = [[irq, d.value_(), [n.decode() for n in irq_desc_action_names(d)],
                    [irq_desc_kstat_cpu(d, c) for c in cpus]] for irq, d in for_each_irq_desc(prog)]
    out["timers"] = sorted([c, t.value_(), t.expires.value_(), t.function.value_()]
                           for c in cpus for base in per_cpu(prog["timer_bases"], c)
                           for t in timer_base_for_each(base.address_of_()))
    out["hrtimers"] = sorted([c, t.value_(), t.node.expires.value_(), t.function.value_()]
                             for c in cpus for cb in per_cpu(prog["hrtimer_bases"], c).clock_base
                             for t in _hrtimers(cb))
    out["now_ns"] = ktime_get_coarse_ns(prog).value_()
    out["jiffies"] = prog["jiffies_64"].value_()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
