"""Build out-of-tree kernel modules against a profile's kernel headers.

The source directory is copied into the cache (keyed by its content and the
kernel release) and built there with the cross compiler, so the user's tree is
never written to and an unchanged module is not rebuilt.
"""

import hashlib
import shutil
import subprocess
from pathlib import Path

from ..cache import cache_root, atomic_dir, progress, key_of
from ..errors import GdbkdError

__all__ = ["build_module_dir", "module_name_of"]

SRC_SUFFIXES = {".c", ".h", ".S", ""}


def _tree_hash(src: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(src.rglob("*")):
        if p.is_file() and (p.suffix in SRC_SUFFIXES or p.name in ("Kbuild", "Makefile")) \
                and not p.name.endswith((".o", ".ko", ".mod", ".cmd")):
            h.update(str(p.relative_to(src)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:16]


def module_name_of(ko: Path) -> str:
    return Path(ko).name.removesuffix(".ko").replace("-", "_")


def build_module_dir(src, kernel) -> list:
    """Build every module of ``src`` (a dir with Kbuild/Makefile); return the .ko paths."""
    src = Path(src).resolve()
    if src.is_file() and src.suffix == ".ko":
        return [src]
    if not src.is_dir():
        raise GdbkdError(f"module source {src} is neither a directory nor a .ko")
    if not ((src / "Kbuild").exists() or (src / "Makefile").exists()):
        raise GdbkdError(f"module source {src} has no Kbuild or Makefile")
    if not kernel.kdir or not Path(kernel.kdir).is_dir():
        raise GdbkdError(f"no kernel headers for {kernel.release}: cannot build {src.name}")
    tool_key = key_of(sorted(kernel.make_vars.items()), kernel.make_prefix,   # a new compiler rebuilds;
                      str(src))    # so does a new place: the DWARF names SRC's files (gdb's source)
    out = cache_root() / "modules" / f"{src.name}-{kernel.release}-{_tree_hash(src)}-{tool_key[:8]}"
    if not out.exists():
        progress(f"building module {src.name} for {kernel.release}")
        with atomic_dir(out) as tmp:
            shutil.copytree(src, tmp, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("*.o", "*.ko", ".*.cmd", "*.mod*"))
            cmd = [*kernel.make_prefix, "make", "-s", "-C", kernel.kdir, "ARCH=arm64",
                   "CROSS_COMPILE=aarch64-linux-gnu-", f"M={tmp}", "modules"]
            cmd += [f"{k}={v}" for k, v in kernel.make_vars.items()]
            # debug info names the user's source, not the private build copy
            cmd.append(f"KCFLAGS=-fdebug-prefix-map={tmp}={src}")
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                out_lines = (r.stderr + r.stdout).splitlines()
                # the compiler's own diagnostic first, then "command not found", then make's
                lines = [l for l in out_lines if "error:" in l] or \
                        [l for l in out_lines if "not found" in l or "No such file" in l] or \
                        [l for l in out_lines if "error" in l.lower()]
                first = (lines or out_lines or ["make failed"])[0]
                first = first.replace(str(tmp) + "/", "")
                raise GdbkdError(f"module {src.name} does not build: {first.strip()}")
    kos = sorted(out.glob("*.ko"))
    if not kos:
        raise GdbkdError(f"module {src.name} built no .ko")
    return kos
