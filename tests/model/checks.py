"""The questions the model tier asks: each check is a pair of functions, one answering
with the gdb-free model (``model(k)``, run at record time on the dump and at test time on
the snapshot) and one with drgn 0.3.0 (``oracle(prog)``, run only at record time on the
same dump). Both return JSON values (lists, not tuples; ints; str).

A check whose oracle raises ``Skip`` (the kernel has no such thing) is recorded as skipped.
"""

CHECKS = {}


class Skip(Exception):
    pass


def check(name):
    def deco(fn):
        CHECKS.setdefault(name, {})["model"] = fn
        return fn
    return deco


def oracle(name):
    def deco(fn):
        CHECKS.setdefault(name, {})["oracle"] = fn
        return fn
    return deco


def _drgn_tasks(prog):
    from drgn.helpers.linux.pid import for_each_task
    from drgn.helpers.linux.sched import idle_task
    from drgn.helpers.linux.cpumask import for_each_possible_cpu
    ts = {t.value_(): t for t in for_each_task(prog)}
    for cpu in for_each_possible_cpu(prog):
        t = idle_task(prog, cpu)
        ts[t.value_()] = t
    return ts


def _tasks(k):
    from gdbkd.model import tasks
    return tasks.task_list(k)


def _user_tasks(k):
    return [t for t in _tasks(k) if t.mm and not t.is_kthread]


def _first_user_pid(prog):
    from drgn.helpers.linux.pid import for_each_task
    pids = sorted(int(t.pid) for t in for_each_task(prog) if t.mm and int(t.pid) > 0)
    if not pids:
        raise Skip("no user task")
    return pids[0]


# -- tasks ------------------------------------------------------------------------------
@check("tasks.addresses")
def _(k):
    return sorted(t.addr for t in _tasks(k))


@oracle("tasks.addresses")
def _(prog):
    return sorted(_drgn_tasks(prog))


@check("tasks.pid_comm")
def _(k):
    return sorted([t.addr, t.pid, t.tgid, t.comm_bytes.decode("latin-1")] for t in _tasks(k))


@oracle("tasks.pid_comm")
def _(prog):
    return sorted([a, int(t.pid), int(t.tgid), t.comm.string_().decode("latin-1")]
                  for a, t in _drgn_tasks(prog).items())


@check("tasks.state_letter")
def _(k):
    # crash's two letters against drgn's task_state_to_char (R S D T t X Z P I)
    m = {"RU": "R", "IN": "S", "UN": "D", "ST": "T", "TR": "t", "DE": "X", "ZO": "Z", "PA": "P",
         "ID": "I", "WA": "R", "NE": "R"}
    return sorted([t.addr, m[t.state_code]] for t in _tasks(k))


@oracle("tasks.state_letter")
def _(prog):
    from drgn.helpers.linux.sched import task_state_to_char
    return sorted([a, task_state_to_char(t)] for a, t in _drgn_tasks(prog).items())


@check("tasks.ppid")
def _(k):
    return sorted([t.addr, t.ppid] for t in _tasks(k) if t.pid)


@oracle("tasks.ppid")
def _(prog):
    return sorted([a, int(t.real_parent.pid)] for a, t in _drgn_tasks(prog).items() if int(t.pid))


@check("tasks.kthread")
def _(k):
    return sorted([t.addr, bool(t.is_kthread)] for t in _tasks(k))


@oracle("tasks.kthread")
def _(prog):
    return sorted([a, bool(int(t.flags) & 0x00200000)] for a, t in _drgn_tasks(prog).items())


@check("tasks.mm")
def _(k):
    return sorted([t.addr, t.mm] for t in _tasks(k))


@oracle("tasks.mm")
def _(prog):
    return sorted([a, t.mm.value_()] for a, t in _drgn_tasks(prog).items())


@check("tasks.stack")
def _(k):
    return sorted([t.addr, t.stack] for t in _tasks(k))


@oracle("tasks.stack")
def _(prog):
    return sorted([a, t.stack.value_()] for a, t in _drgn_tasks(prog).items())


@check("tasks.cpu")
def _(k):
    return sorted([t.addr, t.cpu] for t in _tasks(k))


