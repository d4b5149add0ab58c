"""VMCOREINFO text → dict, plus typed accessors for the entries gdbkd uses.

The note is ``KEY=VALUE`` lines (kernel/crash_core.c, arch/*/kernel/crash_core.c):
``OSRELEASE``, ``BUILD-ID`` (5.9+), ``PAGESIZE``, ``SYMBOL(name)`` (runtime,
i.e. KASLR-relocated, addresses in hex without 0x), ``NUMBER(name)`` (decimal,
or 0x-hex on arm64 for addresses), ``KERNELOFFSET`` (hex without 0x),
``OFFSET(struct.member)``, ``SIZE(struct)``, ``LENGTH(...)``.
"""

from .base import DumpError

__all__ = ["parse_vmcoreinfo", "vmci_symbol", "vmci_number", "vmci_hex", "vmci_int"]


#: where VMCOREINFO usually comes from; any other source is said in the report
NOTE_SOURCE = "the dump's VMCOREINFO note"


def parse_vmcoreinfo(raw) -> dict:
    if raw is None:
        return {}
    if isinstance(raw, (bytes, bytearray)):
        raw = bytes(raw).split(b"\0")[0].decode("ascii", "replace")
    out = {}
    for line in raw.splitlines():
        k, sep, v = line.partition("=")
        if sep:
            out[k.strip()] = v.strip()
    return out


def vmci_hex(info: dict, key: str, default=None):
    v = info.get(key)
    if v is None:
        return default
    try:
        return int(v, 16)
    except ValueError:
        raise DumpError(f"corrupt VMCOREINFO: {key}={v[:40]!r} is not hex")


def vmci_int(info: dict, key: str, default=None):
    """A plain decimal entry (``PAGESIZE``, ``SIZE(...)``, ``OFFSET(...)``)."""
    v = info.get(key)
    if v is None:
        return default
    try:
        return int(v, 10)
    except ValueError:
        raise DumpError(f"corrupt VMCOREINFO: {key}={v[:40]!r} is not a decimal number")


def vmci_symbol(info: dict, name: str, default=None):
    return vmci_hex(info, f"SYMBOL({name})", default)


def vmci_number(info: dict, name: str, default=None):
    v = info.get(f"NUMBER({name})")
    if v is None:
        return default
    try:
        return int(v, 0) if v.lower().startswith(("0x", "-0x")) else int(v)
    except ValueError:
        raise DumpError(f"corrupt VMCOREINFO: NUMBER({name})={v[:40]!r} is not a number")
