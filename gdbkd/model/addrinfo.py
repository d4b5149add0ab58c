"""What a kernel address is, without gdb: slab object, page, task stack, vmalloc area,
module, per-CPU area (crash's ``kmem ADDR``; kernel symbols are named by the caller,
which has the symbol table).

* vmalloc areas: ``vmap_area_list`` (``struct vmap_area.list``, sorted by address;
  v2.6.28–v6.8), from v6.9 the per-node busy rbtrees ``vmap_nodes[i].busy.root``
  (:func:`_busy_tree_areas`), each with ``vm->caller``;
* task stacks: ``task->stack`` .. + THREAD_SIZE (vmalloc'd with VMAP_STACK);
* per-CPU areas: ``__per_cpu_start`` .. ``__per_cpu_end`` shifted by
  ``__per_cpu_offset[cpu]`` (the static part of each CPU's chunk);
* pages: the ``struct page`` of a linear-map address (its flags, order, mapping)
  or an address inside the vmemmap array itself.
"""

from .kernel import per_stop
from .layout import LAYOUTS
from .lists import walk_entries
from .memmap import memory_map
from .modules import module_list
from .percpu import cpu_offsets
from .reader import MemoryFault
from .tasks import task_list, thread_size
from .trees import rbtree_inorder, WrongType
from . import slab as _slab

__all__ = ["vmap_areas", "find_vmap_area", "task_stack_of", "percpu_of", "page_info",
           "address_info", "PAGE_LAYOUT"]

M64 = (1 << 64) - 1

PAGE_LAYOUT = LAYOUTS["struct page"]


@per_stop
def vmap_areas(k) -> list:
    """[(start, end, vm_struct, caller, vm flags)] of the busy vmalloc areas, sorted by
    start: ``vmap_area_list`` up to v6.8, the per-node busy trees from v6.9; [] when
    the kernel has neither."""
    lay = k.layout("struct vmap_area", ["va_start", "va_end", "list", "rb_node", "vm"])
    vlay = k.layout("struct vm_struct", ["caller", "flags", "size", "nr_pages", "phys_addr"])
    head = k.sym("vmap_area_list")
    if head is not None:
        off = lay.offset("list")
        areas = walk_entries(k.reader, head, off, limit=1 << 20).entries()
    else:
        areas = _busy_tree_areas(k, lay)
    out = []
    for a in areas:
        try:
            f = lay.read(k.reader, a)
        except MemoryFault:
            continue
        caller = flags = 0
        vm = f.get("vm", 0)
        if vm and vm >> 63:
            try:
                v = vlay.read(k.reader, vm)
                caller, flags = v.get("caller", 0), v.get("flags", 0)
            except MemoryFault:
                vm = 0
        out.append((f["va_start"], f["va_end"], vm, caller, flags))
    out.sort()
    return out


def _busy_tree_areas(k, lay) -> list:
    """struct vmap_area addresses in ``vmap_nodes[0 .. nr_vmap_nodes)->busy.root``: v6.9
    (Uladzislau Rezki's series "mm: vmalloc: remove global vmap_area_root rb-tree" and
    its neighbours) split the global ``vmap_area_root``/``vmap_area_list`` into
    per-node ``struct rb_list busy`` {``root``, ``head``, ``lock``}; ``vmap_nodes``
    (static) points to the array, ``nr_vmap_nodes`` long. Checked on 6.12.118."""
    nodes, nr = k.sym("vmap_nodes"), k.sym("nr_vmap_nodes")
    size = k.sizeof("struct vmap_node")
    busy = k.offset("struct vmap_node", "busy.root")
    rb = lay.offset("rb_node")
    if None in (nodes, nr, size, busy, rb):
        return []
    try:
        base = k.reader.u64(nodes)
        n = k.reader.u32(nr)
    except MemoryFault:
        return []
    out = []
    for i in range(max(1, min(n, 1024))):
        try:
            out += [e - rb for e in rbtree_inorder(k, base + i * size + busy).entries]
        except WrongType:          # not a tree (corrupt node array): the other nodes still count
            continue
    return out


