"""Searching kernel memory for a value or a string, without gdb (crash's ``search``).

What "kernel memory" is (:func:`kernel_regions`): the kernel image
(``_text`` .. ``_end``, by its image addresses), the linear map of every RAM range
(``memblock.memory``) except the image's own physical pages (found already
under their image addresses), and every vmalloc area on ``vmap_area_list``
(vmalloc'd buffers, task stacks with VMAP_STACK, module memory; not the areas
arm64 registers for the image's own segments, searched already). Physical
search (:func:`physical_regions`) covers RAM and reports physical addresses.

A search reads large blocks past the per-stop cache (a scan of all RAM must not
keep all of RAM in memory): on a dump opened in this process the linear map
and the image are read straight from the dump's physical memory (~0.15 s per
GiB on an ELF dump against ~1.9 s through per-page translation); elsewhere
through the reader's backend, 1 MiB at a time. A block that cannot be read is
retried page by page and the unreadable pages are skipped (and counted).

Values are 64-bit words at 8-byte aligned addresses. A mask names bits to
ignore (crash's ``-m``): a word matches when ``word & ~mask == value & ~mask``,
done as a byte regex (bytes the mask covers entirely match anything), so the
scan runs at C speed. Strings match at any byte.
"""

import re

from .addrinfo import vmap_areas
from .memmap import memory_map
from .modules import module_list
from .reader import MemoryFault

__all__ = ["Matcher", "clip", "Region", "kernel_regions", "physical_regions", "value_pattern", "string_pattern",
           "search"]

M64 = (1 << 64) - 1
CHUNK = 1 << 20


class Region:
    """[start, end) to scan; ``phys`` is the physical address of ``start`` when the region
    is physically contiguous (image, linear map) — read directly from a dump."""

    def __init__(self, start, end, kind, phys=None):
        self.start, self.end, self.kind, self.phys = start, end, kind, phys

    def __repr__(self):
        return f"Region({self.start:#x}, {self.end:#x}, {self.kind!r})"


def _subtract(ranges, hole):
    out = []
    h0, h1 = hole
    for s, e in ranges:
        if e <= h0 or s >= h1:
            out.append((s, e))
            continue
        if s < h0:
            out.append((s, h0))
        if e > h1:
            out.append((h1, e))
    return out


def kernel_regions(k) -> list:
    mm = memory_map(k)
    out = []
    text, end = k.sym("_text"), k.sym("_end")
    ram = list(mm.ram_ranges())
    if text is not None and end is not None and mm.kimage_voffset is not None:
        pa = (text - mm.kimage_voffset) & M64
        out.append(Region(text, end, "kernel image", pa))
        ram = _subtract(ram, (pa, pa + (end - text)))
    for s, e in ram:
        out.append(Region(mm.phys_to_virt(s), mm.phys_to_virt(s) + (e - s), "linear map", s))
    for start, vend, _vm, _caller, _flags in vmap_areas(k):
        if vend <= start:
            continue
        if text is not None and end is not None and start < end and vend > text:
            continue            # arm64 registers the image's segments as vm areas too
        out.append(Region(start, vend, "vmalloc"))
    return out


def physical_regions(k) -> list:
    mm = memory_map(k)
    return [Region(s, e, "physical", s) for s, e in mm.ram_ranges()]


def clip(regions, start=None, end=None) -> list:
    out = []
    for r in regions:
        s, e = r.start, r.end
        if start is not None:
            s = max(s, start)
        if end is not None:
            e = min(e, end)
        if s < e:
            phys = r.phys + (s - r.start) if r.phys is not None else None
            out.append(Region(s, e, r.kind, phys))
    return out


class Matcher:
    """Where a byte pattern starts in a buffer, overlapping matches included:
    ``bytes.find`` for an exact pattern, a look-ahead regex for a masked one."""

    def __init__(self, literal: bytes = None, regex: bytes = None, length: int = 0):
        self.literal = literal
        self.regex = re.compile(b"(?=" + regex + b")", re.DOTALL) if regex is not None else None
        self.length = len(literal) if literal is not None else length

    def starts(self, buf):
        if self.literal is not None:
            find, lit = buf.find, self.literal
            i = find(lit)
            while i >= 0:
                yield i
                i = find(lit, i + 1)
        else:
            for m in self.regex.finditer(buf):
                yield m.start()


def value_pattern(value: int, mask: int = 0, size: int = 8) -> Matcher:
    """``size``-byte little-endian words equal to ``value`` outside the bits of ``mask``."""
    full = (1 << (8 * size)) - 1
    v = value & ~mask & full
    if not mask & full:
        return Matcher(literal=v.to_bytes(size, "little"))
    parts = []
    for i in range(size):
        m = (mask >> (8 * i)) & 0xFF
        b = (v >> (8 * i)) & 0xFF
        if m == 0:
            parts.append(re.escape(bytes([b])))
        elif m == 0xFF:
            parts.append(b".")
        else:
            ok = [x for x in range(256) if x & ~m & 0xFF == b]
            parts.append(b"[" + b"".join(re.escape(bytes([x])) for x in ok) + b"]")
    return Matcher(regex=b"".join(parts), length=size)


