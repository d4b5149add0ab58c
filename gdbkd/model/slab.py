"""SLUB without gdb: caches, slabs, freelists, and what an address inside a slab is.

Caches are the ``slab_caches`` list (``struct kmem_cache.list``). A cache's
objects live in slabs: runs of ``1 << oo_order`` pages whose head page
describes the slab. Since v5.17 (commit d122019bf061, "mm: Split slab into its
own type") that description is ``struct slab``, overlaid on the head ``struct
page``; before it the same members are in ``struct page`` itself (5.10:
``slab_cache``, ``freelist``, ``counters``, ``slab_list``, ``next``). Both are
read at the same address, so the model picks whichever type the kernel has
and probes members by name. The per-CPU active slab is
``kmem_cache_cpu.slab`` (``.page`` before v5.17).

``counters`` packs ``inuse:16, objects:15, frozen:1`` (unchanged v3.x–6.12).

Free objects form singly linked lists: the next pointer sits at
``object + s->offset``. With CONFIG_SLAB_FREELIST_HARDENED (Debian) it is
stored as ``next ^ s->random ^ swab(&next)`` (v5.7+, commit 1ad53d9fa3f6
"slub: improve bit diffusion for freelist ptr obfuscation", backported to
the stable branches maintained then); before it, ``next ^ s->random ^ &next``
(v4.14 commit 2482ddec670f "mm: add SLUB free list pointer obfuscation" to
v5.6: the course's 5.0). Which of the two a kernel uses is not told by any type
or VMCOREINFO: :func:`freelist` proves it from the first pointer that lands on
an object of its slab one way and not the other. The cache has a ``random``
member exactly when the option is on. CONFIG_SLAB_FREELIST_RANDOM only shuffles the
initial order of a new slab's freelist, which a walk does not care about.

An object is free when it is on its slab's ``freelist`` or on the per-CPU
freelist (``kmem_cache_cpu.freelist``) of a CPU whose active slab it is;
otherwise it is allocated. Every possible CPU is asked (a dump taken after
panic() has the other CPUs offline, but their per-CPU slabs still hold free
objects).

SLUB does not keep full slabs on any list unless debugging is on for the cache
(``kmem_cache_node.full`` with SLAB_STORE_USER), so a cache's slabs are found
as drgn finds them: by scanning every ``struct page`` of RAM for slab pages
(:func:`slab_pages`, once per stop). A slab page is one with ``PG_slab`` up to
v6.9, page type "slab" from v6.10 (gdbkd/model/memmap.py).

Per-cache counts (:func:`cache_usage`, ``kd kmem -s``) come from the
counters SLUB keeps with CONFIG_SLUB_DEBUG (``nr_slabs``, ``total_objects``
per node) minus the free objects on the node partial lists, the per-CPU
partial lists and the per-CPU slabs — what drgn's ``slab_cache_usage`` and
crash's ``kmem -s`` compute.

Not handled: SLAB and SLOB (gone in 6.5 / 6.4; Debian builds SLUB since
squeeze); v6.18+ sheaves; KASAN tags in freelist pointers.
"""

from dataclasses import dataclass, field

from .kernel import per_stop
from .lists import Entries, walk_entries
from .memmap import memory_map
from .percpu import possible_cpus, per_cpu_addr
from .reader import MemoryFault
from ..textutil import escape

__all__ = ["SlabCache", "SlabObject", "slab_caches", "find_cache", "cache_by_addr",
           "slab_pages", "cache_slabs", "slab_info", "slab_objects", "cache_objects",
           "cache_usage", "object_info", "cpu_slabs", "FreelistError", "slab_type"]

M64 = (1 << 64) - 1
OO_SHIFT = 16

def _layout(k, typename):
    """The members read of one SLUB struct: declared in gdbkd/model/layout.py's LAYOUTS
    (absent members are skipped: see the docstring), so ``gdbkd core`` serves them from
    the per-vmlinux offsets cache instead of a gdb type lookup (0.14 s for kd kmem -s)."""
    return k.layout(typename)