@oracle("tasks.cpu")
def _(prog):
    from drgn.helpers.linux.sched import task_cpu
    return sorted([a, task_cpu(t)] for a, t in _drgn_tasks(prog).items())


@check("tasks.thread_size")
def _(k):
    from gdbkd.model import tasks
    return tasks.thread_size(k)


@oracle("tasks.thread_size")
def _(prog):
    return int(prog["THREAD_SIZE"])


@check("tasks.active")
def _(k):
    from gdbkd.model import tasks
    return sorted([cpu, t] for cpu, t in tasks.active_tasks(k).items())


@oracle("tasks.active")
def _(prog):
    from drgn.helpers.linux.sched import cpu_curr
    from drgn.helpers.linux.cpumask import for_each_present_cpu
    return sorted([cpu, cpu_curr(prog, cpu).value_()] for cpu in for_each_present_cpu(prog))


@check("tasks.no_problems")
def _(k):
    tl = _tasks(k)
    return [len(tl.problems), len(tl.damage)]


@oracle("tasks.no_problems")
def _(prog):
    return [0, 0]


@check("tasks.select_kernel_user")
def _(k):
    from gdbkd.model import tasks
    tl = _tasks(k)
    return [sorted(t.addr for t in tasks.select_tasks(tl, kernel=True)),
            sorted(t.addr for t in tasks.select_tasks(tl, user=True))]


@oracle("tasks.select_kernel_user")
def _(prog):
    ts = _drgn_tasks(prog)
    kern = sorted(a for a, t in ts.items() if int(t.flags) & 0x00200000)
    user = sorted(a for a, t in ts.items() if not int(t.flags) & 0x00200000)
    return [kern, user]


@check("tasks.select_by_pid")
def _(k):
    from gdbkd.model import tasks
    tl = _tasks(k)
    pid = min(t.pid for t in tl if t.mm and not t.is_kthread)
    return sorted(t.addr for t in tasks.select_tasks(tl, specs=[tasks.parse_task_spec(str(pid))]))


@oracle("tasks.select_by_pid")
def _(prog):
    from drgn.helpers.linux.pid import find_task
    return [find_task(prog, _first_user_pid(prog)).value_()]


# -- per-CPU ----------------------------------------------------------------------------
@check("percpu.nr_cpu_ids")
def _(k):
    from gdbkd.model import percpu
    return percpu.nr_cpu_ids(k)


@oracle("percpu.nr_cpu_ids")
def _(prog):
    return int(prog["nr_cpu_ids"])


@check("percpu.possible")
def _(k):
    from gdbkd.model import percpu
    return list(percpu.possible_cpus(k))


@oracle("percpu.possible")
def _(prog):
    from drgn.helpers.linux.cpumask import for_each_possible_cpu
    return list(for_each_possible_cpu(prog))


@check("percpu.present")
def _(k):
    from gdbkd.model import percpu
    return list(percpu.present_cpus(k))


@oracle("percpu.present")
def _(prog):
    from drgn.helpers.linux.cpumask import for_each_present_cpu
    return list(for_each_present_cpu(prog))


@check("percpu.online")
def _(k):
    from gdbkd.model import percpu
    return list(percpu.online_cpus(k))


@oracle("percpu.online")
def _(prog):
    from drgn.helpers.linux.cpumask import for_each_online_cpu
    return list(for_each_online_cpu(prog))


@check("percpu.offsets")
def _(k):
    from gdbkd.model import percpu
    return [percpu.cpu_offsets(k)[c] for c in percpu.possible_cpus(k)]


@oracle("percpu.offsets")
def _(prog):
    from drgn.helpers.linux.cpumask import for_each_possible_cpu
    return [int(prog["__per_cpu_offset"][c]) & (1 << 64) - 1 for c in for_each_possible_cpu(prog)]


@check("percpu.runqueue_addr")
def _(k):
    from gdbkd.model import percpu
    return [percpu.per_cpu_addr(k, k.sym("runqueues"), c) for c in percpu.possible_cpus(k)]


@oracle("percpu.runqueue_addr")
def _(prog):
    from drgn.helpers.linux.percpu import per_cpu
    from drgn.helpers.linux.cpumask import for_each_possible_cpu
    return [per_cpu(prog["runqueues"], c).address_ for c in for_each_possible_cpu(prog)]


