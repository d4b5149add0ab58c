"""Searching kernel memory for a value or a string, without gdb (crash's ``search``).

What "kernel memory" is (:func:`kernel_regions`): the kernel image
(``_text`` .. ``_end``, by its image addresses), the linear map of every RAM range
(``memblock.memory``) except the image's own physical pages (found already
under their image addresses), and every vmalloc area (:func:`addrinfo.vmap_areas`:
vmalloc'd buffers, task stacks with VMAP_STACK, module memory; not the areas
arm64 registers for the image's own segments, searched already, nor ioremap
areas: device memory, which is not in a dump and which a live read would
touch — QEMU's virt board ioremaps 256 MiB of PCI config space). Physical
search (:func:`physical_regions`) covers RAM and reports physical addresses.

A search reads large blocks past the per-stop cache (a scan of all RAM must not
keep all of RAM in memory): on a dump opened in this process the linear map
and the image are read straight from the dump's physical memory (~0.15 s per
GiB on an ELF dump against ~1.9 s through per-page translation); elsewhere
through the reader's backend, 1 MiB at a time. A vmalloc area is read as the
runs of pages its page tables map (one walk of the tables per area), so guard
pages and holes are never asked for. A block that cannot be read is retried
page by page and the unreadable pages are skipped (and counted).

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
from ..errors import GdbkdError

__all__ = ["Matcher", "clip", "Region", "kernel_regions", "physical_regions", "user_regions", "value_pattern", "string_pattern",
           "search"]

M64 = (1 << 64) - 1
CHUNK = 1 << 20
VM_IOREMAP = 0x1          # include/linux/vmalloc.h, unchanged since 2.6


class Region:
    """[start, end) to scan; ``phys`` is the physical address of ``start`` when the region
    is physically contiguous (image, linear map) — read directly from a dump."""

    def __init__(self, start, end, kind, phys=None, pgd=None, name=None):
        self.start, self.end, self.kind, self.phys = start, end, kind, phys
        self.pgd = pgd            # user regions: the mm's page table (mm->pgd, linear map)
        self.name = name          # user regions: the VMA's name (as /proc/PID/maps)

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
        segs = [(text, end)]
        ib, ie = k.sym("__init_begin"), k.sym("__init_end")
        if ib is not None and ie is not None and text <= ib < ie <= end:
            # free_initmem() unmapped the init sections and gave their pages to the page
            # allocator: what is there now is found under the linear map, not the image
            segs = [(text, ib), (ie, end)]
        for a, b in segs:
            pa = (a - mm.kimage_voffset) & M64
            out.append(Region(a, b, "kernel image", pa))
            ram = _subtract(ram, (pa, pa + (b - a)))
    for s, e in ram:
        out.append(Region(mm.phys_to_virt(s), mm.phys_to_virt(s) + (e - s), "linear map", s))
    for start, vend, _vm, _caller, flags in vmap_areas(k):
        if vend <= start or flags & VM_IOREMAP:
            continue
        if text is not None and end is not None and start < end and vend > text:
            continue            # arm64 registers the image's segments as vm areas too
        out.append(Region(start, vend, "vmalloc"))
    return out


def physical_regions(k) -> list:
    mm = memory_map(k)
    return [Region(s, e, "physical", s) for s, e in mm.ram_ranges()]


def user_regions(k, mm: int) -> list:
    """Every VMA of the ``struct mm_struct`` at ``mm`` (gdbkd/model/vma.py), read through
    that mm's own page tables (``mm->pgd``): what a task can address in user space."""
    from .vma import mm_info, vma_list, vma_info
    info = mm_info(k, mm)
    vmas, _how, _stop = vma_list(k, mm)
    out = []
    for v in vmas:
        try:
            f = vma_info(k, v, info)
        except MemoryFault:
            continue
        if f["end"] > f["start"]:
            out.append(Region(f["start"], f["end"], "user", pgd=info["pgd"],
                              name=f["name"].decode("utf-8", "replace")))
    return out


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
            out.append(Region(s, e, r.kind, phys, r.pgd, r.name))
    return out


_memmem = None


def _libc_memmem():
    """glibc's ``memmem`` through ctypes (False where there is none). Inside gdb it finds
    a kernel pointer in 1 GiB of a guest's RAM in ~0.15 s where ``bytes.find`` takes
    ~0.46 s (gdb links Debian's libpython3.11.so, whose find is ~3x slower than the
    static /usr/bin/python3.11's), and it lets go of the GIL while it runs, so the
    read-ahead thread's reads overlap it."""
    global _memmem
    if _memmem is None:
        try:
            import ctypes
            f = ctypes.CDLL(None).memmem
            f.restype = ctypes.c_void_p
            f.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_size_t]
            _memmem = (f, ctypes)
        except (ImportError, OSError, AttributeError):
            _memmem = False
    return _memmem


