"""VMCOREINFO from the dump's RAM, for dumps written without the note.

QEMU's ``dump-guest-memory`` carries VMCOREINFO only when the guest's
``qemu_fw_cfg`` driver gave it to QEMU; the course's 5.0 kernel has no such
driver. The kernel builds the text all the same, at boot (kernel/crash_core.c,
``crash_save_vmcoreinfo_init``): ``OSRELEASE=…\\nPAGESIZE=…\\nSYMBOL(init_uts_ns)=…``
in a zeroed page that ``vmcoreinfo_data`` points to (the page and its pointer
since v4.13, "kexec: move vmcoreinfo out of the kernel's .bss section"), and
again inside the ELF note at ``vmcoreinfo_note``.

:func:`find_in_ram` looks for it two ways, the first that works wins:

1. **Through the vmlinux's symbols**, when a vmlinux is given: the image's
   physical placement is found by its ``linux_banner`` (an arm64 Image sits at a
   2 MiB-aligned address + ``TEXT_OFFSET``, so one small read per 2 MiB of RAM
   finds it); from there ``vmcoreinfo_data`` (a linear-map pointer) and
   ``memstart_addr`` (PHYS_OFFSET) are read at their physical addresses.
2. **By scanning** the RAM for ``OSRELEASE=`` and taking the first text that
   parses with a PAGESIZE, SYMBOL(init_uts_ns) and NUMBER(kimage_voffset).

Either way the text must hold those three entries. The physical address a scan
found is cached per dump file (its device, inode, size and mtime), so the next
open reads one page. The result says where the text came from; ``Dump`` shows it in
``gdbkd core --check`` and the report.
"""

import json
import os

from .base import DumpError

__all__ = ["find_in_ram", "RamVmcoreinfo", "REQUIRED"]

#: entries a real arm64 VMCOREINFO has (crash_core.c and arch/arm64/kernel/crash_core.c)
REQUIRED = (b"PAGESIZE=", b"SYMBOL(init_uts_ns)=", b"NUMBER(kimage_voffset)=")
MAX_TEXT = 4096                      # VMCOREINFO_BYTES: one page
SZ_2M = 2 << 20
SCAN_CHUNK = 8 << 20


class RamVmcoreinfo:
    """VMCOREINFO text found in RAM: ``raw`` (bytes), ``paddr``, ``how`` (one line)."""

    def __init__(self, raw: bytes, paddr: int, how: str):
        self.raw = raw
        self.paddr = paddr
        self.how = how

    def __str__(self):
        return f"the dump's RAM at physical {self.paddr:#x} ({self.how})"


def _text_at(phys, paddr):
    """The VMCOREINFO text at ``paddr``, or None when what is there is not one."""
    try:
        data = phys.read_phys(paddr, MAX_TEXT)
    except DumpError:
        try:                 # the text may end before a page the dump lacks
            data = phys.read_phys(paddr, MAX_TEXT - (paddr % MAX_TEXT))
        except DumpError:
            return None
    raw = data.split(b"\0")[0]
    if not raw.startswith(b"OSRELEASE=") or not all(b"\n" + k in raw for k in REQUIRED):
        return None
    return raw


def _u64(phys, paddr):
    try:
        return int.from_bytes(phys.read_phys(paddr, 8), "little")
    except DumpError:
        return None


def _via_symbols(phys, vmlinux):
    from ..elfsyms import symbol_values, file_bytes_at
    syms = symbol_values(vmlinux, [b"_text", b"linux_banner", b"vmcoreinfo_data", b"memstart_addr"])
    if len(syms) < 4:
        return None
    banner = file_bytes_at(vmlinux, syms["linux_banner"], 64)
    if not banner:
        return None
    text = syms["_text"]
    text_offset = text % SZ_2M
    for start, end in phys.ranges:
        base = (start + SZ_2M - 1) // SZ_2M * SZ_2M - SZ_2M
        while base < end:
            img = base + text_offset
            base += SZ_2M
            if img < start:
                continue
            try:
                if phys.read_phys(img + syms["linux_banner"] - text, len(banner)) != banner:
                    continue
            except DumpError:
                continue
            ptr = _u64(phys, img + syms["vmcoreinfo_data"] - text)
            memstart = _u64(phys, img + syms["memstart_addr"] - text)
            if not ptr or memstart is None:
                continue
            # the pointer is a linear-map address: PAGE_OFFSET is ~0 << (VA_BITS - 1)
            # before v5.4 (14c127c957c1 "arm64: mm: Flip kernel VA space") and ~0 << VA_BITS
            # after; try each VA size and keep the one whose target is the text
            for bits in range(36, 53):
                page_offset = (~0 << bits) & (2 ** 64 - 1)
                if ptr < page_offset:
                    continue
                # memstart_addr is an s64, below zero when KASLR moved the linear map
                pa = (ptr - page_offset + memstart) & (2 ** 64 - 1)
                raw = _text_at(phys, pa)
                if raw is not None:
                    return RamVmcoreinfo(raw, pa, f"vmcoreinfo_data, image at physical {img:#x}")
    return None


def _scan(phys):
    needle = b"OSRELEASE="
    for start, end in phys.ranges:
        pa = start
        while pa < end:
            n = min(SCAN_CHUNK, end - pa)
            try:
                chunk = phys.read_phys(pa, n)
            except DumpError:          # a page left out: go page by page through this chunk
                chunk = None
            if chunk is None:
                for p in range(pa, pa + n, 4096):
                    try:
                        page = phys.read_phys(p, 4096)
                    except DumpError:
                        continue
                    hit = _first_in(phys, page, p, needle)
                    if hit:
                        return hit
            else:
                hit = _first_in(phys, chunk, pa, needle)
                if hit:
                    return hit
            pa += n
    return None


def _first_in(phys, data, base, needle):
    i = data.find(needle)
    while i >= 0:
        raw = _text_at(phys, base + i)
        if raw is not None:
            return RamVmcoreinfo(raw, base + i, "scan for OSRELEASE=")
        i = data.find(needle, i + 1)
    return None


def _cache_file(phys):
    from ..cache import cache_root, key_of
    try:
        st = os.stat(phys.path.split()[0])
    except OSError:
        return None
    return cache_root() / "ram-vmcoreinfo" / f"{key_of(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)}.json"


def find_in_ram(phys, vmlinux=None):
    """The kernel's VMCOREINFO text in the RAM of ``phys`` (a PhysicalDump), as a
    :class:`RamVmcoreinfo`, or None (see the module docstring). Only a scan's answer
    is cached: the way through the symbols costs a few hundred small reads."""
    found = _via_symbols(phys, vmlinux) if vmlinux else None
    if found is not None:
        return found
    cache = _cache_file(phys)
    if cache is not None and cache.is_file():
        try:
            paddr = json.loads(cache.read_text())["paddr"]
            raw = _text_at(phys, paddr)
            if raw is not None:
                return RamVmcoreinfo(raw, paddr, "scan for OSRELEASE=, remembered")
        except (ValueError, KeyError, TypeError):
            pass
    found = _scan(phys)
    if found is not None and cache is not None:
        from ..cache import atomic_write
        with atomic_write(cache, "w") as f:
            json.dump({"paddr": found.paddr}, f)
    return found
