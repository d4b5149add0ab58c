"""``gdbkd convert``: rewrite a dump as an ELF core any gdb opens with the kernel's view.

The output has *virtual* PT_LOADs (what the page tables map, not physical RAM):

- the kernel image ``[_text, _end)`` at its run-time (KASLR) address;
- the linear map of every dumped RAM page;
- what swapper_pg_dir maps in the module area, the vmalloc area (vmalloc'd task
  stacks, module memory, vmap) and vmemmap (struct pages) — only pages that
  are RAM in the dump; device mappings (ioremap) are left out;

and notes: one NT_PRSTATUS per task (``pr_pid`` = the thread id the stub uses,
see :mod:`gdbkd.target.dump`; registers the stub would serve, unknown ones
as 0), NT_FPREGSET for tasks that were running, VMCOREINFO, and NT_AUXV with
``AT_ENTRY`` = the kernel's run-time entry point. The vmlinux is ET_DYN, so gdb
relocates it by ``AT_ENTRY - e_entry`` = the KASLR offset by itself:
``gdb-multiarch VMLINUX CORE`` then shows symbols, globals and backtraces
without ``symbol-file -o``.

Pages the dump excluded (makedumpfile -d) are left out of the segments, so gdb
reports them unreadable instead of reading zeros. The file is written under a
temporary name in the output directory and renamed when complete.
"""

import struct
import time
from pathlib import Path

from ..cache import atomic_write
from ..errors import GdbkdError
from ..dump.base import NT_PRSTATUS, NT_FPREGSET
from ..dump.vmcoreinfo import vmci_number
from ..arm64.mmu import M64
from ..arm64.regs import encode_prstatus, encode_fpregset

__all__ = ["convert", "core_segments"]

EM_AARCH64 = 183
PT_LOAD, PT_NOTE = 1, 4
NT_AUXV = 6
AT_ENTRY, AT_NULL = 9, 0


def _note(name: bytes, ntype: int, desc: bytes) -> bytes:
    name0 = name + b"\0"
    out = struct.pack("<III", len(name0), len(desc), ntype)
    out += name0 + b"\0" * ((-len(name0)) % 4)
    out += desc + b"\0" * ((-len(desc)) % 4)
    return out


def core_segments(dump):
    """[(va, pa, size)] of dumped pages mapped in the kernel's view, merged where contiguous."""
    mmu = dump.mmu
    phys = dump.phys
    ps = dump.page_size
    info = dump.vmcoreinfo
    segs = []

    def add(va, pa, size):
        # split into pages present in the dump; merge runs
        for off in range(0, size, ps):
            v, p = va + off, pa + off
            if phys.page_state(p) != "ok":
                continue
            if segs and segs[-1][0] + segs[-1][2] == v and segs[-1][1] + segs[-1][2] == p:
                segs[-1][2] += ps
            else:
                segs.append([v, p, ps])

    covered = []
    img = mmu.image_range
    if img is None and dump.offsets:
        s = dump.offsets["symbols"]
        img = (s["_text"] + dump.kaslr_offset, s["_end"] + dump.kaslr_offset)
    if img:
        start = img[0] & ~(ps - 1)
        end = (img[1] + ps - 1) & ~(ps - 1)
        for va, pa, size in mmu.mappings(start, end):
            lo, hi = max(va, start), min(va + size, end)
            add(lo, pa + (lo - va), hi - lo)
        covered.append((start, end))
    if mmu.linear_range:
        lo, hi = mmu.linear_range
        for va, pa, size in mmu.mappings(lo, hi):
            a, b = max(va, lo), min(va + size, hi)
            add(a, pa + (a - va), b - a)
        covered.append((lo, hi))
    areas = []
    for a, b in (("MODULES_VADDR", "MODULES_END"), ("VMALLOC_START", "VMALLOC_END"),
                 ("VMEMMAP_START", "VMEMMAP_END")):
        s, e = vmci_number(info, a), vmci_number(info, b)
        if s is not None and e is not None and s < e:
            areas.append((s & M64, e & M64))
    for s, e in areas:
        for va, pa, size in mmu.mappings(s, e):
            a, b = max(va, s), min(va + size, e)
            if any(c0 <= a and b <= c1 for c0, c1 in covered):
                continue
            # cut out covered ranges (the image lies inside the vmalloc area)
            pieces = [(a, b)]
            for c0, c1 in covered:
                nxt = []
                for x, y in pieces:
                    if y <= c0 or x >= c1:
                        nxt.append((x, y))
                    else:
                        if x < c0:
                            nxt.append((x, c0))
                        if y > c1:
                            nxt.append((c1, y))
                pieces = nxt
            for x, y in pieces:
                add(x, pa + (x - va), y - x)
    segs.sort()
    return [tuple(s) for s in segs]


