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


def _drgn_addresses(prog, names):
    """(name, address) of each of NAMES this kernel has a symbol for, in order."""
    for n in names:
        try:
            yield n, prog.symbol(n).address
        except LookupError:
            continue


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
        for n, a in _drgn_addresses(prog, names):
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


# -- BUG()/WARN() sites (gdbkd/model/bug.py) ---------------------------------------------
def _drgn_bug_tables(prog):
    from drgn.helpers.linux.module import for_each_module
    size = prog.type("struct bug_entry").size
    s, e = prog.symbol("__start___bug_table").address, prog.symbol("__stop___bug_table").address
    out = [["vmlinux __bug_table", s, (e - s) // size]] if e > s else []
    for m in for_each_module(prog):
        t, n = m.bug_table.value_(), int(m.num_bugs)
        if t and 0 < n < 1 << 16:
            out.append([f"{m.name.string_().decode()} bug_table", t, n])
    return out


@check("bug.tables")
def _(k):
    from gdbkd.model import bug
    return [list(t) for t in bug.bug_tables(k)]


@oracle("bug.tables")
def _(prog):
    return _drgn_bug_tables(prog)


def _bug_sample(tables):
    """Three entries near the start of each table, (table name, entry address): the model
    reads a table only up to the entry it looks for, and the snapshot keeps what it read
    (the vmlinux's whole table is 80-115 KB)."""
    return [(name, start + i * sz) for name, start, n, sz in tables for i in sorted({0, 1, min(n - 1, 100)})]


@check("bug.entries")
def _(k):
    import struct
    from gdbkd.model import bug
    sz, at = k.sizeof("struct bug_entry"), k.offset("struct bug_entry", "bug_addr_disp")
    out = []
    for name, e in _bug_sample([(n, s, c, sz) for n, s, c in bug.bug_tables(k)]):
        (disp,) = struct.unpack("<i", k.reader.read(e + at, 4))
        pc = (e + at + disp) & (1 << 64) - 1
        b = bug.bug_entry(k, pc)
        out.append([pc, None if b is None else
                    [b["entry"], b["table"], b["file"], b["line"], b["flags"], b["warning"]]])
    return out


@oracle("bug.entries")
def _(prog):
    from drgn import Object
    sz = prog.type("struct bug_entry").size
    out = []
    for name, e in _bug_sample([(n, s, c, sz) for n, s, c in _drgn_bug_tables(prog)]):
        b = Object(prog, "struct bug_entry", address=e)
        pc = (b.bug_addr_disp.address_ + int(b.bug_addr_disp)) & (1 << 64) - 1
        fn = prog.read(b.file_disp.address_ + int(b.file_disp), 200).split(b"\0")[0].decode()
        flags = int(b.flags)
        out.append([pc, [e, name, fn, int(b.line), flags, bool(flags & 1)]])
    return out


# -- exception frames (gdbkd/model/frames.py) --------------------------------------------
@check("frames.pt_regs_layout")
def _(k):
    from gdbkd.model import frames
    return frames.pt_regs_layout(k)


@oracle("frames.pt_regs_layout")
def _(prog):
    from drgn import offsetof
    t = prog.type("struct pt_regs")
    return {"size": t.size, **{m: offsetof(t, m) for m in ("stackframe", "orig_x0", "syscallno")}}


@check("stacks.per_cpu")
def _(k):
    """Every CPU's IRQ, overflow and SDEI stack ranges, and which range holds the middle of
    each: what kd's frame walk tags frames with."""
    from gdbkd.model import stacks
    ranges = stacks.stack_ranges(k)
    return [[n, lo, hi, stacks.stack_of((lo + hi) // 2, ranges)] for n, lo, hi in ranges]


@oracle("stacks.per_cpu")
def _(prog):
    from drgn.helpers.linux.cpumask import for_each_possible_cpu
    from drgn.helpers.linux.percpu import per_cpu
    size = int(prog["THREAD_SIZE"])
    out = []

    def ptr_stacks(name, label):
        try:
            prog[name]
        except KeyError:
            return
        for cpu in for_each_possible_cpu(prog):
            base = per_cpu(prog[name], cpu).value_()
            if base:
                out.append([f"{label}:{cpu}", base, base + size, f"{label}:{cpu}"])
    ptr_stacks("irq_stack_ptr", "IRQ")
    # by the ELF symbol: the nVHE hypervisor's own per-CPU overflow_stack has the same name
    # in the DWARF (only its ELF symbol is renamed __kvm_nvhe_overflow_stack), and
    # prog["overflow_stack"] can find that one
    try:
        ov = prog.symbol("overflow_stack")
    except LookupError:
        ov = None
    if ov is not None:
        offs = prog["__per_cpu_offset"]
        for cpu in for_each_possible_cpu(prog):
            b = (ov.address + offs[cpu].value_()) & ((1 << 64) - 1)
            out.append([f"overflow:{cpu}", b, b + ov.size, f"overflow:{cpu}"])
    ptr_stacks("sdei_stack_normal_ptr", "SDEI")
    ptr_stacks("sdei_stack_critical_ptr", "SDEI-critical")
    if not out:
        raise Skip("no per-CPU stacks")
    return out


def _pt_regs_json(r):
    return [[r[f"x{i}"] for i in range(31)], r["sp"], r["pc"], r["pstate"], r["orig_x0"],
            r["syscallno"], r["stackframe"][:2]]


@check("frames.user_pt_regs")
def _(k):
    """The user registers of the three lowest-pid user tasks: the struct pt_regs at the top
    of each one's stack (task_pt_regs)."""
    from gdbkd.model import frames, tasks
    size, ts = frames.pt_regs_layout(k)["size"], tasks.thread_size(k)
    return [[t.pid, _pt_regs_json(frames.read_pt_regs(k, t.stack + ts - size))]
            for t in sorted(_user_tasks(k), key=lambda t: t.pid)[:3]]


@oracle("frames.user_pt_regs")
def _(prog):
    from drgn import Object
    out = []
    size, ts = prog.type("struct pt_regs").size, int(prog["THREAD_SIZE"])
    users = sorted((int(t.pid), t) for t in _drgn_tasks(prog).values()
                   if t.mm and not int(t.flags) & 0x00200000)
    for pid, t in users[:3]:
        r = Object(prog, "struct pt_regs", address=t.stack.value_() + ts - size)
        out.append([pid, [[int(r.regs[i]) for i in range(31)], int(r.sp), int(r.pc), int(r.pstate),
                          int(r.orig_x0), int(r.syscallno), [int(r.stackframe[0]), int(r.stackframe[1])]]])
    return out


# -- module symbols (gdbkd/model/kallsyms.py) --------------------------------------------
@check("kallsyms.module_symbols")
def _(k):
    from gdbkd.model import kallsyms
    return [[name, sorted([s.addr, s.name] for s in ms.syms)]
            for name, ms in kallsyms.module_symbols(k).items()]


@oracle("kallsyms.module_symbols")
def _(prog):
    from drgn.helpers.linux.kallsyms import module_kallsyms
    from drgn.helpers.linux.module import for_each_module
    from drgn import SymbolKind
    # what the model keeps: no section or file symbols, no ARM mapping symbols ($x, $d)
    return [[m.name.string_().decode(),
             sorted([s.address, s.name] for s in module_kallsyms(m)
                    if s.address and s.kind not in (SymbolKind.SECTION, SymbolKind.FILE)
                    and not s.name.startswith(("$x", "$d", "__UNIQUE_ID")))]
            for m in for_each_module(prog)]


def _drgn_module_funcs(prog):
    """[(module name, symbol)]: each module's sized functions that no other symbol of the
    module overlaps (their middle byte has one answer)."""
    from drgn import SymbolKind
    from drgn.helpers.linux.kallsyms import module_kallsyms
    from drgn.helpers.linux.module import for_each_module
    out = []
    for m in for_each_module(prog):
        syms = [s for s in module_kallsyms(m) if s.size]
        for s in syms:
            if s.kind != SymbolKind.FUNC:
                continue
            mid = s.address + s.size // 2
            if sum(1 for o in syms if o.address <= mid < o.address + o.size) == 1:
                out.append((m.name.string_().decode(), s))
    return out


@check("kallsyms.symbolize")
def _(k):
    """The module and symbol of the middle byte of every module function kallsyms holds
    alone there (5.0 has no symbol sizes: skipped)."""
    from gdbkd.model import kallsyms
    out = []
    for name, ms in kallsyms.module_symbols(k).items():
        syms = [s for s in ms.syms if s.size]
        for s in syms:
            if s.type.lower() != "t":
                continue
            mid = s.addr + s.size // 2
            if sum(1 for o in syms if o.addr <= mid < o.addr + o.size) != 1:
                continue
            hit = kallsyms.symbolize(k, mid)
            out.append([mid, None if hit is None else
                        [hit[0], None if hit[1] is None else hit[1].name, hit[2]]])
    return sorted(out)


@oracle("kallsyms.symbolize")
def _(prog):
    try:
        prog.type("struct mod_kallsyms").member("typetab")
    except LookupError:
        raise Skip("no typetab (before v5.2): module symbols have no sizes")
    return sorted([s.address + s.size // 2, [name, s.name, False]] for name, s in _drgn_module_funcs(prog))


# -- soft lockups (gdbkd/model/lockup.py) -------------------------------------------------
def _drgn_sched_clock(prog):
    from drgn.helpers.linux.cpumask import for_each_online_cpu
    from drgn.helpers.linux.percpu import per_cpu
    return max(int(per_cpu(prog["runqueues"], c).clock) for c in for_each_online_cpu(prog))


@check("lockup.sched_clock_now")
def _(k):
    from gdbkd.model import lockup
    return lockup.sched_clock_now(k)


@oracle("lockup.sched_clock_now")
def _(prog):
    return _drgn_sched_clock(prog)


@check("lockup.softlockup_stuck")
def _(k):
    from gdbkd.model import lockup, percpu
    now = lockup.sched_clock_now(k)
    return [[c, lockup.softlockup_stuck_s(k, c, now)] for c in percpu.online_cpus(k)]


@oracle("lockup.softlockup_stuck")
def _(prog):
    """now - watchdog_touch_ts per online CPU, in the watchdog's 2^30 ns units (from
    v5.14, where the stamp is the watchdog's own: watchdog_report_ts exists)."""
    from drgn.helpers.linux.cpumask import for_each_online_cpu
    from drgn.helpers.linux.percpu import per_cpu
    try:
        prog.symbol("watchdog_report_ts")
    except LookupError:
        raise Skip("no watchdog_report_ts (before v5.14): the stamp is reset by every touch")
    now = _drgn_sched_clock(prog) >> 30
    out = []
    for c in for_each_online_cpu(prog):
        ts = int(per_cpu(prog["watchdog_touch_ts"], c))
        out.append([c, now - ts if now >= ts else None])
    return out


# -- the address space (gdbkd/model/memmap.py) --------------------------------------------
@check("memmap.linear")
def _(k):
    """virt -> phys -> page -> pfn -> virt of the first eight slab-allocated task_structs."""
    from gdbkd.model import memmap
    mm = memmap.memory_map(k)
    out = []
    for a in sorted(t.addr for t in _tasks(k) if t.addr != k.sym("init_task"))[:8]:
        page = mm.virt_to_page(a)
        out.append([a, mm.is_linear(a), mm.virt_to_phys(a), page, mm.page_to_pfn(page),
                    mm.page_to_virt(page), mm.pfn_to_page(mm.page_to_pfn(page)),
                    mm.phys_to_virt(mm.virt_to_phys(a))])
    return out


@oracle("memmap.linear")
def _(prog):
    from drgn.helpers.linux.mm import (page_to_pfn, page_to_virt, pfn_to_page, phys_to_virt,
                                       virt_to_page, virt_to_phys)
    init = prog["init_task"].address_
    out = []
    for a in sorted(a for a in _drgn_tasks(prog) if a != init)[:8]:
        page = virt_to_page(prog, a)
        pfn = page_to_pfn(page).value_()
        pa = virt_to_phys(prog, a).value_()
        out.append([a, True, pa, page.value_(), pfn, page_to_virt(page).value_(),
                    pfn_to_page(prog, pfn).value_(), phys_to_virt(prog, pa).value_()])
    return out


@check("memmap.ram_ranges")
def _(k):
    from gdbkd.model import memmap
    return [list(r) for r in memmap.memory_map(k).ram_ranges()]


@oracle("memmap.ram_ranges")
def _(prog):
    mem = prog["memblock"].memory
    return sorted([int(r.base), int(r.base) + int(r.size)]
                  for r in (mem.regions[i] for i in range(int(mem.cnt))) if int(r.size))


# -- queued spin locks (gdbkd/model/qspinlock.py) -----------------------------------------
_GLOBAL_SPINLOCKS = ("css_set_lock", "mmlist_lock", "vmap_area_lock", "pgd_lock",
                     "kernfs_open_node_lock", "rtc_lock", "pci_lock", "pidmap_lock",
                     "sb_lock", "inode_hash_lock", "unix_gc_lock")


@check("qspinlock.global_spinlocks")
def _(k):
    from gdbkd.model import qspinlock
    out = []
    for n in _GLOBAL_SPINLOCKS:
        a = k.sym(n)
        if a is None:
            continue
        w = k.reader.u32(a)          # raw_spinlock.raw_lock, the first member of spinlock_t
        out.append([n, w, qspinlock.decode(w)])
    return out


@oracle("qspinlock.global_spinlocks")
def _(prog):
    """The kernel's own fields of the word (qspinlock_types.h: locked, pending, tail)."""
    from drgn import Object
    out = []
    for n, a in _drgn_addresses(prog, _GLOBAL_SPINLOCKS):
        raw = Object(prog, "spinlock_t", address=a).rlock.raw_lock
        tail = int(raw.tail)
        out.append([n, int(raw.val.counter) & 0xFFFFFFFF,
                    {"locked": int(raw.locked), "pending": int(raw.pending),
                     "tail_cpu": (tail >> 2) - 1 if tail >> 2 else None,
                     "tail_idx": tail & 3 if tail >> 2 else None}])
    return out


@check("qspinlock.tasklist_lock")
def _(k):
    from gdbkd.model import qspinlock
    return qspinlock.describe_spin(k, "rwlock", k.sym("tasklist_lock"))


@oracle("qspinlock.tasklist_lock")
def _(prog):
    """struct qrwlock's own fields: wlocked (the writer byte) and the reader count."""
    q = prog["tasklist_lock"].raw_lock
    cnts = int(q.cnts.counter) & 0xFFFFFFFF
    return (f"cnts={cnts:#x}: " + ("write-locked" if int(q.wlocked) else f"{cnts >> 9} reader(s)")
            + (", a writer waiting" if cnts & 0x100 else ""))


# -- RCU grace periods (gdbkd/model/rcu.py) ------------------------------------------------
@check("rcu.grace_period")
def _(k):
    from gdbkd.model import rcu
    g = rcu.grace_period(k)
    if g is None:
        return None
    return [g["gp_seq"], g["age_jiffies"], g["stalled"], sorted([c, t] for c, t in g["cpus"]),
            sorted(g["tasks"]), g["problems"]]


@oracle("rcu.grace_period")
def _(prog):
    """rcu_state's grace period: None when idle (gp_seq's low two bits 0), else its
    gp_seq, age, whether the kernel's stall check is due or past rcu_cpu_stall_timeout,
    the online CPUs the leaves' qsmask still waits for with their current task, and the
    tasks blocked from gp_tasks on."""
    from drgn import offsetof
    from drgn.helpers.linux.cpumask import for_each_online_cpu
    from drgn.helpers.linux.list import list_for_each
    from drgn.helpers.linux.sched import cpu_curr
    st = prog["rcu_state"]
    seq = int(st.gp_seq)
    if seq & 3 == 0:
        return None
    m = (1 << 64) - 1
    jiffies = int(prog["jiffies"])
    age = (jiffies - int(st.gp_start)) & m
    tick = int(prog["tick_nsec"])
    hz = round(1e9 / tick) if tick else None
    timeout = int(prog["rcu_cpu_stall_timeout"])
    stalled = ((jiffies - int(st.jiffies_stall)) & m) < 1 << 63 or (hz is not None and age >= timeout * hz)
    online = set(for_each_online_cpu(prog))
    lvls = int(prog["rcu_num_lvls"])
    cpus, tasks = [], []
    for i in range(int(prog["rcu_num_nodes"])):
        node = st.node[i]
        if int(node.level) != lvls - 1:
            continue
        qs, lo = int(node.qsmask), int(node.grplo)
        cpus += [[lo + b, cpu_curr(prog, lo + b).value_()] for b in range(64)
                 if qs >> b & 1 and lo + b in online]
        try:
            gp_tasks = node.gp_tasks.value_()
        except AttributeError:
            continue
        if gp_tasks:
            links = [p.value_() for p in list_for_each(node.blkd_tasks.address_of_())]
            if gp_tasks in links:
                off = offsetof(prog.type("struct task_struct"), "rcu_node_entry")
                tasks += [l - off for l in links[links.index(gp_tasks):]]
    return [seq - (1 << 64) if seq >> 63 else seq, age, stalled, sorted(cpus), sorted(tasks), []]


@check("rcu.hz")
def _(k):
    from gdbkd.model import rcu
    return rcu.hz(k)


@oracle("rcu.hz")
def _(prog):
    """CONFIG_HZ: from the kernel's own .config (CONFIG_IKCONFIG) or, as none of these
    kernels keeps it, the build's config beside the vmlinux drgn loaded (the kernel cache
    keeps the package's /boot/config-* there)."""
    import re
    from pathlib import Path
    from drgn.helpers.linux.kconfig import get_kconfig
    try:
        return int(get_kconfig(prog)["CONFIG_HZ"])
    except LookupError:
        pass
    cfg = Path(prog.main_module().debug_file_path).parent / "config"
    m = re.search(r"^CONFIG_HZ=(\d+)$", cfg.read_text() if cfg.exists() else "", re.M)
    if m is None:
        raise Skip("no kernel config: neither CONFIG_IKCONFIG nor a config beside the vmlinux")
    return int(m.group(1))


# -- memory search (gdbkd/model/search.py) ------------------------------------------------
def _init_task_range(k):
    from gdbkd.model import search
    a = k.sym("init_task")
    return a, search.clip(search.kernel_regions(k), a, a + k.sizeof("struct task_struct"))


def _drgn_init_task(prog):
    t = prog["init_task"]
    return t.address_, prog.read(t.address_, t.type_.size)


@check("search.value")
def _(k):
    """Words equal to &init_task inside init_task (group_leader, real_parent, parent…)."""
    from gdbkd.model import search
    a, regions = _init_task_range(k)
    r = search.search(k, search.value_pattern(a), regions)
    return [r["hits"], r["skipped_pages"], r["scanned"]]


@oracle("search.value")
def _(prog):
    a, raw = _drgn_init_task(prog)
    hits = [a + o for o in range(0, len(raw) - 7, 8) if int.from_bytes(raw[o:o + 8], "little") == a]
    return [hits, 0, len(raw)]


@check("search.masked")
def _(k):
    """Words pointing into init_task's first 4 KiB (a mask of the low 12 bits)."""
    from gdbkd.model import search
    a, regions = _init_task_range(k)
    r = search.search(k, search.value_pattern(a, mask=0xFFF), regions)
    return r["hits"]


@oracle("search.masked")
def _(prog):
    a, raw = _drgn_init_task(prog)
    return [a + o for o in range(0, len(raw) - 7, 8)
            if int.from_bytes(raw[o:o + 8], "little") & ~0xFFF == a & ~0xFFF]


@check("search.string")
def _(k):
    from gdbkd.model import search
    _a, regions = _init_task_range(k)
    s = b"swapper"
    return search.search(k, search.string_pattern(s), regions, align=1, overlap=len(s) - 1)["hits"]


@oracle("search.string")
def _(prog):
    import re
    a, raw = _drgn_init_task(prog)
    return [a + m.start() for m in re.finditer(re.escape(b"swapper"), raw)]


# -- the timekeeper (gdbkd/model/timekeeping.py) ------------------------------------------
@check("timekeeping.clocks")
def _(k):
    from gdbkd.model import timekeeping
    return [timekeeping.ktime_now(k), timekeeping.uptime_seconds(k), timekeeping.wall_clock_sec(k),
            timekeeping.boot_wall_clock(k)]


@oracle("timekeeping.clocks")
def _(prog):
    """drgn's coarse monotonic clock and uptime (ktime_get_coarse_ns,
    ktime_get_coarse_boottime_ns), tk_core's xtime_sec and offs_real - offs_boot."""
    from drgn.helpers.linux.timekeeping import ktime_get_coarse_boottime_ns, ktime_get_coarse_ns
    tk = prog["tk_core"].timekeeper
    return [ktime_get_coarse_ns(prog).value_(), ktime_get_coarse_boottime_ns(prog).value_() / 1e9,
            int(tk.xtime_sec), (int(tk.offs_real) - int(tk.offs_boot)) / 1e9]


# -- wait queues (gdbkd/model/wait.py) -----------------------------------------------------
#: DECLARE_WAIT_QUEUE_HEAD()s, and balloon_wq: one only its driver initialises (not here:
#: all zero, so not recognised as a wait queue head)
_GLOBAL_WAITQUEUES = ("oom_reaper_wait", "khugepaged_wait", "ksm_thread_wait", "log_wait",
                      "kauditd_wait", "probe_waitqueue", "crng_init_wait", "balloon_wq")
_NOT_A_WQ = "not a wait_queue_head"


@check("wait.global_queues")
def _(k):
    from gdbkd.model import wait
    from gdbkd.model.reader import MemoryFault
    out = []
    for n in _GLOBAL_WAITQUEUES:
        a = k.sym(n)
        if a is None:
            continue
        try:
            ents, stop = wait.waitqueue_entries(k, a)
        except MemoryFault:
            out.append([n, _NOT_A_WQ])
            continue
        out.append([n, [[e["entry"], e["flags"], e["private"], e["func"]] for e in ents],
                    len(ents.damage), stop])
    return out


@oracle("wait.global_queues")
def _(prog):
    from drgn import Object
    from drgn.helpers.linux.wait import waitqueue_for_each_entry
    out = []
    for n, a in _drgn_addresses(prog, _GLOBAL_WAITQUEUES):
        wq = Object(prog, "struct wait_queue_head", address=a).address_of_()
        if wq.head.next.value_() == 0 or wq.head.next.prev.value_() != wq.head.address_:
            out.append([n, _NOT_A_WQ])
            continue
        out.append([n, [[e.value_(), int(e.flags), e.private.value_(), e.func.value_()]
                        for e in waitqueue_for_each_entry(wq)], 0, None])
    return out


# -- kd check's list walks (gdbkd/model/listcheck.py) -------------------------------------
@check("listcheck.healthy")
def _(k):
    """Each list kd check walks: how many entries, how many problems, skipped or not."""
    from gdbkd.model import listcheck
    return [[c.entries, len(c.problems), c.skipped] for c in listcheck.check_lists(k)]


@oracle("listcheck.healthy")
def _(prog):
    """The same lists counted by drgn's walks: tasks (with each CPU's idle task), modules,
    slab caches, their nodes' partial slabs, init's mounts, network namespaces and their
    devices, and what the runqueues queue (RT lists and the CFS trees' entities)."""
    from drgn.helpers.linux.cpumask import for_each_possible_cpu
    from drgn.helpers.linux.fs import for_each_mount
    from drgn.helpers.linux.list import list_for_each
    from drgn.helpers.linux.module import for_each_module
    from drgn.helpers.linux.net import for_each_net, for_each_netdev
    from drgn.helpers.linux.percpu import per_cpu
    from drgn.helpers.linux.rbtree import rb_first, rb_next
    from drgn.helpers.linux.slab import for_each_slab_cache
    caches = list(for_each_slab_cache(prog))
    partial = 0
    for c in caches:
        for i in range(int(prog["nr_node_ids"])):      # node[] is allocated that long
            node = c.node[i]
            if node:
                partial += sum(1 for _ in list_for_each(node.partial.address_of_()))
    nets = list(for_each_net(prog))
    queued = 0
    for cpu in for_each_possible_cpu(prog):
        rq = per_cpu(prog["runqueues"], cpu)
        for head in rq.rt.active.queue:
            queued += sum(1 for _ in list_for_each(head.address_of_()))
        n = rb_first(rq.cfs.tasks_timeline.rb_root.address_of_())
        while n:
            queued += 1
            n = rb_next(n)
    counts = [len(_drgn_tasks(prog)), len(list(for_each_module(prog))), len(caches), partial,
              len(list(for_each_mount(prog))), len(nets),
              sum(len(list(for_each_netdev(n))) for n in nets), queued]
    return [[n, 0, None] for n in counts]