class Matcher:
    """Where a byte pattern starts in a buffer, overlapping matches included:
    libc's ``memmem`` (else ``bytes.find``) for an exact pattern, a look-ahead regex
    for a masked one."""

    def __init__(self, literal: bytes = None, regex: bytes = None, length: int = 0):
        self.literal = literal
        self.regex = re.compile(b"(?=" + regex + b")", re.DOTALL) if regex is not None else None
        self.length = len(literal) if literal is not None else length
        self.probe = _probe(literal) if literal is not None else None

    def starts(self, buf):
        mm = _libc_memmem() if self.literal and type(buf) is bytes else False
        if mm:
            memmem, ctypes = mm
            lit, n, end = self.literal, len(self.literal), len(buf)
            ref = ctypes.c_char_p(buf)              # the bytes' own storage, not a copy
            base = ctypes.cast(ref, ctypes.c_void_p).value
            off = 0
            while off + n <= end:
                p = memmem(base + off, end - off, lit, n)
                if not p:
                    break
                i = p - base
                yield i
                off = i + 1
        elif self.probe is not None:
            find, lit, n = buf.find, self.literal, len(self.literal)
            off, sub = self.probe
            i = find(sub, off)
            while i >= 0:
                s = i - off
                if buf[s:s + n] == lit:
                    yield s
                i = find(sub, i + 1)
        elif self.literal is not None:
            find, lit = buf.find, self.literal
            i = find(lit)
            while i >= 0:
                yield i
                i = find(lit, i + 1)
        else:
            for m in self.regex.finditer(buf):
                yield m.start()


def _probe(literal: bytes):
    """(offset, bytes) of the part of ``literal`` that ``bytes.find`` skips memory fastest
    with, or None to search for all of it.

    CPython's find (Objects/stringlib/fastsearch.h, 3.10+) steps one byte at a time
    wherever the byte after the window is in the needle's 64-bit "bloom" of
    ``byte & 63``; a kernel pointer holds 0xff (63) and often a byte ≡ 0 mod 64, so
    over zero-filled or pointer-dense memory it crawls. The longest run of bytes
    outside those two classes skips up to its length + 1 per step; each hit of it is
    checked against the whole literal. 1 GiB of a 6.1 guest's RAM, &init_task:
    0.73 s for the whole 8 bytes, 0.21 s for its 5-byte probe."""
    best = (0, 0)
    i = 0
    while i < len(literal):
        j = i
        while j < len(literal) and literal[j] & 63 not in (0, 63):
            j += 1
        if j - i > best[1] - best[0]:
            best = (i, j)
        i = j + 1
    if best[1] - best[0] < 3 or best[1] - best[0] == len(literal):
        return None
    return best[0], literal[best[0]:best[1]]


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
    """Bulk reads past the per-stop cache, in runs of at most :data:`CHUNK` bytes.

    A physically contiguous region (image, linear map, physical) is one run. A vmalloc
    area is split by one walk of its page tables (``Arm64Mmu.mappings``) into runs of
    mapped pages, so guard pages and holes cost nothing and are not "unreadable". Runs
    are read from the dump's physical memory when a dump is open in this process, else
    through the reader's backend."""

    def __init__(self, k, physical):
        self.k = k
        self.physical = physical
        dump = getattr(k.reader, "dump", None)
        self.phys = getattr(dump, "phys", None)
        self.mmu = getattr(dump, "mmu", None) if self.phys is not None else None
        self.page = memory_map(k).page_size

    def runs(self, region):
        """Yield (virtual address, length, physical address or None) of what to read."""
        if region.phys is not None:
            a = region.start
            while a < region.end:
                n = min(CHUNK - (a % CHUNK), region.end - a)
                yield a, n, region.phys + (a - region.start)
                a += n
            return
        mmu = self.mmu
        if mmu is None:
            from .memmap import kernel_mmu
            mmu = kernel_mmu(self.k)
        high = 0
        if region.pgd is not None:
            # a TTBR0 table is indexed by the same bits below VA_BITS as a TTBR1 one: walk
            # the user range with its upper bits set (as model/vma.py's user_pages does)
            import copy
            mmu = copy.copy(mmu)
            mmu.pgd_pa = memory_map(self.k).virt_to_phys(region.pgd)
            mmu._tlb = {}
            high = M64 >> mmu.va_bits << mmu.va_bits
        cur = None                            # [va, length, pa]
        for va, pa, size in mmu.mappings(region.start | high, region.end | high):
            va &= ~high
            lo, hi = max(va, region.start), min(va + size, region.end)
            if lo >= hi:
                continue
            pa += lo - va
            if cur is not None and cur[0] + cur[1] == lo and cur[2] + cur[1] == pa \
                    and cur[1] + (hi - lo) <= CHUNK:
                cur[1] += hi - lo
                continue
            if cur is not None:
                yield tuple(cur)
            cur = [lo, hi - lo, pa]
            while cur[1] > CHUNK:             # a large block mapping
                yield cur[0], CHUNK, cur[2]
                cur = [cur[0] + CHUNK, cur[1] - CHUNK, cur[2] + CHUNK]
        if cur is not None:
            yield tuple(cur)

    def read(self, region, addr, n, pa):
        if self.phys is not None and pa is not None:
            try:
                return self.phys.read_phys(pa, n)
            except GdbkdError as e:     # DumpError and its kinds (excluded, not in dump)
                raise MemoryFault(addr, str(e)) from None
        if self.physical:
            mm = memory_map(self.k)
            return self.k.reader._backend(mm.phys_to_virt(addr), n)
        if region.pgd is not None:
            # user pages through their linear-map alias: live, a user address would be
            # translated by whichever vCPU's TTBR0 is current, not this mm's
            mm = memory_map(self.k)
            if pa is None or not mm.is_ram(pa):
                raise MemoryFault(addr, f"user page at {addr:#x} is not RAM")
            return self.k.reader._backend(mm.phys_to_virt(pa), n)
        return self.k.reader._backend(addr, n)


