"""kd kmem: slab caches, slab objects, pages, and what an address is (crash's kmem)."""


from . import KdError, command
from ._mem import address_arg, kernel, MEMORY_ADDRESSES
from ._util import KernelCommand, problem_lines
from ..kernel.symbolize import lookup
from ..model import slab as slabm
from ..model.addrinfo import address_info, page_info
from ..model.memmap import memory_map
from ..model.reader import MemoryFault
from ..textutil import escape

__all__ = ["Kmem"]


def _page_flag_names() -> dict:
    """{bit: name} of ``enum pageflags`` (aliases after the first name of a bit dropped;
    recorded in the offsets cache, else from gdb's types)."""
    values = kernel().enum("enum pageflags") or {}
    out = {}
    nr = None
    for name, val in values.items():
        if name == "__NR_PAGEFLAGS":
            nr = val
            continue
        out.setdefault(val, name[3:] if name.startswith("PG_") else name)
    return {b: n for b, n in out.items() if nr is None or b < nr}


def _flag_list(flags: int, names: dict) -> list:
    return [names[b] for b in sorted(names) if flags >> b & 1]


def _cache_row(k, c) -> dict:
    u = slabm.cache_usage(k, c)
    ps = memory_map(k).page_size
    return {"cache_addr": c.addr, "name": escape(c.name), "objsize": c.object_size,
            "size": c.size, "allocated": u["allocated"], "total": u["total"],
            "slabs": u["slabs"], "slab_size": ps << c.order, "objects_per_slab": c.objects_per_slab,
            "merged": c.refcount > 1, "ctor": c.ctor}


def _size(n: int) -> str:
    return f"{n // 1024}k" if n % 1024 == 0 else str(n)


def _need_cache(k, name):
    c = slabm.find_cache(k, name)
    if c is None:
        raise KdError(f"no slab cache named {escape(name)} (kd kmem -s lists them)")
    return c


