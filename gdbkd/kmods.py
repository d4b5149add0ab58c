"""Symbol files for loaded kernel modules, without gdb.

A module's .ko is found by name under module directories, else by its GNU
build-id among the modules gdbkd itself built (its module build cache,
``~/.cache/gdbkd/modules``). The build-id a module was loaded with is in its
``.note.gnu.build-id`` section in memory (gdbkd/model/kallsyms.py), so a .ko
found by name is also checked: a different build of the same module would give
gdb DWARF that names the wrong lines and variables, and is refused.

The .ko is then copied with every section moved to where the kernel put it
(``objcopy --change-section-address``), so a plain ``add-symbol-file COPY``
gives gdb 13 the right addresses (its ``add-symbol-file -s`` mis-relocates a
module's DWARF). Sections the module does not own any more — its init
sections once init is done (their ``sect_attrs`` address is stale, and that
memory may hold a later module's code), and loaded-but-unplaced sections such
as ``.modinfo`` that would otherwise sit at address 0 — are parked at a
non-canonical address, so gdb never names live memory after them (the
``init_module`` frames of issue 11).

Used by kd inside gdb (gdbkd/kernel/modules.py) and by ``gdbkd core``, which
plans the module symbols from the dump before gdb starts, so that gdb needs no
type lookup for them. The module list itself (names, bases, section addresses,
with the ``struct module`` versions) is read by the model,
gdbkd/model/modules.py.
"""

import os
import zlib
from dataclasses import dataclass
from pathlib import Path

from .errors import GdbkdError

__all__ = ["find_ko", "relocated_copy", "symbol_file", "modules_in_dump", "ko_build_id",
           "built_module_dirs", "find_built_ko", "ModulePlan", "plan_modules", "PARK_BASE"]

_ko_index = {}       # directory -> {file name: first path under it}
_bid_cache = {}      # (path, mtime, size) -> build-id or None
SHF_ALLOC = 2
#: where sections a module does not own are parked: bits 52-54 set, bit 55 clear — no
#: arm64 kernel or user address (VA_BITS <= 52) has them
PARK_BASE = 0x0070_0000_0000_0000


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


def _sections(ko) -> list:
    """[(name, flags)] of a .ko's sections."""
    from .elfsyms import sections, ElfFormatError
    try:
        with open(ko, "rb") as f:
            return [(s.name, s.flags) for s in sections(f, ko)]
    except (OSError, ElfFormatError) as e:
        raise GdbkdError(f"{ko}: not a readable ELF file ({getattr(e, 'strerror', None) or e})")


def ko_build_id(ko):
    """The GNU build-id (hex) of a .ko file, or None (cached by path, mtime and size)."""
    try:
        st = os.stat(ko)
    except OSError:
        return None
    key = (str(ko), st.st_mtime_ns, st.st_size)
    if key not in _bid_cache:
        from .elfsyms import build_id
        try:
            with open(ko, "rb") as f:
                bid = build_id(f, ko)
        except (OSError, GdbkdError):
            bid = None
        _bid_cache[key] = bid
    return _bid_cache[key]


def built_module_dirs() -> list:
    """gdbkd's own module build directories (gdbkd/artifacts/modules.py), newest first."""
    from .cache import cache_root
    root = cache_root() / "modules"
    if not root.is_dir():
        return []
    return sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: -p.stat().st_mtime)


def find_built_ko(build_id: str, name: str = None):
    """The .ko with this build-id among the modules gdbkd built, or None. Only .ko files
    named after the module are read when NAME is given (a few files, not the whole cache)."""
    if not build_id:
        return None
    names = None if name is None else {f"{name}.ko", f"{name.replace('_', '-')}.ko"}
    for d in built_module_dirs():
        for ko in sorted(d.glob("*.ko")):
            if names is not None and ko.name not in names:
                continue
            if ko_build_id(ko) == build_id:
                return ko
    return None


def _park(name: str, index: int) -> int:
    return PARK_BASE + ((zlib.crc32(name.encode()) & 0xFFFF) << 28) + (index << 20)