# -- modules ----------------------------------------------------------------------------
def module_list(k):
    from gdbkd.model.modules import module_list as ml
    mods, _stop = ml(k)
    return mods


@check("modules.names")
def _(k):
    return [[m.addr, m.name] for m in module_list(k)]


@oracle("modules.names")
def _(prog):
    from drgn.helpers.linux.module import for_each_module
    return [[m.value_(), m.name.string_().decode()] for m in for_each_module(prog)]


@check("modules.base_size")
def _(k):
    return [[m.name, m.base, m.size] for m in module_list(k)]


@oracle("modules.base_size")
def _(prog):
    from drgn.helpers.linux.module import for_each_module
    out = []
    for m in for_each_module(prog):
        try:
            lay = m.mem[0]                  # 6.4+: struct module_memory
        except (AttributeError, LookupError):
            lay = m.core_layout
        out.append([m.name.string_().decode(), lay.base.value_(), int(lay.size)])
    return out


@check("modules.sections")
def _(k):
    return [[m.name, sorted(m.sections.items())] for m in module_list(k)]


@oracle("modules.sections")
def _(prog):
    from drgn.helpers.linux.module import for_each_module
    out = []
    for m in for_each_module(prog):
        sa = m.sect_attrs
        secs = []
        for i in range(int(sa.nsections)):
            a = sa.attrs[i]
            try:
                name = a.battr.attr.name.string_().decode()
            except AttributeError:
                name = a.name.string_().decode()
            secs.append([name, a.address.value_()])
        out.append([m.name.string_().decode(), sorted(secs)])
    return out


# -- printk -----------------------------------------------------------------------------
def _printk(k):
    from gdbkd.model.printk import records
    return list(records(k))


@check("printk.texts")
def _(k):
    return [r.text.decode("latin-1") for r in _printk(k)]


@oracle("printk.texts")
def _(prog):
    from drgn.helpers.linux.printk import get_printk_records
    return [r.text.decode("latin-1") for r in get_printk_records(prog)]


@check("printk.timestamps")
def _(k):
    return [r.ts_nsec for r in _printk(k)]


@oracle("printk.timestamps")
def _(prog):
    from drgn.helpers.linux.printk import get_printk_records
    return [r.timestamp for r in get_printk_records(prog)]


@check("printk.levels")
def _(k):
    return [r.level for r in _printk(k)]


@oracle("printk.levels")
def _(prog):
    from drgn.helpers.linux.printk import get_printk_records
    return [r.level for r in get_printk_records(prog)]


@check("printk.seq")
def _(k):
    return [r.seq for r in _printk(k)]


@oracle("printk.seq")
def _(prog):
    from drgn.helpers.linux.printk import get_printk_records
    return [r.seq for r in get_printk_records(prog)]


# -- sysinfo ----------------------------------------------------------------------------
@check("sysinfo.osrelease")
def _(k):
    from gdbkd.model import sysinfo
    return sysinfo.vmcoreinfo(k).get("OSRELEASE")


@oracle("sysinfo.osrelease")
def _(prog):
    return prog["init_uts_ns"].name.release.string_().decode()


@check("sysinfo.page_size")
def _(k):
    from gdbkd.model import sysinfo
    return sysinfo.page_size(k)


@oracle("sysinfo.page_size")
def _(prog):
    return int(prog["PAGE_SIZE"])


@check("sysinfo.totalram_pages")
def _(k):
    from gdbkd.model import sysinfo
    return sysinfo.totalram_pages(k)


@oracle("sysinfo.totalram_pages")
def _(prog):
    from drgn.helpers.linux.mm import totalram_pages
    return int(totalram_pages(prog))


@check("sysinfo.vmcoreinfo_keys")
def _(k):
    from gdbkd.model import sysinfo
    v = sysinfo.vmcoreinfo(k)
    return [v.get("PAGESIZE"), v.get("SYMBOL(init_uts_ns)")]


@oracle("sysinfo.vmcoreinfo_keys")
def _(prog):
    text = prog["vmcoreinfo_data"].string_().decode()
    d = dict(l.split("=", 1) for l in text.splitlines() if "=" in l)
    return [d.get("PAGESIZE"), d.get("SYMBOL(init_uts_ns)")]


