"""A kernel's files as gdbkd keeps them: the :class:`Kernel` record, its layout in a
cache directory, and the vmlinux's ``.gdb_index``.

Both ways of getting a kernel build on this: Debian's packages (:mod:`.kernel`,
which also dispatches ``source = "local"`` profiles) and a kernel built elsewhere
(:mod:`.prebuilt`). Nothing here fetches or chooses a kernel.
"""

import os
import struct
import subprocess
from dataclasses import dataclass, field, asdict
from pathlib import Path

from ..errors import GdbkdError
from ..paths import GDB_INIT
from ..progress import Ticker

__all__ = ["Kernel", "kernel_from_dir", "add_gdb_index", "compact_gdb_index", "run_tool"]


@dataclass
class Kernel:
    release: str
    image: str
    vmlinux: str
    modules_dir: str = ""
    kdir: str = ""
    config: str = ""
    make_vars: dict = field(default_factory=dict)
    make_prefix: list = field(default_factory=list)

    def to_json(self):
        return asdict(self)


def run_tool(cmd, what, **kw):
    """Run CMD (output captured); a failure raises GdbkdError "WHAT: its last stderr line"."""
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        err = (r.stderr.strip().splitlines() or ["failed"])[-1]
        raise GdbkdError(f"{what}: {err[:200]}")
    return r


def compact_gdb_index(vmlinux: Path):
    """Rewrite an oversized .gdb_index symbol table in place (see artifacts/gdbindex.py):
    gdb's first name lookup gets ~70 ms faster. Temp file + rename; a no-op when the
    table is already right-sized or there is no index."""
    from elftools.elf.elffile import ELFFile
    from .gdbindex import compact_index
    with open(vmlinux, "rb") as f:
        sec = ELFFile(f).get_section_by_name(".gdb_index")
        if sec is None:
            return False
        f.seek(sec["sh_offset"])
        hdr = f.read(24)
        version, _, _, _, sym, const = struct.unpack("<6I", hdr)
        if version not in (7, 8) or (const - sym) // 8 < 1 << 20:
            return False
        new = compact_index(hdr + f.read(sec["sh_size"] - 24))
    if new is None:
        return False
    vmlinux = Path(vmlinux)
    idx = vmlinux.with_name(vmlinux.name + f".idx{os.getpid()}")
    tmp = vmlinux.with_name(vmlinux.name + f".tmp{os.getpid()}")
    try:
        idx.write_bytes(new)
        run_tool(["aarch64-linux-gnu-objcopy", "--update-section", f".gdb_index={idx}",
              str(vmlinux), str(tmp)], "objcopy")
        os.replace(tmp, vmlinux)
    finally:
        for p in (idx, tmp):
            p.unlink(missing_ok=True)
    return True


def add_gdb_index(vmlinux: Path):
    """Add a .gdb_index section (as gdb-add-index does): symbol loads go from ~20 s to <1 s."""
    r = subprocess.run(["aarch64-linux-gnu-objdump", "-h", str(vmlinux)], capture_output=True, text=True)
    if ".gdb_index" in r.stdout or ".debug_names" in r.stdout:
        compact_gdb_index(vmlinux)
        return
    d = vmlinux.parent
    with Ticker(f"indexing {vmlinux.name} for gdb (one time, ~30 s)"):
        run_tool(["gdb-multiarch", "-batch", "-nx", *GDB_INIT,
              "-ex", f"save gdb-index {d}", str(vmlinux)], "gdb index")
    idx = d / (vmlinux.name + ".gdb-index")
    tmp = d / (vmlinux.name + ".indexed")
    run_tool(["aarch64-linux-gnu-objcopy", "--add-section", f".gdb_index={idx}",
          "--set-section-flags", ".gdb_index=readonly", str(vmlinux), str(tmp)], "objcopy")
    os.replace(tmp, vmlinux)
    idx.unlink()
    compact_gdb_index(vmlinux)


def kernel_from_dir(rel, d: Path, kcfg):
    """The Kernel unpacked in cache directory ``d``: a Debian kernel's layout (vmlinux-REL,
    pkg/, hdr/), or a prebuilt kernel's (vmlinux, lib/modules/REL, the kbuild tree with
    Module.symvers: artifacts/prebuilt.py)."""
    if not (d / f"vmlinux-{rel}").exists() and (d / "vmlinux").exists():
        kdir = next((p for p in sorted(d.iterdir()) if (p / "Module.symvers").is_file()), "")
        return Kernel(release=rel, image=str(d / "Image"), vmlinux=str(d / "vmlinux"),
                      modules_dir=str(d / "lib/modules" / rel), kdir=str(kdir),
                      config=str(d / "config"), make_vars=dict(kcfg.get("make_vars", {})))
    final_hdr = d / "hdr"
    return Kernel(release=rel, image=str(d / "Image"), vmlinux=str(d / f"vmlinux-{rel}"),
                  modules_dir=str(d / "pkg/lib/modules" / rel),
                  kdir=str(final_hdr / "usr/src" / f"linux-headers-{rel}"),
                  config=str(d / "config"), make_vars=dict(kcfg.get("make_vars", {})))
