"""kexec-tools and makedumpfile for arm64 guests: Debian packages unpacked into sysroots.

Both tools come from Debian bookworm's arm64 archive (kexec-tools 2.0.25,
makedumpfile 1.7.2). :func:`ensure_sysroot` resolves a package's shared-library
closure from the archive's ``Depends``/``Pre-Depends`` fields and unpacks it
with ``dpkg-deb -x`` into ``~/.cache/gdbkd/tools/<name>-arm64-<key>`` (a temp
directory renamed into place). Another suite can be asked for
(``ensure_sysroot("makedumpfile", suite="trixie")``: makedumpfile 1.7.6, the
first Debian build with zstd, used to make test dumps under qemu-user); it
gets its own ``<name>-<suite>-arm64-<key>`` sysroot. Trixie is merged-/usr
(its packages ship libraries and the ELF interpreter only under ``usr/lib``),
so such a sysroot gets ``lib -> usr/lib`` for ``/lib/ld-linux-aarch64.so.1``.

:func:`guest_files` then picks from a sysroot only what one binary needs at
run time: the binary, its ELF interpreter and the ``DT_NEEDED`` libraries,
transitively, by their SONAMEs.
"""

import re
import subprocess
from pathlib import Path, PurePosixPath

from ..cache import cache_root, key_of, atomic_dir, progress
from ..errors import GdbkdError

__all__ = ["SUITE", "KEXEC", "MAKEDUMPFILE", "LIB_DIRS", "ensure_sysroot", "package_closure",
           "guest_files"]

SUITE = "bookworm"
#: (package, binary inside the package) of the two tools.
KEXEC = ("kexec-tools", "sbin/kexec")
MAKEDUMPFILE = ("makedumpfile", "usr/bin/makedumpfile")
#: Where Debian's arm64 libraries live (the dynamic loader searches these;
#: the guest scripts also put them in LD_LIBRARY_PATH).
LIB_DIRS = ("lib/aarch64-linux-gnu", "usr/lib/aarch64-linux-gnu", "lib", "usr/lib")


def _is_library_package(name: str) -> bool:
    """Only shared-library packages are followed (not debconf, perl, gcc-*-base)."""
    return name.startswith("lib") or name == "zlib1g"


def _dep_names(field: str):
    """Package names of a Depends field; of alternatives ("a | b") the first."""
    out = []
    for clause in filter(None, (c.strip() for c in field.split(","))):
        first = clause.split("|")[0].strip()
        name = re.split(r"[\s(:]", first, 1)[0]
        if name:
            out.append(name)
    return out


def package_closure(apt, root_pkg: str, arch: str = "arm64", suite: str = SUITE) -> dict:
    """{package: version} of ``root_pkg`` and the library packages it needs (in ``apt``'s suite)."""
    todo, seen = [root_pkg], {}
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        f = apt.show(f"{name}:{arch}")
        if not f:
            raise GdbkdError(f"{name}:{arch} not found in Debian {suite}")
        seen[name] = f["Version"]
        deps = _dep_names(f.get("Pre-Depends", "")) + _dep_names(f.get("Depends", ""))
        todo += [d for d in deps if _is_library_package(d) and d not in seen]
    return seen


def ensure_sysroot(package: str, suite: str = SUITE) -> Path:
    """The cached sysroot holding ``package`` (arm64) and its library closure from ``suite``.

    The default suite (bookworm, what the in-guest kdump flow runs) keeps its
    ``<package>-arm64-<key>`` directory; any other suite gets
    ``<package>-<suite>-arm64-<key>``, with a ``lib -> usr/lib`` link when the
    suite's packages ship no ``lib`` (merged-/usr, trixie and later)."""
    from ..artifacts.apt import Apt
    base = cache_root() / "tools"
    base.mkdir(parents=True, exist_ok=True)
    prefix = f"{package}-arm64" if suite == SUITE else f"{package}-{suite}-arm64"
    for d in sorted(base.glob(f"{prefix}-*")):
        if (d / ".complete").exists():
            return d
    apt = Apt([suite])
    apt.update()
    pkgs = package_closure(apt, package, suite=suite)
    root = base / f"{prefix}-{key_of(*sorted(pkgs.items()))}"
    progress(f"unpacking {package}:arm64 ({suite}) and {len(pkgs) - 1} library packages")
    with atomic_dir(root) as tmp:
        for name, version in sorted(pkgs.items()):
            deb = apt.download(name, "arm64", version, cache_root() / "debs")
            r = subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp)], capture_output=True, text=True)
            if r.returncode != 0:
                raise GdbkdError(f"cannot unpack {deb.name}: "
                                 f"{(r.stderr.strip().splitlines() or ['dpkg-deb failed'])[-1]}")
        if suite != SUITE and not (tmp / "lib").exists() and (tmp / "usr/lib").is_dir():
            (tmp / "lib").symlink_to("usr/lib")      # merged-/usr: /lib/ld-linux-aarch64.so.1
        (tmp / ".packages").write_text("".join(f"{n} {v}\n" for n, v in sorted(pkgs.items())))
        (tmp / ".complete").write_text("ok\n")
    return root


def _elf_deps(path: Path):
    """(interpreter or None, [DT_NEEDED names]) of an ELF file."""
    from elftools.elf.elffile import ELFFile
    from elftools.elf.dynamic import DynamicSection
    from elftools.common.exceptions import ELFError
    try:
        with open(path, "rb") as f:
            elf = ELFFile(f)
            interp, needed = None, []
            for seg in elf.iter_segments():
                if seg["p_type"] == "PT_INTERP":
                    interp = seg.get_interp_name()
            for sec in elf.iter_sections():
                if isinstance(sec, DynamicSection):
                    needed += [t.needed for t in sec.iter_tags() if t.entry.d_tag == "DT_NEEDED"]
            return interp, needed
    except (OSError, ELFError) as e:
        raise GdbkdError(f"cannot read {path}: {e}")


def guest_files(root: Path, binary: str) -> dict:
    """{guest path: host path} for running ``binary`` (relative to ``root``) in the guest.

    Libraries keep the sysroot's layout under their SONAME (the file a symlink
    points to is copied under the link's name).
    """
    root = Path(root)
    out = {binary: root / binary}
    todo = [root / binary]
    done = set()
    while todo:
        p = todo.pop()
        if p in done:
            continue
        done.add(p)
        interp, needed = _elf_deps(p.resolve())
        if interp:
            gp = str(PurePosixPath(interp).relative_to("/"))
            if not (root / gp).exists():
                raise GdbkdError(f"{binary}: interpreter {interp} missing from {root}")
            out.setdefault(gp, (root / gp).resolve())
        for lib in needed:
            if interp and lib == PurePosixPath(interp).name:
                continue            # the loader itself, already there
            for d in LIB_DIRS:
                cand = root / d / lib
                if cand.exists():
                    out.setdefault(f"{d}/{lib}", cand.resolve())
                    todo.append(cand)
                    break
            else:
                raise GdbkdError(f"{binary}: library {lib} not found in {root}")
    return out