# -- timers -----------------------------------------------------------------------------
@check("timer.jiffies")
def _(k):
    from gdbkd.model import timer
    return timer.jiffies(k)


@oracle("timer.jiffies")
def _(prog):
    return int(prog["jiffies_64"])


@check("timer.wheel")
def _(k):
    from gdbkd.model import timer, percpu
    return sorted(t["timer"] for b in timer.timer_wheel(k, percpu.possible_cpus(k)) for t in b["timers"])


@oracle("timer.wheel")
def _(prog):
    from drgn.helpers.linux.timer import timer_base_for_each
    from drgn.helpers.linux.percpu import per_cpu
    from drgn.helpers.linux.cpumask import for_each_possible_cpu
    return sorted(t.value_() for c in for_each_possible_cpu(prog)
                  for base in per_cpu(prog["timer_bases"], c)
                  for t in timer_base_for_each(base.address_of_()))


@check("timer.wheel_expires")
def _(k):
    from gdbkd.model import timer, percpu
    return sorted([t["timer"], t["expires"]] for b in timer.timer_wheel(k, percpu.possible_cpus(k))
                  for t in b["timers"])


@oracle("timer.wheel_expires")
def _(prog):
    from drgn.helpers.linux.timer import timer_base_for_each
    from drgn.helpers.linux.percpu import per_cpu
    from drgn.helpers.linux.cpumask import for_each_possible_cpu
    return sorted([t.value_(), int(t.expires)] for c in for_each_possible_cpu(prog)
                  for base in per_cpu(prog["timer_bases"], c)
                  for t in timer_base_for_each(base.address_of_()))


# -- fs ---------------------------------------------------------------------------------
@check("fs.files")
def _(k):
    from gdbkd.model import fs
    out = []
    for t in sorted(_tasks(k), key=lambda t: t.addr):
        if t.pid == 0:
            continue
        out += [[t.pid, fd, fs.file_info(k, f, fd)["path"].decode("latin-1")]
                for fd, f in fs.task_files(k, t.addr)[2]]
    return sorted(out)


@oracle("fs.files")
def _(prog):
    from drgn.helpers.linux.fs import for_each_file, d_path
    out = []
    for a, t in _drgn_tasks(prog).items():
        if int(t.pid) == 0:
            continue
        out += [[int(t.pid), fd, d_path(f.f_path).decode("latin-1")] for fd, f in for_each_file(t) if f]
    return sorted(out)


@check("fs.mounts")
def _(k):
    from gdbkd.model import fs
    ms, _ = fs.mount_list(k, fs.init_mnt_ns(k))
    def text(v):
        return v.decode("latin-1") if isinstance(v, bytes) else v
    return [[m, text(fs.mount_info(k, m)["dirname"]), text(fs.mount_info(k, m)["fstype"])] for m in ms]


@oracle("fs.mounts")
def _(prog):
    from drgn.helpers.linux.fs import for_each_mount, mount_dst, mount_fstype
    return [[m.value_(), mount_dst(m).decode("latin-1"), mount_fstype(m).decode("latin-1")]
            for m in for_each_mount(prog)]


# -- mm / vma ---------------------------------------------------------------------------
@check("vma.starts")
def _(k):
    from gdbkd.model import vma
    return sorted([t.pid, [vma.vma_info(k, v)["start"] for v in vma.vma_list(k, t.mm)[0]]]
                  for t in _user_tasks(k))


@oracle("vma.starts")
def _(prog):
    from drgn.helpers.linux.mm import for_each_vma
    return sorted([int(t.pid), [v.vm_start.value_() for v in for_each_vma(t.mm)]]
                  for t in _drgn_tasks(prog).values() if t.mm and not int(t.flags) & 0x00200000)


@check("vma.ends_flags")
def _(k):
    from gdbkd.model import vma
    out = []
    for t in _user_tasks(k):
        for v in vma.vma_list(k, t.mm)[0]:
            i = vma.vma_info(k, v)
            out.append([t.pid, i["start"], i["end"], i["flags"]])
    return sorted(out)


@oracle("vma.ends_flags")
def _(prog):
    from drgn.helpers.linux.mm import for_each_vma
    return sorted([int(t.pid), v.vm_start.value_(), v.vm_end.value_(), int(v.vm_flags)]
                  for t in _drgn_tasks(prog).values() if t.mm and not int(t.flags) & 0x00200000
                  for v in for_each_vma(t.mm))