def _read_runs(src, r, ps):
    """(address, length, [(base, bytes)...], pages skipped) for each run of region R: the
    run read whole, or page by page when some page of it cannot be read."""
    for a, n, pa in src.runs(r):
        blocks, skipped = _read_run(src, r, ps, a, n, pa)
        yield a, n, blocks, skipped


class _Failed:
    def __init__(self, exc):
        self.exc = exc


def _ahead(items, depth=2):
    """ITEMS (an iterator) produced by a worker thread up to DEPTH ahead of the caller: a
    dump's ``pread`` and decompression let other threads run, ``bytes.find`` does not,
    so reading the next megabyte overlaps scanning this one (a kernel-wide search of the
    1 GiB dump, inside gdb: 0.66 s -> 0.57 s). Only for a dump read in this process: the
    worker must not call into gdb. Ctrl-C stays the main thread's."""
    import queue
    import signal
    import threading
    q = queue.Queue(depth)
    stop = threading.Event()
    end = object()

    def work():
        try:
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        except (AttributeError, ValueError, OSError):
            pass
        try:
            for it in items:
                if stop.is_set():
                    return
                q.put(it)
            q.put(end)
        except BaseException as e:        # handed to the caller, raised there
            q.put(_Failed(e))

    t = threading.Thread(target=work, name="kd-search-reader", daemon=True)
    t.start()
    try:
        while True:
            it = q.get()
            if it is end:
                return
            if isinstance(it, _Failed):
                raise it.exc
            yield it
    finally:
        stop.set()
        while t.is_alive():               # unblock a worker waiting to put
            try:
                q.get(timeout=0.05)
            except queue.Empty:
                pass
        t.join()


def _read_run(src, r, ps, a, n, pa):
    """([(base, bytes)...], pages skipped) of one run: read whole, or page by page when
    some page of it cannot be read."""
    try:
        return [(a, src.read(r, a, n, pa))], 0
    except MemoryFault:
        pass
    blocks, skipped = [], 0
    p = a
    while p < a + n:
        m = min(ps - (p % ps), a + n - p)
        try:
            blocks.append((p, src.read(r, p, m, None if pa is None else pa + (p - a))))
        except MemoryFault:
            skipped += 1
        p += m
    return blocks, skipped


WORKERS = 2


