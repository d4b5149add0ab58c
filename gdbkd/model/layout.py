"""Struct layouts without gdb: which members a struct has, where, and how to decode them.

A :class:`StructLayout` holds the byte offset, size and kind of chosen members
of one struct and decodes them from one read (``layout.read(reader, addr)``).
Where the offsets come from is a :class:`TypeSource`:

* inside gdb, gdb's own types (``GdbTypes`` in gdbkd/kernel/memory.py);
* outside gdb (the dump server, ``gdbkd core`` planning module symbols), the
  per-vmlinux offsets cache (gdbkd/target/offsets.py), which records the
  same members by asking gdb once per build-id: :class:`RecordedTypes`.

:data:`LAYOUTS` names every member the gdb-free model (gdbkd/model/) reads, so
both sources serve the same questions and a fact about a kernel version is
learned in one place. Members a kernel does not have are simply absent
(probe with ``"path" in layout``); the versions they exist in are documented
where the model uses them (tasks.py, modules.py, percpu.py).

This is the one registry: the offsets cache records exactly :data:`LAYOUTS`,
:data:`SIZES`, :data:`ENUMS` and :data:`SYMBOLS` and is keyed by a digest of them,
so a new struct layout (or member, size, enum, symbol) is a line here and nothing else.
"""

import struct

__all__ = ["Member", "StructLayout", "TypeSource", "RecordedTypes", "LAYOUTS", "SIZES",
           "SYMBOLS", "ENUMS", "OFFSET_ONLY", "decoded_paths"]