@check("mm.rss")
def _(k):
    from gdbkd.model import mm
    out = []
    for t in _user_tasks(k):
        total_vm, rss = mm.mm_counters(k, t.mm)
        out.append([t.pid, total_vm, rss, mm.task_rss_delta(k, t)])
    return sorted(out)


@oracle("mm.rss")
def _(prog):
    """get_mm_counter (percpu_counter_read_positive from 6.2, the atomic before) of the file,
    anon and shmem counters, and the thread's not yet folded SPLIT_RSS_COUNTING (<= 6.1)."""
    out = []
    for t in _drgn_tasks(prog).values():
        if not t.mm or int(t.flags) & 0x00200000:
            continue
        st = t.mm.rss_stat
        try:
            vals = [int(st.count[i].counter) for i in (0, 1, 3)]
        except AttributeError:
            vals = [int(st[i].count) for i in (0, 1, 3)]
        try:
            delta = sum(int(t.rss_stat.count[i]) for i in (0, 1, 3))
        except AttributeError:
            delta = 0
        out.append([int(t.pid), int(t.mm.total_vm), sum(max(v, 0) for v in vals), delta])
    return sorted(out)


# -- net --------------------------------------------------------------------------------
@check("net.netdevs")
def _(k):
    from gdbkd.model import net
    devs, _ = net.netdevs(k, k.sym("init_net"))
    return [[d, net.netdev_info(k, d)["name"].decode("latin-1")
             if isinstance(net.netdev_info(k, d)["name"], bytes) else net.netdev_info(k, d)["name"]]
            for d in devs]


@oracle("net.netdevs")
def _(prog):
    from drgn.helpers.linux.net import for_each_netdev
    return [[d.value_(), d.name.string_().decode()] for d in for_each_netdev(prog)]


@check("net.namespaces")
def _(k):
    from gdbkd.model import net
    return sorted(net.net_namespaces(k)[0])


@oracle("net.namespaces")
def _(prog):
    from drgn.helpers.linux.net import for_each_net
    return sorted(n.value_() for n in for_each_net(prog))


# -- irq --------------------------------------------------------------------------------
@check("irq.descs")
def _(k):
    from gdbkd.model import irq
    descs, _, _ = irq.irq_descs(k)
    return [[i, d] for i, d in descs]


@oracle("irq.descs")
def _(prog):
    from drgn.helpers.linux.irq import for_each_irq_desc
    return [[i, d.value_()] for i, d in for_each_irq_desc(prog)]


@check("irq.action_names")
def _(k):
    from gdbkd.model import irq
    descs, _, _ = irq.irq_descs(k)
    return [[i, [a["name"].decode("latin-1") if isinstance(a["name"], bytes) else a["name"]
                 for a in irq.irq_info(k, i, d)["actions"] if a["name"]]] for i, d in descs]


@oracle("irq.action_names")
def _(prog):
    from drgn.helpers.linux.irq import for_each_irq_desc, irq_desc_action_names
    return [[i, [n.decode("latin-1") if isinstance(n, bytes) else n for n in irq_desc_action_names(d)]]
            for i, d in for_each_irq_desc(prog)]


# -- slab -------------------------------------------------------------------------------
@check("slab.caches")
def _(k):
    from gdbkd.model import slab
    return [[c.addr, c.name, c.size, c.object_size] for c in slab.slab_caches(k)]


@oracle("slab.caches")
def _(prog):
    from drgn.helpers.linux.slab import for_each_slab_cache
    return [[s.value_(), s.name.string_().decode(), int(s.size), int(s.object_size)]
            for s in for_each_slab_cache(prog)]


def _sample_objects(prog_or_tasks):
    """Slab addresses to classify: every task's files' struct file, mm and its task_struct."""
    return prog_or_tasks


@check("slab.object_info")
def _(k):
    from gdbkd.model import slab
    out = []
    for t in sorted(_tasks(k), key=lambda t: t.addr):
        for a in (t.addr, t.mm):
            if not a:
                continue
            o = slab.object_info(k, a)
            out.append([a, None if o is None else [o.cache.name, o.object, o.allocated]])
    return out


