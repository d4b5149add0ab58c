"""One memory reader for everything that walks kernel objects, with a per-stop block cache.

A kd command that walks 10,000 tasks used to pay one remote-protocol round trip
per object (~120 µs to the dump server or QEMU's gdbstub): 40,000 round trips
for one ``kd ps``. A :class:`Reader` serves ``read(addr, n)`` from aligned
blocks kept until the target moves (:meth:`Reader.invalidate`), fetching a
missing block and ``readahead`` blocks after it in one backend call, so a walk
over neighbouring objects (task_structs in one slab, a stack, a printk ring)
costs one round trip per ``block * (1 + readahead)`` bytes.

Backends implement ``_fetch(addr, n) -> bytes`` and raise :class:`MemoryFault`:

* :class:`DumpReader` — a dump opened in this process (``gdbkd.target``
  ``Dump``: the dump format + the arm64 page-table walker). A read is a cache
  lookup or a page translation, never a round trip. Used by the dump server and,
  under ``gdbkd core``, by kd inside gdb.
* ``GdbReader`` (gdbkd/kernel/memory.py) — the gdb inferior: a live QEMU gdbstub,
  a plain ``target remote``, a core file.

Blocks are aligned to ``block`` (4 KiB, the smallest arm64 page), so a block is
wholly mapped or wholly not; a block that cannot be read is remembered as a
fault (until the next invalidation) and reported with the backend's reason.
Addresses in the user half (bit 63 clear) are not cached by backends whose
translation depends on the CPU selected (live: each vCPU has its own TTBR0).
Nothing here imports gdb.
"""

from ..errors import GdbkdError

__all__ = ["MemoryFault", "Reader", "DumpReader", "BytesReader"]

M64 = (1 << 64) - 1


class MemoryFault(GdbkdError):
    """Memory at ``addr`` cannot be read; ``str()`` says why (unmapped, excluded, corrupt).
    ``cause``: the backend's own exception it stands for, when there is one (a dump's
    ``PageExcluded``, ``AddressNotMapped``...), for callers that tell the kinds apart."""

    def __init__(self, addr: int, reason: str = "", cause=None):
        self.addr = addr & M64
        self.reason = reason or "cannot read memory"
        self.cause = cause
        super().__init__(f"cannot read {self.addr:#x}: {self.reason}" if reason.find(f"{self.addr:#x}") < 0
                         else reason)