class FreelistError(Exception):
    """A freelist that does not stay inside its slab, or loops."""


@dataclass
class SlabCache:
    addr: int                 # struct kmem_cache *
    name: str                 # decoded, not escaped
    size: int                 # object stride (s->size)
    object_size: int
    offset: int               # free pointer offset inside an object
    random: object            # s->random, or None without FREELIST_HARDENED
    red_left_pad: int
    objects_per_slab: int
    order: int
    flags: int
    refcount: int
    ctor: int
    cpu_slab: int             # __percpu struct kmem_cache_cpu *
    nodes: list = field(default_factory=list)   # struct kmem_cache_node * per node
    swab: bool = True         # hardened pointers use swab(&next) (v5.7+); freelist() checks it

    def decode_free_pointer(self, raw: int, ptr_addr: int, swab: bool = None) -> int:
        if self.random is None:
            return raw
        if self.swab if swab is None else swab:
            ptr_addr = int.from_bytes(ptr_addr.to_bytes(8, "little"), "big")
        return raw ^ self.random ^ ptr_addr


@dataclass
class SlabObject:
    """What :func:`object_info` found: the cache, the slab and the object."""
    cache: SlabCache
    slab: int                 # struct slab * (== the head struct page *)
    slab_base: int            # address of the slab's first page
    object: int
    index: int
    offset: int               # of the address inside the object
    allocated: object         # True / False / None (freelist unreadable or corrupt)
    free_list: object         # "slab freelist" | "cpu N freelist" | None
    state: str                # "cpu N slab" | "cpu N partial" | "node N partial" | "full" | ...
    error: object = None      # why allocated is None

    @property
    def in_padding(self) -> bool:
        return self.offset >= self.cache.object_size


def slab_type(k) -> str:
    """"struct slab" (v5.17+) or "struct page" (before)."""
    return "struct slab" if k.sizeof("struct slab") else "struct page"


def _slab_layout(k):
    return _layout(k, slab_type(k))


def _decode_counters(c: int):
    """(inuse, objects, frozen) of slab->counters."""
    return c & 0xFFFF, (c >> 16) & 0x7FFF, (c >> 31) & 1


@per_stop
def _nr_node_ids(k) -> int:
    a = k.sym("nr_node_ids")
    if a is None:
        return 1
    try:
        return max(1, min(k.reader.u32(a), 1024))
    except MemoryFault:
        return 1