@oracle("slab.object_info")
def _(prog):
    from drgn.helpers.linux.slab import slab_object_info
    out = []
    for a, t in sorted(_drgn_tasks(prog).items()):
        for x in (a, t.mm.value_()):
            if not x:
                continue
            o = slab_object_info(prog, x)
            out.append([x, None if o is None else
                        [o.slab_cache.name.string_().decode(), o.address, o.allocated]])
    return out


# -- addresses --------------------------------------------------------------------------
@check("addrinfo.vmap_areas")
def _(k):
    from gdbkd.model import addrinfo
    return sorted([a[0], a[1]] for a in addrinfo.vmap_areas(k))


@oracle("addrinfo.vmap_areas")
def _(prog):
    from drgn.helpers.linux.mm import for_each_vmap_area
    return sorted([v.va_start.value_(), v.va_end.value_()] for v in for_each_vmap_area(prog))


@check("addrinfo.task_stack_of")
def _(k):
    from gdbkd.model import addrinfo
    out = []
    for t in sorted(_tasks(k), key=lambda t: t.addr):
        hit = addrinfo.task_stack_of(k, t.stack + 64)
        out.append([t.addr, None if hit is None else hit[0].addr])
    return out


@oracle("addrinfo.task_stack_of")
def _(prog):
    return [[a, a] for a in sorted(_drgn_tasks(prog))]


# -- trees ------------------------------------------------------------------------------
@check("trees.idr_pids")
def _(k):
    from gdbkd.model import trees
    ns = k.sym("init_pid_ns")
    off = k.offset("struct pid_namespace", "idr.idr_rt")
    w = trees.xarray_entries(k, ns + off)
    return sorted(e[0] for e in w.entries)


@oracle("trees.idr_pids")
def _(prog):
    from drgn.helpers.linux.idr import idr_for_each
    return sorted(i for i, _ in idr_for_each(prog["init_pid_ns"].idr.address_of_()))


# -- dev --------------------------------------------------------------------------------
@check("dev.disks")
def _(k):
    from gdbkd.model import dev, percpu
    return sorted(d["name"].decode("latin-1") if isinstance(d["name"], bytes) else d["name"]
                  for d in dev.disks(k, percpu.possible_cpus(k)))


@oracle("dev.disks")
def _(prog):
    from drgn.helpers.linux.block import for_each_disk, disk_name
    return sorted(disk_name(d).decode() for d in for_each_disk(prog))


# -- runqueues (gdbkd/model/runqueue.py) -------------------------------------------------
def _rq_cfs_json(items):
    return [{"group": it["group"], "cfs_rq": it["cfs_rq"], "tasks": _rq_cfs_json(it["tasks"])}
            if "group" in it else it["task"].addr for it in items]


@check("runqueue.queued")
def _(k):
    from gdbkd.model.runqueue import runqueues
    return [{"cpu": rq["cpu"], "online": rq["online"], "curr": rq["curr"].addr,
             "nr_running": rq["nr_running"], "rt": [[x["prio"], x["task"].addr] for x in rq["rt"]],
             "cfs": _rq_cfs_json(rq["cfs"])} for rq in runqueues(k)]


@oracle("runqueue.queued")
def _(prog):
    from drgn import container_of
    from drgn.helpers.linux.cpumask import for_each_online_cpu, for_each_present_cpu
    from drgn.helpers.linux.list import list_for_each_entry
    from drgn.helpers.linux.percpu import per_cpu
    from drgn.helpers.linux.rbtree import rbtree_inorder_for_each_entry
    from drgn.helpers.linux.sched import cpu_curr
    has_myq = any(m.name == "my_q" for m in prog.type("struct sched_entity").members)

    def cfs(cfs_rq, depth):
        ses = list(rbtree_inorder_for_each_entry(
            "struct sched_entity", cfs_rq.tasks_timeline.rb_root.address_of_(), "run_node"))
        if has_myq and cfs_rq.curr and cfs_rq.curr.my_q:
            ses.insert(0, cfs_rq.curr)
        out = []
        for se in ses:
            if has_myq and se.my_q:
                if depth < 16:
                    out.append({"group": se.value_(), "cfs_rq": se.my_q.value_(),
                                "tasks": cfs(se.my_q, depth + 1)})
                continue
            out.append(container_of(se, "struct task_struct", "se").value_())
        return out

    online = set(for_each_online_cpu(prog))
    out = []
    for cpu in for_each_present_cpu(prog):
        rq = per_cpu(prog["runqueues"], cpu)
        rt = []
        for prio, head in enumerate(rq.rt.active.queue):
            for rte in list_for_each_entry("struct sched_rt_entity", head.address_of_(), "run_list"):
                rt.append([prio, container_of(rte, "struct task_struct", "rt").value_()])
        out.append({"cpu": cpu, "online": cpu in online, "curr": cpu_curr(prog, cpu).value_(),
                    "nr_running": int(rq.nr_running), "rt": rt, "cfs": cfs(rq.cfs, 0)})
    return out


