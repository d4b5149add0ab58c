"""Symbol files for loaded kernel modules, without gdb.

A module's .ko is found by name under module directories, then copied with
every section moved to where the kernel put it (``objcopy
--change-section-address``), so a plain ``add-symbol-file COPY`` gives gdb 13
the right addresses (its ``add-symbol-file -s`` mis-relocates a module's DWARF).
Used by kd inside gdb (gdbkd/kernel/modules.py) and by ``gdbkd core``, which
plans the module symbols from the dump before gdb starts
(:func:`modules_in_dump`), so that gdb needs no type lookup for them.

The module list itself (names, bases, section addresses, with the
``struct module`` versions) is read by the model, gdbkd/model/modules.py.
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


def modules_in_dump(dump, limit=10000):
    """[(name, base, {section: address})] of the modules loaded in DUMP (a
    gdbkd.postmortem Dump), read through the model (gdbkd/model/modules.py) with the
    vmlinux's cached layouts; [] if this vmlinux's layouts lack what is needed."""
    from .model.modules import module_list
    mods, _stop = module_list(dump.kernel, limit)
    return [(m.name, m.base, m.sections) for m in mods]