@command
class Kmem(KernelCommand):
    """Kernel memory: slab caches and objects, pages, and what an address is (crash's kmem).

With ADDR alone, says what the address is: a slab object (cache, object start, offset,
allocated or free, slab and struct page), a page (struct page, flags, order), a task
stack, a vmalloc area (range and caller), a module, a per-CPU area, a kernel symbol.
Objects on a slab's freelist or on a CPU's per-CPU freelist are free; the freelist
pointers are decoded for CONFIG_SLAB_FREELIST_HARDENED."""

    name = "kmem"
    json_addresses = MEMORY_ADDRESSES

    def add_arguments(self, p):
        g = p.add_mutually_exclusive_group()
        g.add_argument("-s", dest="caches", action="store_true",
                       help="slab caches: object size, objects allocated/total, slabs, slab size "
                            "(only CACHE when given)")
        g.add_argument("-S", dest="objects", action="store_true",
                       help="every object of slab cache CACHE, allocated or free, slab by slab")
        g.add_argument("-p", dest="page", action="store_true",
                       help="the struct page of ADDR: a linear-map or struct page address, a "
                            "physical address, or a page frame number (decimal or below max_pfn)")
        g.add_argument("-i", dest="info", action="store_true",
                       help="memory summary: total, free, slab, page cache")
        p.add_argument("arg", nargs="?", metavar="ADDR|CACHE",
                       help="an address (hex, symbol or expression) or a slab cache name")

    def run(self, args):
        k = kernel()
        try:
            if args.caches:
                return self._caches(k, args.arg)
            if args.objects:
                if not args.arg:
                    raise KdError("-S needs a slab cache name")
                return self._objects(k, args.arg)
            if args.info:
                return self._info(k)
            if not args.arg:
                raise KdError("give an address, or one of -s, -S CACHE, -p ADDR, -i")
            if args.page:
                return self._page(k, args.arg)
            return self._what(k, address_arg(args.arg))
        except MemoryFault as e:
            raise KdError(str(e))

    # -- kmem -s / -S -----------------------------------------------------------------------
    def _caches(self, k, name):
        caches = [_need_cache(k, name)] if name else slabm.slab_caches(k)
        return {"caches": [_cache_row(k, c) for c in caches],
                "problems": [p.to_json() for p in slabm.slab_caches(k).damage]}

    def _objects(self, k, name):
        c = _need_cache(k, name)
        mm = memory_map(k)
        slabs = []
        for s, objs, err in slabm.cache_objects(k, c):
            slabs.append({"slab": s, "memory": mm.page_to_virt(s),
                          "state": slabm.slab_state(k, c, s), "error": err,
                          "objects": [{"object": a, "allocated": al, "free_list": w}
                                      for a, al, w in objs]})
        row = _cache_row(k, c)
        return {"cache": row, "slabs": slabs,
                "allocated": sum(1 for s in slabs for o in s["objects"] if o["allocated"]),
                "free": sum(1 for s in slabs for o in s["objects"] if o["allocated"] is False)}

    # -- kmem -p ----------------------------------------------------------------------------
    def _page(self, k, arg):
        mm = memory_map(k)
        text = arg.strip()
        if text.isdigit():
            page = mm.pfn_to_page(int(text))
        else:
            v = address_arg(text)
            if mm.is_page_struct(v):
                page = mm.pfn_to_page(mm.page_to_pfn(v))
            elif mm.is_linear(v):
                page = mm.virt_to_page(v)
            elif v >> 63:
                raise KdError(f"{v:#x} is not in the linear map or the struct page array "
                              f"(kd vtop translates other kernel addresses)")
            elif mm.is_ram(v):
                page = mm.pfn_to_page(v >> mm.page_shift)
            elif any(lo <= v < hi for lo, hi in mm.pfn_ranges()):
                page = mm.pfn_to_page(v)
            else:
                raise KdError(f"{v:#x} is neither a RAM physical address nor a page frame number")
        pfn = mm.page_to_pfn(page)
        if not any(lo <= pfn < hi for lo, hi in mm.pfn_ranges()):
            raise KdError(f"pfn {pfn:#x} is not RAM")
        return {"page": self._page_data(k, page)}

    def _page_data(self, k, page):
        d = page_info(k, page)
        d["flag_names"] = _flag_list(d["flags"], _page_flag_names())
        d["flags_raw"] = d.pop("flags")
        return d

    # -- kmem ADDR --------------------------------------------------------------------------
    def _what(self, k, addr):
        info = address_info(k, addr)
        d = {"addr": addr, "region": info["region"]}
        if "phys" in info:
            d["phys"] = info["phys"]
        o = info.get("slab")
        if o is not None:
            d.update(cache=escape(o.cache.name), cache_addr=o.cache.addr, object=o.object,
                     offset=o.offset, index=o.index, allocated=o.allocated,
                     free_list=o.free_list, slab=o.slab, slab_base=o.slab_base,
                     slab_state=o.state, object_size=o.cache.object_size,
                     size=o.cache.size)
            if o.error:
                d["error"] = o.error
            if o.index < 0:
                d.pop("object")
        if "page" in info:
            d["page"] = info["page"]
            d["page"]["flag_names"] = _flag_list(d["page"]["flags"], _page_flag_names())
            d["page"]["flags_raw"] = d["page"].pop("flags")
            if "page_struct_offset" in info:
                d["page_struct_offset"] = info["page_struct_offset"]
        if "stack" in info:
            t, base = info["stack"]
            d["stack"] = {"task": t.addr, "pid": t.pid, "comm": t.comm, "base": base,
                          "offset": addr - base}
        if "vmalloc" in info:
            start, end, vm, caller, flags = info["vmalloc"]
            d["vmalloc"] = {"start": start, "end": end, "vm": vm, "caller": caller,
                            "caller_name": self._sym(caller)}
        if "module" in info:
            m = info["module"]
            d["module"] = {"name": escape(m.name), "base": m.base, "offset": addr - m.base}
        if "percpu" in info:
            cpu, off = info["percpu"]
            d["percpu"] = {"cpu": cpu, "offset": off,
                           "symbol": self._sym(k.sym("__per_cpu_start") + off)}
        if addr >> 63 and "slab" not in d and "page" not in d:
            d["symbol"] = self._sym(addr)
        if len(d) == 2 and d["region"] in ("user", "kernel"):
            raise KdError(f"{addr:#x} is not a kernel address kd knows ({d['region']} space)")
        return d

    @staticmethod
    def _sym(a):
        if not a:
            return None
        s = lookup(a, want_line=False)
        return s.label() if s.name else None

    # -- kmem -i ----------------------------------------------------------------------------
    def _info(self, k):
        from ..model.sysinfo import totalram_pages
        mm = memory_map(k)
        total = totalram_pages(k)
        zone = _vmstat("vm_zone_stat", "zone_stat_item")
        node = _vmstat("vm_node_stat", "node_stat_item")
        # the slab counters are NR_SLAB_[UN]RECLAIMABLE_B since v5.9 (d42f3245c7e2 "mm: memcg:
        # convert vmstat slab counters to bytes"), NR_SLAB_[UN]RECLAIMABLE (node items since
        # v4.13) before; NR_KERNEL_STACK_KB a zone item until v5.9's 991e7673859e ("mm:
        # memcontrol: account kernel stack per node")
        slab = sum(node.get(f"NR_SLAB_{kind}{suffix}", 0)
                   for kind in ("RECLAIMABLE", "UNRECLAIMABLE") for suffix in ("_B", ""))
        stack_kb = node.get("NR_KERNEL_STACK_KB", zone.get("NR_KERNEL_STACK_KB", 0))
        cached = node.get("NR_FILE_PAGES", 0) - node.get("NR_SHMEM", 0)
        rows = [("TOTAL MEM", total), ("FREE", zone.get("NR_FREE_PAGES")),
                ("USED", total - zone.get("NR_FREE_PAGES", 0) if total else None),
                ("SHARED", node.get("NR_SHMEM")), ("CACHED", cached),
                ("SLAB", slab), ("ANON", node.get("NR_ANON_MAPPED")),
                ("KERNEL STACK", stack_kb * 1024 // mm.page_size)]
        return {"page_size": mm.page_size, "total_pages": total,
                "rows": [{"name": n, "pages": p} for n, p in rows if p is not None]}

    # -- text -------------------------------------------------------------------------------
    def render(self, d, args):
        if "caches" in d:
            return "\n".join([_render_caches(d["caches"])]
                             + problem_lines(self.name, d.get("problems", ())))
        if "slabs" in d:
            return _render_objects(d)
        if "rows" in d:
            ps = d["page_size"]
            tot = d["total_pages"] or 0
            lines = [f"{'':16}{'PAGES':>10}  {'TOTAL':>10}  PERCENTAGE"]
            for r in d["rows"]:
                pct = f"{100.0 * r['pages'] / tot:.0f}% of TOTAL MEM" if tot and r["name"] != "TOTAL MEM" else "----"
                lines.append(f"{r['name']:>14}  {r['pages']:>10}  {_human(r['pages'] * ps):>10}  {pct}")
            return "\n".join(lines)
        if "page" in d and "region" not in d:
            return _render_page(d["page"])
        return _render_what(d)


def _vmstat(sym, enum):
    """{item name: value} of a global vm stat array (enum names recorded in the offsets
    cache, else from gdb's types)."""
    items = kernel().enum(f"enum {enum}")
    if not items:
        return {}
    try:
        raw = kernel().reader.read(kernel().need_sym(sym), 8 * len(items))
    except MemoryFault:
        return {}
    out = {}
    for name, val in items.items():
        if val * 8 + 8 <= len(raw) and not name.startswith("NR_VM_"):
            out.setdefault(name, max(0, int.from_bytes(raw[val * 8:val * 8 + 8],
                                                        "little", signed=True)))
    return out


def _human(n):
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024


def _render_caches(rows):
    lines = [f"{'CACHE':16}  {'OBJSIZE':>7}  {'ALLOCATED':>9}  {'TOTAL':>7}  {'SLABS':>5}  "
             f"{'SSIZE':>5}  NAME"]
    for r in rows:
        lines.append(f"{r['cache_addr']:016x}  {r['objsize']:>7}  {r['allocated']:>9}  "
                     f"{r['total']:>7}  {r['slabs']:>5}  {_size(r['slab_size']):>5}  {r['name']}")
    return "\n".join(lines)


def _render_objects(d):
    lines = [_render_caches([d["cache"]])]
    for s in d["slabs"]:
        objs = s["objects"]
        n_alloc = sum(1 for o in objs if o["allocated"])
        lines.append(f"  {'SLAB':16}  {'MEMORY':16}  {'TOTAL':>5}  {'ALLOCATED':>9}  "
                     f"{'FREE':>4}  STATE")
        lines.append(f"  {s['slab']:016x}  {s['memory']:016x}  {len(objs):>5}  {n_alloc:>9}  "
                     f"{len(objs) - n_alloc:>4}  {s['state']}")
        if s["error"]:
            lines.append(f"  ({escape(s['error'])})")
        lines.append("  FREE / [ALLOCATED]")
        for o in objs:
            if o["allocated"]:
                lines.append(f"  [{o['object']:016x}]")
            elif o["allocated"] is None:
                lines.append(f"  ?{o['object']:016x}?  (freelist unreadable)")
            else:
                lines.append(f"   {o['object']:016x}   ({o['free_list']})")
    lines.append(f"{d['allocated']} allocated, {d['free']} free")
    return "\n".join(lines)


def _render_page(p):
    order = f"  order {p['order']}" if p["order"] else ""
    head = f"  head {p['head']:016x}" if p["head"] is not None else ""
    return "\n".join([
        f"{'PAGE':16}  {'PHYSICAL':>12}  {'MAPPING':16}  {'INDEX':>8}  {'CNT':>3}  FLAGS",
        f"{p['page']:016x}  {p['phys']:>12x}  {p['mapping']:016x}  {p['index']:>8x}  "
        f"{p['refcount']:>3}  {p['flags_raw']:x} {','.join(p['flag_names'])}",
        f"  pfn {p['pfn']:#x}  virtual {p['virt']:016x}  mapcount {p['mapcount']}{order}{head}"
        + ("  (slab)" if p.get("slab") else "")])


def _render_what(d):
    addr = d["addr"]
    lines = []
    if "cache" in d:
        state = ("ALLOCATED" if d["allocated"] else
                 f"FREE ({d['free_list']})" if d["allocated"] is False else
                 f"UNKNOWN ({d.get('error')})")
        lines.append(f"{'CACHE':16}  {'OBJSIZE':>7}  NAME")
        lines.append(f"{d['cache_addr']:016x}  {d['object_size']:>7}  {d['cache']}")
        lines.append(f"  {'SLAB':16}  {'MEMORY':16}  STATE")
        lines.append(f"  {d['slab']:016x}  {d['slab_base']:016x}  {d['slab_state']}")
        if "object" in d:
            where = f"  (+{d['offset']:#x})" if d["offset"] else ""
            pad = "  in the object's padding/metadata" if d["offset"] >= d["object_size"] else ""
            lines.append(f"  OBJECT {d['object']:016x}{where}  index {d['index']}  {state}{pad}")
        else:
            lines.append(f"  {addr:016x} is in the slab but not inside an object")
    if "page" in d and "cache" not in d:
        lines.append(_render_page(d["page"]))
    elif "page" in d:
        lines.append(f"  PAGE {d['page']['page']:016x}  pfn {d['page']['pfn']:#x}")
    if "stack" in d:
        s = d["stack"]
        lines.append(f"{addr:016x}: kernel stack of PID {s['pid']} ({s['comm']}), task "
                     f"{s['task']:016x}, stack base {s['base']:016x} +{s['offset']:#x}")
    if "vmalloc" in d:
        v = d["vmalloc"]
        caller = v["caller_name"] or (f"{v['caller']:#x}" if v["caller"] else "-")
        lines.append(f"{addr:016x}: vmalloc area {v['start']:016x}-{v['end']:016x} "
                     f"({v['end'] - v['start']} bytes), caller {caller}")
    if "module" in d:
        m = d["module"]
        lines.append(f"{addr:016x}: in module {m['name']} ({m['base']:016x}+{m['offset']:#x})")
    if "percpu" in d:
        p = d["percpu"]
        sym = f" ({p['symbol']})" if p["symbol"] else ""
        lines.append(f"{addr:016x}: per-CPU area of CPU {p['cpu']}, offset {p['offset']:#x}{sym}")
    if d.get("symbol"):
        lines.append(f"{addr:016x}: {d['symbol']}")
    if not lines:
        lines.append(f"{addr:016x}: {d['region']}")
    return "\n".join(lines)