def find_vmap_area(k, addr: int):
    for a in vmap_areas(k):
        if a[0] <= addr < a[1]:
            return a
    return None


@per_stop
def _stacks(k) -> list:
    ts = thread_size(k)
    return sorted((t.stack, t.stack + ts, t) for t in task_list(k) if t.stack)


def task_stack_of(k, addr: int):
    """(task, stack base) whose kernel stack holds ``addr``, or None."""
    for lo, hi, t in _stacks(k):
        if lo <= addr < hi:
            return t, lo
    return None


def percpu_of(k, addr: int):
    """(cpu, offset from __per_cpu_start) when ``addr`` is in a CPU's static per-CPU
    area, else None."""
    s, e = k.sym("__per_cpu_start"), k.sym("__per_cpu_end")
    if s is None or e is None:
        return None
    try:
        offs = cpu_offsets(k)
    except MemoryFault:
        return None
    for cpu, o in enumerate(offs):
        lo = (s + o) & M64
        if lo <= addr < lo + (e - s):
            return cpu, addr - lo
    return None


def page_info(k, page: int) -> dict:
    """Members of the struct page at ``page`` plus its pfn, physical and linear address."""
    mm = memory_map(k)
    f = k.layout("struct page", PAGE_LAYOUT).read(k.reader, page)
    pfn = mm.page_to_pfn(page)
    head = f.get("compound_head", 0)
    d = {"page": page, "pfn": pfn, "phys": pfn << mm.page_shift,
         "virt": mm.phys_to_virt(pfn << mm.page_shift), "flags": f.get("flags", 0),
         "mapping": f.get("mapping", 0), "index": f.get("index", 0),
         "private": f.get("private", 0), "refcount": f.get("_refcount", 0),
         "mapcount": f.get("_mapcount", 0), "head": head - 1 if head & 1 else None,
         "order": 0}
    hp = d["head"] if d["head"] is not None else page
    if mm.pg_head_mask and (d["flags"] if hp == page else
                            k.reader.u64(hp)) & mm.pg_head_mask:
        # compound_order is in the first tail page (page[1])
        off = k.offset("struct page", "compound_order")
        if off is not None:
            try:
                d["order"] = k.reader.read(hp + mm.page_struct_size + off, 1)[0]
            except MemoryFault:
                pass
    d["slab"] = _slab.slab_of(k, d["virt"]) is not None if mm.is_ram(d["phys"]) else False
    return d


def address_info(k, addr: int) -> dict:
    """Everything the model can say about ``addr``: {"addr", "region", and any of "slab",
    "page", "stack", "vmalloc", "module", "percpu"}."""
    addr &= M64
    mm = memory_map(k)
    d = {"addr": addr, "region": mm.region(addr)}
    if mm.is_linear(addr):
        pa = mm.virt_to_phys(addr)
        d["phys"] = pa
        if mm.is_ram(pa):
            o = _slab.object_info(k, addr)
            if o is not None:
                d["slab"] = o
            d["page"] = page_info(k, mm.virt_to_page(addr))
    elif mm.is_page_struct(addr):
        pfn_page = mm.pfn_to_page(mm.page_to_pfn(addr))
        d["page"] = page_info(k, pfn_page)
        d["page_struct_offset"] = addr - pfn_page
    st = task_stack_of(k, addr)
    if st is not None:
        d["stack"] = st
    if d["region"] in ("vmalloc", "modules"):
        va = find_vmap_area(k, addr)
        if va is not None:
            d["vmalloc"] = va
    for m in module_list(k)[0]:
        if m.contains(addr):
            d["module"] = m
            break
    pc = percpu_of(k, addr)
    if pc is not None:
        d["percpu"] = pc
    return d
