"""KASLR relocation of the vmlinux symbols and the vmlinux/kernel match check.

Live arm64 kernels (5.x–6.12): ``VBAR_EL1`` holds the runtime address of
``vectors``, so the KASLR offset is ``$VBAR - &vectors`` (QEMU names the
register ``VBAR``). Dumps carry it as VMCOREINFO ``KERNELOFFSET``.
The match check compares ``linux_banner`` in memory with the vmlinux file.
"""

import gdb

from .types import read_bytes

__all__ = ["current_offset", "relocate", "live_vbar_offset", "check_banner", "vmlinux_path"]

_offset = 0


_link_text = {}


def _elf_symbol(path: str, name: str):
    key = (path, name)
    if key not in _link_text:
        from elftools.elf.elffile import ELFFile
        with open(path, "rb") as f:
            st = ELFFile(f).get_section_by_name(".symtab")
            syms = st.get_symbol_by_name(name) if st else None
            _link_text[key] = syms[0]["st_value"] if syms else None
    return _link_text[key]


def current_offset() -> int:
    """The offset the vmlinux symbols are loaded at now: gdb's &_text minus _text's
    link address in the file (whoever loaded them: gdbkd, `symbol-file -o`, the user)."""
    try:
        link = _elf_symbol(vmlinux_path(), "_text")
        if link is not None:
            return int(gdb.parse_and_eval("(unsigned long)&_text")) - link
    except (gdb.error, OSError):
        pass
    return _offset


def vmlinux_path() -> str:
    objs = [o for o in gdb.objfiles() if o.filename and not o.filename.endswith(".ko")]
    if not objs:
        raise gdb.GdbError("no vmlinux loaded (gdb-multiarch VMLINUX, or `file VMLINUX`)")
    return objs[0].filename


KASLR_ALIGN = 2 << 20   # arm64 KASLR moves the image in 2 MiB steps (MIN_KIMG_ALIGN)


def live_vbar_offset():
    """KASLR offset relative to the currently loaded symbols, from some CPU's $VBAR.

    With KPTI (on when KASLR is, on cores without E0PD) a CPU in user mode or in the
    entry trampoline has VBAR_EL1 = the trampoline vectors, not ``vectors``: such a
    value gives an offset that is not a multiple of 2 MiB and is skipped. Returns
    None if no CPU shows the kernel's own vectors."""
    vectors = int(gdb.parse_and_eval("(unsigned long)&vectors"))
    sel = gdb.selected_thread()
    found = None
    try:
        threads = sorted(gdb.selected_inferior().threads(), key=lambda t: t.num)
        for t in [sel] + [t for t in threads if t != sel]:
            if t is None:
                continue
            t.switch()
            try:
                vbar = int(gdb.parse_and_eval("$VBAR")) & 0xFFFFFFFFFFFFFFFF
            except gdb.error:
                continue
            delta = (vbar - vectors) & 0xFFFFFFFFFFFFFFFF
            if delta >= 1 << 63:
                delta -= 1 << 64
            if vbar and delta % KASLR_ALIGN == 0:
                found = delta
                break
    finally:
        if sel is not None and sel.is_valid():
            sel.switch()
    return found


def relocate(offset: int):
    """Reload the vmlinux symbols at ``offset`` from the link address (absolute)."""
    global _offset
    if offset == current_offset():
        _offset = offset
        return False
    path = vmlinux_path()
    gdb.execute(f"symbol-file -o {offset:#x} {path}", to_string=True)
    _offset = offset
    return True


def _file_banner(path: str):
    from elftools.elf.elffile import ELFFile
    with open(path, "rb") as f:
        elf = ELFFile(f)
        symtab = elf.get_section_by_name(".symtab")
        syms = symtab.get_symbol_by_name("linux_banner") if symtab else None
        if not syms:
            return None
        addr = syms[0]["st_value"]
        for sec in elf.iter_sections():
            if sec["sh_type"] != "SHT_NOBITS" and sec["sh_addr"] <= addr < sec["sh_addr"] + sec["sh_size"]:
                f.seek(sec["sh_offset"] + addr - sec["sh_addr"])
                return f.read(256).split(b"\0", 1)[0]
    return None


def check_banner():
    """Return (ok, memory_banner, file_banner)."""
    addr = int(gdb.parse_and_eval("(unsigned long)&linux_banner"))
    try:
        mem = read_bytes(addr, 256).split(b"\0", 1)[0]
    except gdb.MemoryError:
        mem = b""
    fb = _file_banner(vmlinux_path())
    return (fb is None or mem == fb), mem, fb
