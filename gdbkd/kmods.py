"""Symbol files for loaded kernel modules, without gdb.

A module's .ko is found by name under module directories, then copied with
every section moved to where the kernel put it (``objcopy
--change-section-address``), so a plain ``add-symbol-file COPY`` gives gdb 13
the right addresses (its ``add-symbol-file -s`` mis-relocates a module's DWARF).
Used by kd inside gdb (gdbkd/kernel/modules.py) and by ``gdbkd core``, which
plans the module symbols from the dump before gdb starts
(:func:`modules_in_dump`), so that gdb needs no type lookup for them.

``struct module`` layouts (read through the offsets gdb reported for this
vmlinux, gdbkd/postmortem/offsets.py):

- list of modules: global ``modules``, entries linked by ``module.list``;
- base: ``core_layout.base`` up to v6.3, ``mem[MOD_TEXT].base`` from v6.4
  (commit ac3b43283923, "module: replace module_layout with module_memory");
- sections: ``sect_attrs->nsections`` and ``attrs[]``; since v5.8 (commit
  ed66f991bb19) an attr is ``{struct bin_attribute battr; unsigned long
  address;}`` with the name in ``battr.attr.name``, before that ``{struct
  module_attribute mattr; char *name; unsigned long address;}``.
"""

import hashlib
import os
import subprocess
import tempfile
from pathlib import Path

from .errors import GdbkdError

__all__ = ["find_ko", "relocated_copy", "symbol_file", "modules_in_dump"]

_ko_index = {}       # directory -> {file name: first path under it}


def _kos_under(d) -> dict:
    """Every .ko under D by file name, walked once per directory and process (a
    distribution's modules tree has thousands of files)."""
    key = str(d)
    if key not in _ko_index:
        found = {}
        for root, dirs, files in os.walk(key):
            dirs.sort()
            for fn in files:
                if fn.endswith(".ko") and fn not in found:
                    found[fn] = os.path.join(root, fn)
        _ko_index[key] = found
    return _ko_index[key]


def find_ko(name: str, dirs):
    """The .ko of module NAME (``-`` and ``_`` alike) under DIRS (directories or .ko
    files), or None."""
    cands = [f"{name}.ko", f"{name.replace('_', '-')}.ko"]
    for d in dirs:
        d = Path(d)
        if d.is_file() and d.name in cands:
            return d
        if d.is_dir():
            kos = _kos_under(d)
            for c in cands:
                if c in kos:
                    return Path(kos[c])
    return None


def relocated_copy(ko: Path, sections: dict) -> Path:
    """KO with its sections at SECTIONS' addresses, cached in a private temp directory
    by content and addresses (written to a temp name and renamed)."""
    ko = Path(ko)
    key = hashlib.sha256(ko.read_bytes() + repr(sorted(sections.items())).encode()).hexdigest()[:16]
    out = Path(tempfile.gettempdir()) / f"gdbkd-ko-{os.getuid()}" / f"{ko.stem}-{key}.ko"
    if out.exists():
        return out
    out.parent.mkdir(mode=0o700, exist_ok=True)
    r = subprocess.run(["aarch64-linux-gnu-objdump", "-h", str(ko)], capture_output=True, text=True)
    present = set()
    for line in r.stdout.splitlines():
        parts = line.split()
        if len(parts) > 2 and parts[0].isdigit():
            present.add(parts[1])
    args = []
    for s, addr in sections.items():
        if s in present:
            args += ["--change-section-address", f"{s}={addr:#x}"]
    tmp = out.with_suffix(f".tmp{os.getpid()}")
    r = subprocess.run(["aarch64-linux-gnu-objcopy", *args, str(ko), str(tmp)], capture_output=True, text=True)
    if r.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise GdbkdError(f"objcopy failed on {ko}: {r.stderr.strip()[:200]}")
    os.replace(tmp, out)
    return out


def symbol_file(name, base, sections, dirs=(), ko=None):
    """(relocated copy or None, one-line status) for module NAME loaded at BASE with
    SECTIONS: its .ko (KO, else found under DIRS) moved to the kernel's addresses."""
    from .textutil import escape
    shown = escape(name)
    ko = Path(ko) if ko else find_ko(name, dirs)
    if ko is None:
        return None, f"{shown}: no .ko found (give --modules-dir)"
    if not sections:
        return None, f"{shown}: no section addresses (sect_attrs empty)"
    try:
        copy = relocated_copy(ko, sections)
    except GdbkdError as e:
        return None, f"{shown}: {e}"
    return copy, f"{shown}: symbols loaded from {ko} at {base:#x}"


def _cstr(dump, addr, n):
    return dump.read(addr, n).split(b"\0", 1)[0].decode("utf-8", "replace")


def modules_in_dump(dump, limit=10000):
    """[(name, base, {section: address})] of the modules loaded in DUMP (a
    gdbkd.postmortem Dump), read with the vmlinux's cached offsets; [] if this
    vmlinux's offsets lack what is needed."""
    f, sz = dump.offsets["fields"], dump.offsets["sizes"]
    head = dump.sym("modules")
    need = [f.get("module.list"), f.get("module.name"), f.get("module.sect_attrs"),
            f.get("module_sect_attrs.nsections"), f.get("module_sect_attrs.attrs"),
            f.get("module_sect_attr.address"), sz.get("module_sect_attr")]
    base_off = f.get("module.mem0.base") if f.get("module.mem0.base") is not None \
        else f.get("module.core_layout.base")
    name_ptr = f.get("module_sect_attr.battr.attr.name") if f.get("module_sect_attr.battr.attr.name") \
        is not None else f.get("module_sect_attr.name")
    if head is None or base_off is None or name_ptr is None or any(v is None for v in need):
        return []
    lst, name_off, sa_off, ns_off, attrs_off, addr_off, attr_size = need
    u64 = lambda a: int.from_bytes(dump.read(a, 8), "little")
    out = []
    node = u64(head)
    while node != head and len(out) < limit:
        mod = node - lst
        name = _cstr(dump, mod + name_off, 56)
        base = u64(mod + base_off)
        secs = {}
        sa = u64(mod + sa_off)
        if sa:
            n = int.from_bytes(dump.read(sa + ns_off, 4), "little")
            for i in range(min(n, 256)):
                a = sa + attrs_off + i * attr_size
                secs[_cstr(dump, u64(a + name_ptr), 64)] = u64(a + addr_off)
        out.append((name, base, secs))
        node = u64(node)
    return out