def _read_cache(k, addr: int) -> SlabCache:
    lay = _layout(k, "struct kmem_cache")
    f = lay.read(k.reader, addr)
    try:
        name = k.reader.cstring(f["name"], 64).decode("utf-8", "replace")
    except MemoryFault:
        name = f"<unreadable name at {f['name']:#x}>"
    oo = f.get("oo", 0)
    nodes = []
    raw = f.get("node", b"")
    for i in range(min(_nr_node_ids(k), len(raw) // 8)):
        n = int.from_bytes(raw[8 * i:8 * i + 8], "little")
        nodes.append(n)
    return SlabCache(addr=addr, name=name, size=f["size"], object_size=f["object_size"],
                     offset=f["offset"], random=f.get("random"),
                     red_left_pad=f.get("red_left_pad", 0), objects_per_slab=oo & ((1 << OO_SHIFT) - 1),
                     order=oo >> OO_SHIFT, flags=f.get("flags", 0), refcount=f.get("refcount", 0),
                     ctor=f.get("ctor", 0), cpu_slab=f.get("cpu_slab", 0), nodes=nodes)


#: how the cache list is named in what kd says about it
CACHE_LIST = "slab cache list (slab_caches)"


@per_stop
def slab_caches(k) -> list:
    """Every cache on ``slab_caches``, in list order (newest first), each once; an
    :class:`gdbkd.model.lists.Entries` whose ``damage`` says what was wrong with the
    list (walked back from the head past a loop, NULL, poison or unreadable link)."""
    head = k.need_sym("slab_caches")
    off = k.offset("struct kmem_cache", "list")
    w = walk_entries(k.reader, head, off, limit=1 << 16)
    out = Entries()
    names = {}
    for addr in w.entries():
        try:
            c = _read_cache(k, addr)
        except MemoryFault:
            continue
        out.append(c)
        names[addr] = f"cache {escape(c.name)}"
    out.damage = w.problems(CACHE_LIST, names.get)
    return out


def find_cache(k, name: str):
    """The cache named ``name`` (or at that address, "0x…"), or None."""
    for c in slab_caches(k):
        if c.name == name:
            return c
    if name.lower().startswith("0x"):
        try:
            return cache_by_addr(k).get(int(name, 16))
        except ValueError:
            return None
    return None


@per_stop
def cache_by_addr(k) -> dict:
    return {c.addr: c for c in slab_caches(k)}


# -- per-CPU state ------------------------------------------------------------------------
@per_stop
def cpu_slabs(k, cache_addr: int) -> dict:
    """{cpu: {"freelist", "slab", "partial"}} of a cache's kmem_cache_cpu, for every
    possible CPU that could be read."""
    c = cache_by_addr(k)[cache_addr]
    lay = _layout(k, "struct kmem_cache_cpu")
    out = {}
    for cpu in possible_cpus(k):
        try:
            f = lay.read(k.reader, per_cpu_addr(k, c.cpu_slab, cpu))
        except (MemoryFault, IndexError):
            continue
        out[cpu] = {"freelist": f.get("freelist", 0), "slab": f.get("slab", f.get("page", 0)),
                    "partial": f.get("partial", 0)}
    return out


def freelist(k, cache: SlabCache, head: int, base: int = None, nobjects: int = None) -> list:
    """Object addresses on the freelist starting at ``head``. With ``base``/``nobjects``
    (the slab's first object and count) every pointer must be an object of that slab;
    raises :class:`FreelistError` (carrying ``.objects`` so far) or MemoryFault."""
    out = []
    seen = set()
    limit = nobjects if nobjects is not None else 1 << 16

    def in_slab(p):
        return base <= p < base + nobjects * cache.size and (p - base) % cache.size == 0

    p = head
    while p:
        if p in seen:
            e = FreelistError(f"freelist of {cache.name} loops at {p:#x}")
            e.objects = out
            raise e
        if base is not None and not in_slab(p):
            e = FreelistError(f"freelist of {cache.name} points outside its slab: {p:#x} "
                              f"after {len(out)} objects")
            e.objects = out
            raise e
        if len(out) > limit:
            e = FreelistError(f"freelist of {cache.name} longer than the slab")
            e.objects = out
            raise e
        seen.add(p)
        out.append(p)
        addr = p + cache.offset
        try:
            raw = k.reader.u64(addr)
        except MemoryFault as ex:
            e = FreelistError(f"freelist of {cache.name}: {ex}")
            e.objects = out
            raise e from None
        p = cache.decode_free_pointer(raw, addr)
        if base is not None and cache.random is not None and p and not in_slab(p):
            other = cache.decode_free_pointer(raw, addr, swab=not cache.swab)
            if other == 0 or in_slab(other):      # the kernel's formula is the other one
                cache.swab = not cache.swab
                p = other
    return out


# -- slabs --------------------------------------------------------------------------------
def _slab_test(k, mm):
    """A function (page bytes, offset) → is a slab page (head or order-0)."""
    if mm.pg_slab is not None:
        bit = 1 << mm.pg_slab
        off = k.offset("struct page", "flags") or 0

        def test(buf, o):
            return int.from_bytes(buf[o + off:o + off + 8], "little") & bit
        return test
    if mm.slab_mapcount is not None:
        off = k.offset("struct page", "_mapcount")
        want = mm.slab_mapcount & 0xFFFFFFFF

        def test(buf, o):
            return int.from_bytes(buf[o + off:o + off + 4], "little") == want
        return test
    raise MemoryFault(0, "cannot tell slab pages: VMCOREINFO has neither PG_slab nor "
                         "PAGE_SLAB_MAPCOUNT_VALUE")


@per_stop
def slab_pages(k) -> dict:
    """{cache address: [slab addresses]} from a scan of every struct page of RAM."""
    mm = memory_map(k)
    test = _slab_test(k, mm)
    ch_off = k.offset("struct page", "compound_head")
    sc_off = _slab_layout(k).offset("slab_cache")
    ps = mm.page_struct_size
    out = {}
    chunk = 4096
    for lo, hi in mm.pfn_ranges():
        pfn = lo
        while pfn < hi:
            n = min(chunk, hi - pfn)
            base = mm.pfn_to_page(pfn)
            try:
                buf = k.reader.read(base, n * ps)
            except MemoryFault:
                if n > 64:
                    chunk = 64
                    continue
                pfn += n
                chunk = 4096
                continue
            for i in range(n):
                o = i * ps
                if not test(buf, o):
                    continue
                if ch_off is not None and buf[o + ch_off] & 1:
                    continue              # a tail page (PG_slab is kept on the head only)
                cache = int.from_bytes(buf[o + sc_off:o + sc_off + 8], "little")
                out.setdefault(cache, []).append(base + o)
            pfn += n
            chunk = 4096
    return out


def cache_slabs(k, cache: SlabCache) -> list:
    return slab_pages(k).get(cache.addr, [])


def slab_info(k, slab: int) -> dict:
    """The slab's own members: cache, freelist head, inuse, objects, frozen."""
    f = _slab_layout(k).read(k.reader, slab)
    inuse, objects, frozen = _decode_counters(f.get("counters", 0))
    return {"slab": slab, "cache": f["slab_cache"], "freelist": f.get("freelist", 0),
            "inuse": inuse, "objects": objects, "frozen": frozen,
            "next": f.get("next", 0)}


def slab_objects(k, cache: SlabCache, slab: int):
    """([(object address, allocated, free list name or None)], error or None) of one slab."""
    mm = memory_map(k)
    si = slab_info(k, slab)
    first = mm.page_to_virt(slab) + cache.red_left_pad
    n = si["objects"]
    free = {}
    err = None
    try:
        for o in freelist(k, cache, si["freelist"], first, n):
            free[o] = "slab freelist"
    except FreelistError as e:
        err = str(e)
        for o in e.objects:
            free[o] = "slab freelist"
    except MemoryFault as e:
        err = str(e)
    for cpu, c in cpu_slabs(k, cache.addr).items():
        if c["slab"] != slab:
            continue
        try:
            for o in freelist(k, cache, c["freelist"], first, n):
                free[o] = f"cpu {cpu} freelist"
        except FreelistError as e:
            err = str(e)
            for o in e.objects:
                free[o] = f"cpu {cpu} freelist"
        except MemoryFault as e:
            err = str(e)
    objs = []
    for i in range(n):
        a = first + i * cache.size
        where = free.get(a)
        objs.append((a, where is None if err is None or where else None, where))
    return objs, err


def cache_objects(k, cache: SlabCache):
    """[(slab, objects, error)] for every slab of the cache (see :func:`slab_objects`)."""
    out = []
    for s in cache_slabs(k, cache):
        try:
            objs, err = slab_objects(k, cache, s)
        except MemoryFault as e:
            objs, err = [], str(e)
        out.append((s, objs, err))
    return out


def partial_walk(k, node: int):
    """The walk (:func:`gdbkd.model.lists.walk_entries`) of the partial-slab list of
    the ``struct kmem_cache_node`` at ``node``: ``partial`` links ``slab.slab_list``
    (``page.slab_list`` before 5.17's struct slab, commit d122019bf061; see
    _slab_layout)."""
    off = k.offset("struct kmem_cache_node", "partial")
    link = _slab_layout(k).offset("slab_list")
    return walk_entries(k.reader, node + off, link, limit=1 << 20)


def _partial_slabs(k, node: int) -> list:
    if not node:
        return []
    return partial_walk(k, node).entries()


def _cpu_partial_chain(k, head: int, limit=4096) -> list:
    out = []
    p = head
    while p and len(out) < limit and p not in out:
        out.append(p)
        try:
            p = slab_info(k, p)["next"]
        except MemoryFault:
            break
    return out


def slab_state(k, cache: SlabCache, slab: int) -> str:
    for cpu, c in cpu_slabs(k, cache.addr).items():
        if c["slab"] == slab:
            return f"cpu {cpu} slab"
        if slab in _cpu_partial_chain(k, c["partial"]):
            return f"cpu {cpu} partial"
    for nid, node in enumerate(cache.nodes):
        if slab in _partial_slabs(k, node):
            return f"node {nid} partial"
    return "full"


def cache_usage(k, cache: SlabCache) -> dict:
    """{"slabs", "total", "free", "allocated"} from SLUB's counters (see the docstring)."""
    nlay = _layout(k, "struct kmem_cache_node")
    slabs = total = free = 0
    counted = True
    for node in cache.nodes:
        if not node:
            continue
        f = nlay.read(k.reader, node)
        if "nr_slabs" not in f:
            counted = False
        slabs += f.get("nr_slabs", 0)
        total += f.get("total_objects", 0)
        for s in _partial_slabs(k, node):
            si = slab_info(k, s)
            free += si["objects"] - si["inuse"]
    for cpu, c in cpu_slabs(k, cache.addr).items():
        if c["slab"]:
            try:
                si = slab_info(k, c["slab"])
                first = memory_map(k).page_to_virt(c["slab"]) + cache.red_left_pad
                free += len(freelist(k, cache, c["freelist"], first, si["objects"]))
                free += si["objects"] - si["inuse"]        # remote frees to a frozen slab
            except (FreelistError, MemoryFault):
                pass
        for s in _cpu_partial_chain(k, c["partial"]):
            si = slab_info(k, s)
            free += si["objects"] - si["inuse"]
    if not counted:          # !CONFIG_SLUB_DEBUG: count the slabs found in memory
        sl = cache_slabs(k, cache)
        slabs = len(sl)
        total = sum(slab_info(k, s)["objects"] for s in sl)
    return {"slabs": slabs, "total": total, "free": free, "allocated": total - free}


# -- what an address is -------------------------------------------------------------------
def slab_of(k, addr: int):
    """(slab address, cache address) when ``addr`` is in a slab page, else None."""
    mm = memory_map(k)
    if not mm.is_linear(addr):
        return None
    page = mm.virt_to_page(addr)
    ch_off = k.offset("struct page", "compound_head")
    test = _slab_test(k, mm)
    buf = k.reader.read(page, mm.page_struct_size)
    if ch_off is not None:
        ch = int.from_bytes(buf[ch_off:ch_off + 8], "little")
        if ch & 1:
            page = ch - 1
            buf = k.reader.read(page, mm.page_struct_size)
    if not test(buf, 0):
        return None
    sc_off = _slab_layout(k).offset("slab_cache")
    return page, int.from_bytes(buf[sc_off:sc_off + 8], "little")


def object_info(k, addr: int):
    """A :class:`SlabObject` for an address inside a slab, or None (drgn's
    ``slab_object_info``). Raises MemoryFault when the struct page cannot be read."""
    hit = slab_of(k, addr)
    if hit is None:
        return None
    slab, cache_addr = hit
    cache = cache_by_addr(k).get(cache_addr)
    if cache is None:
        try:
            cache = _read_cache(k, cache_addr)
        except MemoryFault:
            return None
    mm = memory_map(k)
    base = mm.page_to_virt(slab)
    first = base + cache.red_left_pad
    idx = (addr - first) // cache.size if addr >= first else -1
    si = slab_info(k, slab)
    if not 0 <= idx < si["objects"]:
        return SlabObject(cache, slab, base, 0, -1, addr - base, None, None,
                          slab_state(k, cache, slab), "not inside an object (slab padding)")
    obj = first + idx * cache.size
    objs, err = slab_objects(k, cache, slab)
    _, allocated, where = objs[idx]
    return SlabObject(cache, slab, base, obj, idx, addr - obj, allocated, where,
                      slab_state(k, cache, slab), err)