# members the model reads, per struct (dotted paths; anonymous unions looked through)
LAYOUTS = {
    "struct task_struct": [
        "__state", "state", "exit_state", "flags", "pid", "tgid", "comm", "real_parent",
        "parent", "group_leader", "mm", "active_mm", "stack", "tasks", "tasks.next",
        "thread_node", "thread_node.next", "thread_group", "signal", "on_cpu", "on_rq", "cpu",
        "thread_info.cpu", "thread_info.flags", "prio", "static_prio", "normal_prio",
        "rt_priority", "policy", "thread.cpu_context", "se.sum_exec_runtime", "se.vruntime",
        "utime", "stime", "start_time", "nvcsw", "nivcsw", "sched_info.last_arrival", "cred",
        "rss_stat", "se.run_node", "rt.run_list"],
    "struct signal_struct": ["thread_head"],
    "struct rq": ["curr", "idle", "nr_running", "clock", "cfs", "rt"],
    # runqueues (gdbkd/model/runqueue.py has the versions)
    "struct cfs_rq": ["tasks_timeline", "curr"],
    "struct sched_entity": ["run_node", "my_q"],
    "struct rt_rq": ["active"],
    "struct rt_prio_array": ["queue"],
    # sleeping locks, their waiter records, completions and wait queues
    # (gdbkd/model/locks.py, wait.py have the versions)
    "struct mutex": ["owner", "wait_list"],
    "struct rw_semaphore": ["count", "owner", "owner.counter", "wait_list"],
    "struct semaphore": ["count", "wait_list"],
    "struct mutex_waiter": ["list", "task"],
    "struct rwsem_waiter": ["list", "task"],
    "struct semaphore_waiter": ["list", "task"],
    "struct completion": ["wait", "wait.task_list", "wait.head"],
    "struct swait_queue_head": ["task_list"],
    "struct swait_queue": ["task", "task_list"],
    "struct wait_queue_head": ["head"],
    "struct wait_queue_entry": ["flags", "private", "func", "entry"],
    "struct rcu_state": ["gp_seq", "gp_start", "jiffies_stall", "node"],
    "struct rcu_node": ["qsmask", "grplo", "grphi", "level", "blkd_tasks", "gp_tasks"],
    "struct qnode": ["mcs.next", "mcs.count"],
    "struct mcs_spinlock": ["next", "count"],
    "struct module": [
        "list", "name", "state", "sect_attrs", "core_layout.base", "core_layout.size",
        "init_layout.base", "init_layout.size", "mem", "mem[0].base", "mem[0].size",
        "kallsyms", "taints", "srcversion", "version", "refcnt", "bug_table", "num_bugs"],
    "struct module_sect_attrs": ["nsections", "attrs"],
    "struct module_sect_attr": ["battr.attr.name", "name", "address"],
    "struct module_memory": ["base", "size"],
    "struct mod_kallsyms": ["symtab", "num_symtab", "strtab", "typetab"],
    "struct elf64_sym": ["st_name", "st_info", "st_shndx", "st_value", "st_size"],
    "struct mm_struct": ["total_vm", "rss_stat", "rss_stat.count"],
    "struct task_rss_stat": ["count"],
    "struct percpu_counter": ["count"],
    # SLUB (gdbkd/model/slab.py has the versions: struct slab is v5.17+, its members lived
    # in struct page before; kmem_cache_cpu.slab was .page)
    "struct kmem_cache": [
        "cpu_slab", "flags", "size", "object_size", "offset", "oo", "refcount", "ctor",
        "red_left_pad", "name", "list", "random", "node"],
    "struct kmem_cache_cpu": ["freelist", "slab", "page", "partial"],
    "struct kmem_cache_node": ["partial", "nr_partial", "nr_slabs", "total_objects"],
    "struct slab": ["slab_list", "next", "slab_cache", "freelist", "counters"],
    "struct page": ["flags", "compound_head", "compound_order", "mapping", "index", "private",
                    "_refcount", "_mapcount", "lru", "slab_list", "next", "slab_cache",
                    "freelist", "counters"],
    # RAM ranges and vmalloc areas (gdbkd/model/memmap.py, addrinfo.py)
    "struct memblock": ["memory"],
    "struct memblock_type": ["cnt", "regions", "total_size"],
    "struct memblock_region": ["base", "size"],
    "struct vmap_area": ["va_start", "va_end", "list", "rb_node", "vm"],
    "struct vm_struct": ["caller", "flags", "size", "nr_pages", "phys_addr"],
    "struct vmap_node": ["busy", "busy.root"],
    "struct rb_node": ["rb_right", "rb_left"],
    "struct printk_ringbuffer": ["desc_ring", "text_data_ring"],
    "struct prb_desc_ring": ["count_bits", "descs", "infos", "head_id", "tail_id"],
    "struct prb_data_ring": ["size_bits", "data"],
    "struct prb_desc": ["state_var", "text_blk_lpos"],
    "struct printk_info": ["seq", "ts_nsec", "text_len", "facility", "caller_id"],
    # the log before 5.10 (gdbkd/model/printk.py log_buf_records; "struct log" before 3.11):
    # flags:5 and level:3 are bit-fields in the byte after facility, not members
    "struct printk_log": ["ts_nsec", "len", "text_len", "dict_len", "facility"],
    # exception frames (gdbkd/kernel/stack.py read_pt_regs; regs[31]/sp/pc/pstate lead it)
    "struct pt_regs": ["stackframe", "orig_x0", "syscallno"],
    # BUG()/WARN() sites (gdbkd/model/bug.py)
    "struct bug_entry": ["bug_addr_disp", "file_disp", "line", "flags"],
    # the clocks (gdbkd/model/timekeeping.py; struct tk_data is 6.11+)
    "struct timekeeper": ["tkr_mono.base", "tkr_mono.xtime_nsec", "tkr_mono.shift", "xtime_sec",
                          "offs_real", "offs_boot"],
    "struct tk_data": ["timekeeper"],
    # the taint letters and utsname (gdbkd/model/sysinfo.py)
    "struct taint_flag": ["c_true"],
    "struct uts_namespace": ["name"],
    "struct new_utsname": ["sysname", "nodename", "release", "version", "machine", "domainname"],
}
# members of LAYOUTS the model asks only the offset of (k.offset): recorded like the others,
# but not decoded with every read of their struct (a task_struct is read for every task;
# gdbkd/model/runqueue.py needs only where its run_node and run_list are)
OFFSET_ONLY = {"struct task_struct": ("se.run_node", "rt.run_list")}