def string_pattern(s: bytes) -> Matcher:
    return Matcher(literal=bytes(s))


class _Source:
    """Bulk reads past the per-stop cache: the dump's physical memory when the region is
    physically contiguous and a dump is open in this process, else the reader's backend."""

    def __init__(self, k, physical):
        self.k = k
        self.physical = physical
        dump = getattr(k.reader, "dump", None)
        self.phys = getattr(dump, "phys", None)
        self.page = memory_map(k).page_size

    def read(self, region, addr, n):
        if self.phys is not None and region.phys is not None:
            try:
                return self.phys.read_phys(region.phys + (addr - region.start), n)
            except Exception as e:      # DumpError and its kinds (excluded, not in dump)
                raise MemoryFault(addr, str(e)) from None
        if self.physical:
            mm = memory_map(self.k)
            return self.k.reader._backend(mm.phys_to_virt(addr), n)
        return self.k.reader._backend(addr, n)


def search(k, pattern, regions, align=8, overlap=0, limit=10000, progress=None) -> dict:
    """{"hits": [address...], "skipped_pages": n, "scanned": bytes, "truncated": bool}.

    ``pattern`` is a :class:`Matcher` (:func:`value_pattern`, :func:`string_pattern`);
    hits are kept where ``address % align == 0``. ``overlap``: bytes of the previous
    block kept in front of the next one (a string's length - 1), so a match across a
    block boundary is found once. ``progress(done, total)`` is called per block."""
    src = _Source(k, physical=bool(regions) and regions[0].kind == "physical")
    ps = src.page
    hits = []
    skipped = 0
    total = sum(r.end - r.start for r in regions)
    done = 0
    for r in regions:
        a = r.start
        prev_end, tail = None, b""
        while a < r.end:
            n = min(CHUNK - (a % CHUNK), r.end - a)
            try:
                blocks = [(a, src.read(r, a, n))]
            except MemoryFault:
                blocks = []
                p = a
                while p < a + n:
                    m = min(ps - (p % ps), a + n - p)
                    try:
                        blocks.append((p, src.read(r, p, m)))
                    except MemoryFault:
                        skipped += 1
                    p += m
            for base, data in blocks:
                lead = tail if overlap and prev_end == base else b""
                buf = lead + data
                for i in pattern.starts(buf):
                    if i + pattern.length <= len(lead):
                        continue            # wholly in the previous block: found there
                    h = base - len(lead) + i
                    if h % align:
                        continue
                    hits.append(h)
                    if len(hits) >= limit:
                        return {"hits": hits, "skipped_pages": skipped, "scanned": done,
                                "truncated": True}
                prev_end = base + len(data)
                tail = buf[-overlap:] if overlap else b""
            done += n
            a += n
            if progress is not None:
                progress(done, total)
    return {"hits": hits, "skipped_pages": skipped, "scanned": done, "truncated": False}


def annotate(k, addrs) -> list:
    """For each kernel virtual address: {"region", and "slab" {cache, object, offset,
    allocated} | "stack" {task, pid, comm} | "vmalloc" {start, caller} | "module"
    {name, base, offset}} where known.
    Slabs are decoded once each."""
    from . import slab as slabm
    from .addrinfo import task_stack_of, find_vmap_area
    mm = memory_map(k)
    per_slab = {}
    out = []
    for a in addrs:
        d = {"region": mm.region(a)}
        if mm.is_linear(a):
            try:
                hit = slabm.slab_of(k, a)
            except MemoryFault:
                hit = None
            if hit is not None:
                s, cache_addr = hit
                cache = slabm.cache_by_addr(k).get(cache_addr)
                if cache is not None:
                    if s not in per_slab:
                        try:
                            per_slab[s] = slabm.slab_objects(k, cache, s)[0]
                        except MemoryFault:
                            per_slab[s] = []
                    first = mm.page_to_virt(s) + cache.red_left_pad
                    idx = (a - first) // cache.size if a >= first else -1
                    objs = per_slab[s]
                    if 0 <= idx < len(objs):
                        obj, allocated, _where = objs[idx]
                        d["slab"] = {"cache": cache.name, "object": obj, "offset": a - obj,
                                     "allocated": allocated}
        if "slab" not in d:
            st = task_stack_of(k, a)
            if st is not None:
                t, base = st
                d["stack"] = {"task": t.addr, "pid": t.pid, "comm": t.comm, "offset": a - base}
            elif d["region"] == "vmalloc":
                va = find_vmap_area(k, a)
                if va is not None:
                    d["vmalloc"] = {"start": va[0], "caller": va[3]}
        if d["region"] == "modules":
            for m in module_list(k)[0]:
                if m.contains(a):
                    d["module"] = {"name": m.name, "base": m.base, "offset": a - m.base}
                    break
        out.append(d)
    return out