class Reader:
    """Cached reads over a backend; subclasses implement :meth:`_fetch`."""

    block = 4096
    readahead = 0            # extra blocks fetched after a missing one
    cache_user = True        # cache user-half addresses too (not for live CPUs)
    max_blocks = 1 << 16     # the cache starts over past this many blocks (256 MiB)

    def __init__(self, cache: bool = True):
        self.cache = cache
        self._blocks = {}            # block number -> bytes, or MemoryFault
        self.generation = 0
        self.fetches = 0             # backend calls (for `kd reader` and the benchmarks)
        self.fetched_bytes = 0

    # -- backend ------------------------------------------------------------------------
    def _fetch(self, addr: int, n: int) -> bytes:
        raise NotImplementedError

    def _backend(self, addr, n):
        self.fetches += 1
        self.fetched_bytes += n
        return self._fetch(addr, n)

    # -- cache --------------------------------------------------------------------------
    def invalidate(self):
        """Forget every cached block (the target ran, memory or registers were written,
        symbols changed)."""
        self._blocks.clear()
        self.generation += 1

    def _fill(self, first: int, last: int):
        """Fetch blocks first..last (inclusive) that are not cached yet, plus read-ahead."""
        blocks = self._blocks
        if len(blocks) > self.max_blocks:
            blocks.clear()          # a walk over more memory than the cache holds
        bs = self.block
        b = first
        while b <= last:
            if b in blocks:
                b += 1
                continue
            end = b
            while end < last and end + 1 not in blocks:
                end += 1
            ra = 0
            while ra < self.readahead and end + 1 not in blocks and (end + 1) * bs <= M64:
                end += 1
                ra += 1
            try:
                data = self._backend(b * bs, (end - b + 1) * bs)
                for i in range(end - b + 1):
                    blocks[b + i] = data[i * bs:(i + 1) * bs]
            except MemoryFault:
                # some block of the range is bad: fetch each on its own to find which
                for i in range(b, end + 1):
                    if i in blocks:
                        continue
                    try:
                        blocks[i] = self._backend(i * bs, bs)
                    except MemoryFault as e:
                        blocks[i] = e
                        if i > last:         # read-ahead past what was asked: stop there
                            break
            b = end + 1

    def read(self, addr: int, n: int) -> bytes:
        """``n`` bytes at ``addr``; raises :class:`MemoryFault` naming the first bad address."""
        addr &= M64
        if n <= 0:
            return b""
        if not self.cache or (not self.cache_user and not addr >> 63):
            return self._backend(addr, n)
        bs = self.block
        first, last = addr // bs, (addr + n - 1) // bs
        blocks = self._blocks
        if first == last:
            blk = blocks.get(first)
            if blk is None:
                self._fill(first, last)
                blk = blocks[first]
            if isinstance(blk, MemoryFault):
                raise MemoryFault(addr, blk.reason, blk.cause)
            o = addr - first * bs
            return blk[o:o + n]
        if any(b not in blocks for b in range(first, last + 1)):
            self._fill(first, last)
        out = []
        for b in range(first, last + 1):
            blk = blocks[b]
            if isinstance(blk, MemoryFault):
                raise MemoryFault(max(addr, b * bs), blk.reason, blk.cause)
            out.append(blk)
        o = addr - first * bs
        return b"".join(out)[o:o + n]

    def prefetch(self, addr: int, n: int):
        """Bring ``[addr, addr + n)`` into the cache in as few backend calls as possible
        (a walk that knows its range: a stack, a slab, a ring buffer). Faults are kept
        for the reads that follow."""
        if self.cache and n > 0 and (self.cache_user or addr >> 63):
            self._fill((addr & M64) // self.block, ((addr & M64) + n - 1) // self.block)

    def try_read(self, addr: int, n: int):
        """The bytes, or None when they cannot be read."""
        try:
            return self.read(addr, n)
        except MemoryFault:
            return None

    # -- scalars ------------------------------------------------------------------------
    def u64(self, addr: int) -> int:
        return int.from_bytes(self.read(addr, 8), "little")

    def u32(self, addr: int) -> int:
        return int.from_bytes(self.read(addr, 4), "little")

    def s32(self, addr: int) -> int:
        return int.from_bytes(self.read(addr, 4), "little", signed=True)

    def cstring(self, addr: int, maxlen: int = 256) -> bytes:
        """A NUL-terminated string (at most ``maxlen`` bytes; stops at an unreadable page)."""
        out = b""
        while len(out) < maxlen:
            n = min(maxlen - len(out), self.block - ((addr + len(out)) % self.block))
            try:
                chunk = self.read(addr + len(out), n)
            except MemoryFault:
                if out:
                    break
                raise
            i = chunk.find(b"\0")
            if i >= 0:
                return out + chunk[:i]
            out += chunk
        return out

    def stats(self) -> dict:
        return {"backend": type(self).__name__, "cache": self.cache, "blocks": len(self._blocks),
                "fetches": self.fetches, "fetched_bytes": self.fetched_bytes,
                "generation": self.generation}


class DumpReader(Reader):
    """Kernel virtual memory of a dump opened in this process (read-only).

    ``dump`` is a ``gdbkd.target.Dump``. Code pointers signed with pointer
    auth are served stripped when the dump server strips them (``pac``: a
    ``gdbkd.arm64.pac.PacStripper``), so kd sees the same bytes in-process as
    through the server."""

    readahead = 0
    # a dump read in this process costs a page walk and a pread: cache little (a walk over
    # 10,000 task stacks would otherwise keep 160 MB of blocks)
    max_blocks = 4096

    def __init__(self, dump, pac=None, cache: bool = True):
        super().__init__(cache)
        self.dump = dump
        self.pac = pac if pac is not None and pac.enabled else None
        #: the dump's ``direct(pa, n)`` (an ELF file's bytes in one pread), used with the
        #: cache on and no pointer-auth stripping
        self._direct = getattr(getattr(dump, "phys", None), "direct", None) \
            if self.pac is None else None
        self.direct_reads = 0

    def read(self, addr: int, n: int) -> bytes:
        """As :meth:`Reader.read`; a range the dump holds contiguously (an ELF dump, inside
        the image or the linear map or one page) is read from the file directly: a block
        cache in front of it would only add work. Anything else, and every failure (for
        its reason), goes through the cache."""
        direct = self._direct
        if direct is not None and self.cache and n > 0:
            try:
                pa = self.dump.mmu.contiguous_pa(addr, n)
            except GdbkdError:
                pa = None
            if pa is not None:
                data = direct(pa, n)
                if data is not None:
                    self.direct_reads += 1
                    return data
        return super().read(addr, n)

    def stats(self) -> dict:
        return {**super().stats(), "direct_reads": self.direct_reads}

    def _fetch(self, addr, n):
        out = []
        ps = self.dump.page_size
        a, left = addr, n
        while left > 0:
            k = min(left, ps - (a & (ps - 1)))
            try:
                out.append(self.dump.read(a, k))
            except MemoryFault:
                raise               # already says which address and why
            except GdbkdError as e:
                raise MemoryFault(a, str(e), e.with_traceback(None)) from None
            a += k
            left -= k
        data = b"".join(out)
        if self.pac is not None:
            data = self.pac.strip_bytes(addr, data)
        return data


class BytesReader(Reader):
    """Memory recorded as ``{address: bytes}`` regions (unit tests over real recorded
    memory, and memory handed over by another process)."""

    def __init__(self, regions: dict, cache: bool = True):
        super().__init__(cache)
        self.regions = sorted(regions.items())

    def _fetch(self, addr, n):
        out = bytearray()
        a = addr
        while len(out) < n:
            for base, data in self.regions:
                if base <= a < base + len(data):
                    take = data[a - base:a - base + n - len(out)]
                    out += take
                    a += len(take)
                    break
            else:
                raise MemoryFault(a, "not in the recorded memory")
        return bytes(out)


class RamReader(DumpReader):
    """Kernel virtual memory of a stopped live guest from its RAM shared with QEMU
    (gdbkd/dump/guestram.py), translated with the kernel's own page tables by the
    arm64 walker, as for a dump. ``vmcoreinfo()`` returns the running kernel's
    VMCOREINFO text (read through the slow path: a few hundred bytes); it is asked
    again, and the walker rebuilt, after every invalidation, because the guest may
    have changed its page tables (or rebooted with another KASLR offset) meanwhile."""

    def __init__(self, ram, vmcoreinfo, osrelease=None, cache: bool = True):
        super().__init__(None, None, cache)
        self.ram = ram
        self._info_source = vmcoreinfo
        self.osrelease = osrelease

    def _walker(self):
        if self.dump is None:
            from ..arm64.mmu import mmu_from_vmcoreinfo
            from ..dump.vmcoreinfo import parse_vmcoreinfo
            info = parse_vmcoreinfo(self._info_source())
            if not info:
                raise MemoryFault(0, "the running kernel's VMCOREINFO is not readable")
            try:
                self.dump = mmu_from_vmcoreinfo(self.ram, info, None,
                                                self.osrelease or info.get("OSRELEASE"))
            except GdbkdError as e:
                raise MemoryFault(0, f"cannot set up the page-table walk: {e}") from None
        return self.dump

    def _fetch(self, addr, n):
        self._walker()
        return super()._fetch(addr, n)

    def invalidate(self):
        super().invalidate()
        self.dump = None