def decoded_paths(typename: str) -> list:
    """The members of LAYOUTS[typename] a struct read decodes (all but OFFSET_ONLY's)."""
    skip = OFFSET_ONLY.get(typename, ())
    return [p for p in LAYOUTS[typename] if p not in skip]


# enums whose names kd prints ({name: value} in declaration order): page flags (kd kmem ADDR,
# -p), the zone and node vm stat items (kd kmem -i); all three exist in 5.10-6.12; a module's
# state (kd mod; 3.x-6.12)
ENUMS = ["enum pageflags", "enum zone_stat_item", "enum node_stat_item", "enum module_state"]
# sizes: a struct type, or a variable (gdb: sizeof(NAME))
SIZES = ["struct task_struct", "struct module", "struct module_sect_attr", "struct module_memory",
         "struct elf64_sym", "struct cpu_context", "init_stack", "linux_banner",
         "struct percpu_counter", "overflow_stack", "struct memblock_region", "struct vmap_node",
         "struct printk_ringbuffer", "struct prb_desc", "struct printk_info", "struct pt_regs",
         "struct rcu_node", "struct qnode", "struct mcs_spinlock", "seqcount_raw_spinlock_t",
         "struct taint_flag", "taint_flags", "struct bug_entry"]
SYMBOLS = ["__start___bug_table", "__stop___bug_table", "init_task", "runqueues", "__per_cpu_offset", "panic_cpu", "irq_stack_ptr",
           "__cpu_online_mask", "__cpu_present_mask", "__cpu_possible_mask", "cpu_online_bits",
           "cpu_present_bits", "cpu_possible_bits", "nr_cpu_ids", "linux_banner", "_text",
           "_stext", "_end", "vectors", "swapper_pg_dir", "crashing_cpu", "overflow_stack",
           "panic", "vpanic", "die", "crash_kexec", "__crash_kexec", "modules",
           "init_stack", "vmcoreinfo_data", "vmcoreinfo_size", "_totalram_pages",
           "totalram_pages", "slab_caches", "nr_node_ids", "memblock", "vmap_area_list",
           "vmap_area_root", "vmap_nodes", "nr_vmap_nodes", "module_alloc_base",
           "__per_cpu_start", "__per_cpu_end", "min_low_pfn", "max_pfn", "prb",
           "_etext", "_sinittext", "_einittext", "__init_begin", "__init_end",
           "rcu_state", "rcu_num_nodes", "rcu_num_lvls", "jiffies", "tick_nsec",
           "rcu_cpu_stall_timeout", "watchdog_touch_ts", "watchdog_report_ts", "qnodes", "mcs_nodes",
           "log_buf", "log_buf_len", "log_first_idx", "log_next_idx", "log_first_seq",
           "log_next_seq", "__start_init_task", "__end_init_task", "__start_init_stack",
           "__end_init_stack", "tk_core", "taint_flags", "tainted_mask",
           "init_uts_ns", "avenrun"]


class Member:
    """One member: byte offset, size, and kind — "u" unsigned, "s" signed, "b" raw bytes
    (arrays and structs)."""

    __slots__ = ("path", "offset", "size", "kind")

    def __init__(self, path, offset, size, kind):
        self.path = path
        self.offset = offset
        self.size = size
        self.kind = kind

    def decode(self, buf, base: int = 0):
        raw = buf[base + self.offset: base + self.offset + self.size]
        if self.kind == "b":
            return bytes(raw)
        return int.from_bytes(raw, "little", signed=(self.kind == "s"))


class TypeSource:
    """Where layouts come from: ``member(typename, path)`` → ``(offset, size, kind)``
    or None, ``sizeof(name)`` → int or None."""

    def member(self, typename: str, path: str):
        raise NotImplementedError

    def sizeof(self, name: str):
        raise NotImplementedError

    def enum(self, name: str):
        """``{enumerator: value}`` of ``enum NAME`` in declaration order, or None."""
        return None