# -- sleeping locks (gdbkd/model/locks.py): global locks every kernel here has most of ----
_GLOBAL_LOCKS = (
    ("mutex", ("module_mutex", "cgroup_mutex", "tty_mutex", "event_mutex", "kprobe_mutex",
               "text_mutex", "oom_lock", "sched_domains_mutex", "cpu_add_remove_lock",
               "rtnl_mutex", "dpm_list_mtx", "system_transition_mutex", "jump_label_mutex")),
    ("rwsem", ("uts_sem", "pernet_ops_rwsem", "net_rwsem", "namespace_sem", "shrinker_rwsem",
               "umhelper_sem")),
    ("semaphore", ("console_sem",)))


def _global_locks_model(k):
    return [(kind, n, k.sym(n)) for kind, names in _GLOBAL_LOCKS for n in names
            if k.sym(n) is not None]


def _global_locks_drgn(prog):
    from drgn import Object
    out = []
    for kind, names in _GLOBAL_LOCKS:
        typ = {"mutex": "struct mutex", "rwsem": "struct rw_semaphore",
               "semaphore": "struct semaphore"}[kind]
        for n in names:
            try:
                a = prog.symbol(n).address
            except LookupError:
                continue
            out.append((kind, n, Object(prog, typ, address=a)))
    if not out:
        raise Skip("none of the global locks")
    return out


@check("locks.global_owners")
def _(k):
    from gdbkd.model.locks import lock_state
    out = []
    for kind, n, a in _global_locks_model(k):
        st = lock_state(k, kind, a)
        if kind == "semaphore":
            out.append([n, kind, st.count])
            continue
        state = {"write-locked": "write", "read-locked": "read"}.get(st.state, st.state)
        owner = st.owners[0] if st.owners and not st.probable else (st.hint or 0)
        out.append([n, kind, state, owner])
    return out


@oracle("locks.global_owners")
def _(prog):
    from drgn.helpers.linux.locking import RwsemLocked, mutex_owner, rwsem_locked, rwsem_owner
    out = []
    for kind, n, lock in _global_locks_drgn(prog):
        if kind == "semaphore":
            out.append([n, kind, int(lock.count)])
        elif kind == "mutex":
            o = mutex_owner(lock.address_of_()).value_()
            out.append([n, kind, "locked" if o else "unlocked", o])
        else:
            st = rwsem_locked(lock.address_of_())
            o = rwsem_owner(lock.address_of_()).value_() if st != RwsemLocked.UNLOCKED else 0
            out.append([n, kind, {RwsemLocked.UNLOCKED: "unlocked", RwsemLocked.READ_LOCKED: "read",
                                  RwsemLocked.WRITE_LOCKED: "write"}[st], o])
    return out


@check("locks.global_waiters")
def _(k):
    from gdbkd.model.locks import lock_waiters
    return [[n, list(lock_waiters(k, kind, a))] for kind, n, a in _global_locks_model(k)]


@oracle("locks.global_waiters")
def _(prog):
    from drgn.helpers.linux.list import list_for_each_entry
    waiter = {"mutex": "struct mutex_waiter", "rwsem": "struct rwsem_waiter",
              "semaphore": "struct semaphore_waiter"}
    return [[n, [w.task.value_() for w in list_for_each_entry(
        waiter[kind], lock.wait_list.address_of_(), "list")]]
        for kind, n, lock in _global_locks_drgn(prog)]