def convert(dump, vmlinux, out, progress=None, written=None) -> dict:
    """Write ``out`` (an ELF core with the kernel's virtual view) from ``dump`` (path or Dump).
    PROGRESS(message) is told what is written, WRITTEN(done, total) the bytes so far."""
    from ..target.dump import Dump
    own = False
    if not isinstance(dump, Dump):
        dump = Dump(dump, vmlinux)
        own = True
    elif dump.offsets is None:
        dump.attach_vmlinux(vmlinux)
    t0 = time.monotonic()
    try:
        threads = dump.threads()
        segs = core_segments(dump)
        if not segs:
            raise GdbkdError("nothing to convert: no kernel memory found in the dump")
        notes = bytearray()
        for th in threads:
            notes += _note(b"CORE", NT_PRSTATUS, encode_prstatus(th.tid, th.regs))
            if th.active_cpu >= 0 and th.regs[34] is not None:
                notes += _note(b"CORE", NT_FPREGSET, encode_fpregset(th.regs))
        entry = _vmlinux_entry(dump.vmlinux)
        if entry is not None:
            notes += _note(b"CORE", NT_AUXV, struct.pack("<QQQQ", AT_ENTRY,
                                                         (entry + dump.kaslr_offset) & M64,
                                                         AT_NULL, 0))
        raw = dump.vmcoreinfo_raw        # the note's, or the text found in RAM: a note either way
        if raw:
            notes += _note(b"VMCOREINFO", 0, raw)
        nph = 1 + len(segs)
        ehsize, phsize = 64, 56
        note_off = ehsize + nph * phsize
        data_off = (note_off + len(notes) + 4095) & ~4095
        phdrs = [struct.pack("<IIQQQQQQ", PT_NOTE, 0, note_off, 0, 0, len(notes), 0, 4)]
        off = data_off
        for va, pa, size in segs:
            phdrs.append(struct.pack("<IIQQQQQQ", PT_LOAD, 7, off, va, pa, size, size, dump.page_size))
            off += size
        ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + b"\0" * 8
        ehdr = ident + struct.pack("<HHIQQQIHHHHHH", 4, EM_AARCH64, 1, 0, ehsize, 0, 0,
                                   ehsize, phsize, nph, 64, 0, 0)
        out = Path(out)
        total = sum(s[2] for s in segs)
        if progress:
            progress(f"writing {out} ({len(threads)} threads, {len(segs)} segments, "
                     f"{total >> 20} MiB)")
        with atomic_write(out) as f:
            f.write(ehdr)
            f.write(b"".join(phdrs))
            f.write(notes)
            f.write(b"\0" * (data_off - note_off - len(notes)))
            chunk = 1 << 20
            all_done = 0
            for va, pa, size in segs:
                done = 0
                while done < size:
                    n = min(chunk, size - done)
                    f.write(dump.phys.read_phys(pa + done, n))
                    done += n
                    all_done += n
                    if written:
                        written(all_done, total)
        return {"threads": len(threads), "segments": len(segs), "bytes": total,
                "seconds": time.monotonic() - t0, "kaslr_offset": dump.kaslr_offset}
    finally:
        if own:
            dump.close()


def _vmlinux_entry(vmlinux):
    try:
        with open(vmlinux, "rb") as f:
            h = f.read(64)
        if h[:4] != b"\x7fELF":
            return None
        return struct.unpack_from("<Q", h, 24)[0]
    except OSError:
        return None