def relocated_copy(ko: Path, sections: dict, live=None) -> Path:
    """KO with its sections at SECTIONS' addresses, cached in a private temp directory
    by content and addresses (written to a temp name and renamed). With LIVE
    ([(lo, hi)] of the memory the module owns now), a loaded section outside it, or
    one the kernel did not place, is parked (see the module docstring)."""
    import hashlib
    import subprocess
    import tempfile
    ko = Path(ko)
    secs = _sections(ko)
    moves = {}
    for i, (s, flags) in enumerate(secs):
        addr = sections.get(s)
        if addr is not None and (live is None or any(lo <= addr < hi for lo, hi in live)):
            moves[s] = addr
        elif live is not None and flags & SHF_ALLOC:
            moves[s] = _park(ko.stem, i)
    key = hashlib.sha256(ko.read_bytes() + repr(sorted(moves.items())).encode()).hexdigest()[:16]
    out = Path(tempfile.gettempdir()) / f"gdbkd-ko-{os.getuid()}" / f"{ko.stem}-{key}.ko"
    if out.exists():
        return out
    out.parent.mkdir(mode=0o700, exist_ok=True)
    args = []
    for s, addr in moves.items():
        args += ["--change-section-address", f"{s}={addr:#x}"]
    tmp = out.with_suffix(f".tmp{os.getpid()}")
    r = subprocess.run(["aarch64-linux-gnu-objcopy", *args, str(ko), str(tmp)], capture_output=True,
                       text=True)
    if r.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise GdbkdError(f"objcopy failed on {ko}: {r.stderr.strip()[:200]}")
    os.replace(tmp, out)
    return out


def _choose_ko(name, dirs, ko, build_id):
    """(.ko path or None, how it was found / why none)."""
    if ko is not None:
        ko = Path(ko)
        kb = ko_build_id(ko)
        if build_id and kb and kb != build_id:
            return None, (f"{ko} is another build (build-id {kb[:12]}, the loaded module's is "
                          f"{build_id[:12]})")
        return ko, "given"
    by_name = find_ko(name, dirs)
    if by_name is not None:
        kb = ko_build_id(by_name)
        if not build_id or not kb or kb == build_id:
            return by_name, ("build-id matches" if build_id and kb else "found by name")
    built = find_built_ko(build_id, name)
    if built is not None:
        return built, f"build-id {build_id[:12]} found in gdbkd's module cache"
    if by_name is not None:
        return None, (f"{by_name} is another build (build-id {ko_build_id(by_name)[:12]}, the "
                      f"loaded module's is {build_id[:12]})")
    return None, "no .ko found (give --modules-dir)"


def symbol_file(name, base, sections, dirs=(), ko=None, build_id=None, live=None):
    """(relocated copy or None, one-line status) for module NAME loaded at BASE with
    SECTIONS: its .ko (KO, else found under DIRS by name, else in gdbkd's module cache
    by BUILD_ID) moved to the kernel's addresses; LIVE: see :func:`relocated_copy`."""
    from .textutil import escape
    shown = escape(name)
    ko, how = _choose_ko(name, dirs, ko, build_id)
    if ko is None:
        return None, f"{shown}: {how}; its names come from the module's kallsyms, without DWARF"
    if not sections:
        return None, f"{shown}: no section addresses (sect_attrs empty)"
    try:
        copy = relocated_copy(ko, sections, live)
    except GdbkdError as e:
        return None, f"{shown}: {e}"
    return copy, f"{shown}: symbols loaded from {ko} at {base:#x} ({how})"


@dataclass
class ModulePlan:
    name: str
    base: int
    copy: object          # Path of the relocated copy, or None
    status: str           # one line: which .ko for which module, or why none
    build_id: str = None


def plan_modules(k, dirs=(), only=None) -> list:
    """[ModulePlan] for the modules loaded in the kernel K (a gdbkd.model Kernel): the
    symbol file of each, found as :func:`symbol_file` says. ONLY: a module name."""
    from .model.modules import module_list
    from .model.kallsyms import module_symbols, module_build_id
    mods, _stop = module_list(k)
    tables = module_symbols(k)
    out = []
    for m in mods:
        if only is not None and m.name != only:
            continue
        bid = module_build_id(k, m)
        ms = tables.get(m.name)
        live = (ms.core + ms.init) if ms is not None and (ms.core or ms.init) else None
        copy, status = symbol_file(m.name, m.base, m.sections, dirs, build_id=bid, live=live)
        out.append(ModulePlan(m.name, m.base, copy, status, bid))
    return out


def modules_in_dump(dump, limit=10000):
    """[(name, base, {section: address})] of the modules loaded in DUMP (a
    gdbkd.target Dump), read through the model (gdbkd/model/modules.py) with the
    vmlinux's cached layouts; [] if this vmlinux's layouts lack what is needed."""
    from .model.modules import module_list
    mods, _stop = module_list(dump.kernel, limit)
    return [(m.name, m.base, m.sections) for m in mods]
