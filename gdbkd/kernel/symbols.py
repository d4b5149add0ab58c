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
        from ..elfsyms import symbol_values
        _link_text[key] = symbol_values(path, [name]).get(name)
    return _link_text[key]


def current_offset() -> int:
    """The offset the vmlinux symbols are loaded at now: gdb's &_text minus _text's
    link address in the file (whoever loaded them: gdbkd, `symbol-file -o`, the user)."""
    from ..errors import GdbkdError
    try:
        link = _elf_symbol(vmlinux_path(), "_text")
        if link is not None:
            return int(gdb.parse_and_eval("(unsigned long)&_text")) - link
    except (gdb.error, OSError, GdbkdError):
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
    from ..elfsyms import file_bytes_at
    addr = _elf_symbol(path, "linux_banner")
    if addr is None:
        return None
    data = file_bytes_at(path, addr, 256)
    return data.split(b"\0", 1)[0] if data is not None else None


def check_banner():
    """Return (ok, memory_banner, file_banner)."""
    addr = int(gdb.parse_and_eval("(unsigned long)&linux_banner"))
    try:
        mem = read_bytes(addr, 256).split(b"\0", 1)[0]
    except gdb.MemoryError:
        mem = b""
    fb = _file_banner(vmlinux_path())
    return (fb is None or mem == fb), mem, fb