class RecordedTypes(TypeSource):
    """Layouts recorded as ``{"struct T": {"size": n, "members": {path: [off, size, kind]}}}``
    plus ``{"sizes": {name: n}}`` (the offsets cache's "layouts" entry) and the
    :data:`ENUMS` as ``{"enum E": {name: value} or None}``."""

    def __init__(self, layouts: dict, sizes: dict = None, enums: dict = None):
        self.layouts = layouts or {}
        self.sizes = dict(sizes or {})
        self.enums = dict(enums or {})

    @classmethod
    def from_offsets(cls, data: dict) -> "RecordedTypes":
        """The recording in an offsets cache entry (gdbkd/target/offsets.py kernel_offsets)."""
        return cls(data.get("layouts", {}), data.get("model_sizes", {}), data.get("enums", {}))

    def enum(self, name):
        return self.enums.get(name)

    def member(self, typename, path):
        m = self.layouts.get(typename, {}).get("members", {}).get(path)
        return tuple(m) if m else None

    def covers(self, typename, path) -> bool:
        """Whether this recording answers for ``typename.path`` (the struct was recorded and
        the model reads that member: an absent one then really is absent)."""
        return typename in self.layouts and path in LAYOUTS.get(typename, ())

    def sizeof(self, name):
        if name in self.sizes:
            return self.sizes[name]
        return self.layouts.get(name, {}).get("size")


class StructLayout:
    """Chosen members of one struct type, decoded from a single read."""

    def __init__(self, typename: str, size, members: dict):
        self.typename = typename
        self.size = size
        self.members = members
        if members:
            self.lo = min(m.offset for m in members.values())
            self.hi = max(m.offset + m.size for m in members.values())
        else:
            self.lo = self.hi = 0
        self._groups = _compile(members.values())

    @classmethod
    def from_source(cls, types: TypeSource, typename: str, paths) -> "StructLayout":
        members = {}
        for p in paths:
            m = types.member(typename, p)
            if m is not None:
                members[p] = Member(p, *m)
        return cls(typename, types.sizeof(typename), members)

    def __contains__(self, path):
        return path in self.members

    def offset(self, path) -> int:
        return self.members[path].offset

    def get_offset(self, path):
        m = self.members.get(path)
        return None if m is None else m.offset

    def decode(self, buf, base: int = 0) -> dict:
        """Every member decoded from ``buf`` (the struct starts at ``base``): a few
        ``struct.unpack_from`` calls, one per group of non-overlapping members."""
        out = {}
        for st, paths, lo in self._groups:
            out.update(zip(paths, st.unpack_from(buf, base + lo)))
        return out

    def read(self, reader, addr: int) -> dict:
        """Every member of the struct at ``addr`` (one read of the bytes they span)."""
        if self.lo > 256:
            return self.decode(reader.read(addr + self.lo, self.hi - self.lo), -self.lo)
        return self.decode(reader.read(addr, self.hi))


_INT = {1: "B", 2: "H", 4: "I", 8: "Q"}


def _compile(members):
    """[(struct.Struct, paths, first offset)]: members sorted by offset, packed greedily
    into groups whose members do not overlap (``tasks`` and ``tasks.next`` share bytes),
    each decoded by one little-endian Struct with pad bytes between members."""
    groups = []          # [fmt parts, paths, lo, end]
    for m in sorted(members, key=lambda m: (m.offset, -m.size)):
        if m.kind in ("u", "s") and m.size in _INT:
            code = _INT[m.size].lower() if m.kind == "s" else _INT[m.size]
        else:
            code = f"{m.size}s"
        for g in groups:
            if g[3] <= m.offset:
                break
        else:
            g = [[], [], m.offset, m.offset]
            groups.append(g)
        gap = m.offset - g[3]
        if gap:
            g[0].append(f"{gap}x")
        g[0].append(code)
        g[1].append(m.path)
        g[3] = m.offset + m.size
    return [(struct.Struct("<" + "".join(g[0])), g[1], g[2]) for g in groups]