def _parallel(src, regions, pattern, align, ps):
    """Yield (region, address, length, [hits], pages skipped) for every run of REGIONS in
    order, each run read and matched by one of :data:`WORKERS` threads: a dump whose
    reads keep no state (``concurrent_reads``: an ELF dump, one pread per piece) read
    in this process, and memmem, both let go of the GIL, so two cores scan at once
    (1 GiB inside gdb: ~0.2 s of wall time against ~0.25 s for one reader thread and
    the matching in the caller's). Only for patterns that cannot cross a run's end
    (no overlap). The workers never call into gdb; Ctrl-C stays the main thread's."""
    import signal
    import threading
    jobs = [(r, a, n, pa) for r in regions for a, n, pa in src.runs(r)]
    results = [None] * len(jobs)
    ready = threading.Condition()
    state = {"next": 0, "stop": False}

    def work():
        try:
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        except (AttributeError, ValueError, OSError):
            pass
        while True:
            with ready:
                j = state["next"]
                if state["stop"] or j >= len(jobs):
                    return
                state["next"] = j + 1
            r, a, n, pa = jobs[j]
            try:
                blocks, skipped = _read_run(src, r, ps, a, n, pa)
                found = [base + i for base, data in blocks for i in pattern.starts(data)
                         if (base + i) % align == 0]
                res = (found, skipped)
            except BaseException as e:        # handed to the caller, raised there
                res = _Failed(e)
            with ready:
                results[j] = res
                ready.notify_all()

    threads = [threading.Thread(target=work, name=f"kd-search-{i}", daemon=True)
               for i in range(min(WORKERS, len(jobs)))]
    for t in threads:
        t.start()
    try:
        for j, (r, a, n, _pa) in enumerate(jobs):
            with ready:
                while results[j] is None:
                    ready.wait()
                res, results[j] = results[j], True
            if isinstance(res, _Failed):
                raise res.exc
            yield r, a, n, res[0], res[1]
    finally:
        with ready:
            state["stop"] = True
        for t in threads:
            t.join()


def _sequential(src, regions, pattern, align, overlap, ps):
    """Yield (region, address, length, [hits], pages skipped) for every run of REGIONS in
    order, matched in the caller's thread (read one run ahead by a worker when a dump is
    read in this process: :func:`_ahead`). ``overlap`` bytes of each block are kept in
    front of the next one of the same region, so a string across a block end is found
    once."""
    for r in regions:
        prev_end, tail = None, b""
        runs = _read_runs(src, r, ps)
        if src.phys is not None:
            runs = _ahead(runs)
        try:
            for a, n, blocks, sk in runs:
                found = []
                for base, data in blocks:
                    lead = tail if overlap and prev_end == base else b""
                    buf = lead + data if lead else data
                    for i in pattern.starts(buf):
                        if i + pattern.length <= len(lead):
                            continue            # wholly in the previous block: found there
                        h = base - len(lead) + i
                        if h % align == 0:
                            found.append(h)
                    prev_end = base + len(data)
                    tail = buf[-overlap:] if overlap else b""
                yield r, a, n, found, sk
        finally:
            runs.close()


def search(k, pattern, regions, align=8, overlap=0, limit=10000, progress=None) -> dict:
    """{"hits": [address...], "skipped_pages": n, "scanned": bytes, "truncated": bool}.

    ``pattern`` is a :class:`Matcher` (:func:`value_pattern`, :func:`string_pattern`);
    hits are kept where ``address % align == 0``. ``overlap``: bytes of the previous
    block kept in front of the next one (a string's length - 1), so a match across a
    block boundary is found once. ``progress(done, total)`` is called per block.
    ``skipped_pages`` counts mapped pages that could not be read (not in the dump,
    excluded by makedumpfile); unmapped pages of a vmalloc area are not memory.
    Runs are scanned by :func:`_parallel` where it can be (no overlap, a dump whose reads
    may run at once), else by :func:`_sequential`; the first ``limit`` hits in address
    order are the same either way."""
    src = _Source(k, physical=bool(regions) and regions[0].kind == "physical")
    ps = src.page
    hits = []
    skipped = done = 0             # pages skipped; bytes read
    total = sum(r.end - r.start for r in regions)
    before, passed = {}, 0         # region -> bytes of the regions before it
    for r in regions:
        before[id(r)] = passed
        passed += r.end - r.start
    if not overlap and getattr(src.phys, "concurrent_reads", False):
        runs = _parallel(src, regions, pattern, align, ps)
    else:
        runs = _sequential(src, regions, pattern, align, overlap, ps)
    for r, a, n, found, sk in runs:
        skipped += sk
        if len(hits) + len(found) >= limit:
            runs.close()
            return {"hits": hits + found[:limit - len(hits)], "skipped_pages": skipped,
                    "scanned": done + n, "truncated": True}
        hits += found
        done += n
        if progress is not None:
            progress(before[id(r)] + (a + n - r.start), total)
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
