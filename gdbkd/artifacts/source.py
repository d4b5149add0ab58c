"""The kernel's own source tree for gdb: ``gdbkd fetch --source`` (or a profile's
``[kernel] fetch_source = true``) fetches Debian's ``linux-source-SERIES`` package of the
kernel's version, unpacks its tar.xz once into the cache, and records, per vmlinux
build-id, the gdb commands that make ``list``, ``frame``, ``bt`` and ``kd dis -s`` show
that source. Every gdb gdbkd starts (run/attach, core) applies them when the tree is
there; nothing is downloaded unless asked for.

A kernel built from a tree the user has (the course's 5.0) needs no download:
``gdbkd fetch rlk-5.0 --source`` records ``$RLK_TREE``, and ``--source-tree DIR`` any
tree (:func:`record_tree`), e.g. the course's checkout for the prebuilt kernel, built in
another directory (``/tmp/rlk``). The rules then map that build directory to DIR.

Where gdb looks (measured on 6.1.0-56, Debian 6.1.192-2): the C compilation units have
the *relative* DW_AT_comp_dir ``debian/build/build_arm64_none_cloud-arm64`` and names
relative to the tree (``kernel/panic.c``; Debian maps the source root away with
-fdebug-prefix-map); 48 assembler units (entry.S, …) keep absolute paths under
``/build/reproducible-path/linux-6.1.192``. 5.10's first unit (head.S) has the absolute
form only. So the rules are: each spelling of the build directory → the tree (C files),
then each absolute source root → the tree (assembler files), plus ``directory TREE``.
Module builds already map their build copy to the user's source (artifacts/modules.py)
and include headers from the unpacked kernel headers, so modules need no rule.
"""

import json
import mmap
import re
import subprocess
from pathlib import Path

from ..cache import cache_root, key_of, atomic_dir, atomic_write, progress
from ..errors import GdbkdError
from ..progress import Bar

__all__ = ["ensure_source", "find_source", "gdb_source_commands", "source_rules", "record_tree"]

_SECTIONS = (".debug_line_str", ".debug_str", ".debug_info")


def _pointer(build_id: str) -> Path:
    return cache_root() / "sources" / "by-build-id" / f"{build_id}.json"


def source_rules(vmlinux) -> list:
    """[(from, to-placeholder)] substitute-path sources of VMLINUX: the spellings of its
    compilation directory, then the absolute source roots before it (see the module doc).
    Reads one compilation unit's header and greps the string sections (~1 s)."""
    from elftools.elf.elffile import ELFFile
    with open(vmlinux, "rb") as f:
        elf = ELFFile(f)
        dwarf = elf.get_dwarf_info(relocate_dwarf_sections=False)
        cu = next(dwarf.iter_CUs(), None)
        top = cu.get_top_DIE() if cu is not None else None
        attr = top.attributes.get("DW_AT_comp_dir") if top is not None else None
        if attr is None:
            raise GdbkdError(f"{vmlinux} has no DWARF compilation directory: cannot map its source")
        comp = attr.value.decode("utf-8", "replace") if isinstance(attr.value, bytes) else str(attr.value)
        m = re.search(r"(?:^|/)(debian/build/[^/]+)$", comp)
        tail = m.group(1) if m else comp.lstrip("/")
        ranges = [(s["sh_offset"], s["sh_offset"] + s["sh_size"]) for name in _SECTIONS
                  if (s := elf.get_section_by_name(name)) is not None and s["sh_type"] != "SHT_NOBITS"]
        spellings = {comp}
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            needle = tail.encode() + b"\0"
            for lo, hi in ranges:
                i = mm.find(needle, lo, hi)
                while i >= 0:
                    start = i
                    while start > lo and 0x20 <= mm[start - 1] < 0x7f:   # back over the string
                        start -= 1
                    s = mm[start:i + len(tail)].decode("ascii")
                    if s == tail or s.endswith("/" + tail):
                        s = s[s.find("/"):] if s != tail and not s.startswith("/") else s
                        spellings.add(s)
                    i = mm.find(needle, i + 1, hi)
    builds = sorted(spellings, key=lambda s: (s.startswith("/"), s))       # relative first
    roots = sorted({s[: -len(tail) - 1] for s in builds if s.startswith("/") and s != "/" + tail})
    return builds + [r for r in roots if r]


def find_source(vmlinux):
    """The recorded source of VMLINUX (by build-id) whose tree is still there, else None.
    No network, no DWARF: a stat when no source was ever fetched."""
    d = cache_root() / "sources" / "by-build-id"
    if not d.is_dir() or not any(d.glob("*.json")):
        return None
    from ..target.offsets import vmlinux_build_id
    try:
        bid = vmlinux_build_id(vmlinux)
    except GdbkdError:
        return None
    p = _pointer(bid) if bid else None
    if p is None or not p.is_file():
        return None
    try:
        info = json.loads(p.read_text())
    except (OSError, ValueError):
        return None
    return info if Path(info.get("tree", "")).is_dir() else None


def gdb_source_commands(vmlinux) -> list:
    """gdb commands that show VMLINUX's fetched source (none when it was not fetched)."""
    info = find_source(vmlinux)
    if info is None:
        return []
    from ..textutil import gdb_quote
    tree = info["tree"]
    cmds = [f"set substitute-path {gdb_quote(r)} {gdb_quote(tree)}" for r in info["rules"]]
    if not re.search(r"[\s:]", tree):       # `directory` splits its argument at ':' and blanks
        cmds.append(f"directory {tree}")
    return cmds


def _versions(apt, name):
    """Versions of package NAME in APT's suites, newest first (apt-cache madison)."""
    r = subprocess.run(["apt-cache", *apt._opts(), "madison", name], capture_output=True, text=True)
    vs = []
    for line in r.stdout.splitlines():
        parts = [p.strip() for p in line.split("|")]
        if len(parts) >= 3 and parts[0] == name and parts[1] not in vs:
            vs.append(parts[1])
    return vs


def _upstream(version: str) -> str:
    return version.split(":", 1)[-1].rsplit("-", 1)[0]


def _kernel_version(apt, release):
    """The Debian version of the kernel RELEASE's image package (e.g. 6.1.192-2)."""
    for name in (f"linux-image-{release}-unsigned", f"linux-image-{release}-dbg", f"linux-image-{release}"):
        f = apt.show(f"{name}:arm64")
        if f:
            return f["Version"]
    raise GdbkdError(f"kernel {release} is not in the archive any more: its source version is unknown", 3)


def _unpack_source(deb: Path, dest: Path, label):
    """Stream the tar.xz inside DEB (usr/src/linux-source-*.tar.xz) into `tar -xJ` in
    DEST, with a bar over the compressed bytes; no intermediate copy of the tarball."""
    size = subprocess.run(["dpkg-deb", "-f", str(deb), "Installed-Size"],
                          capture_output=True, text=True).stdout.strip()
    p1 = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
    p2 = subprocess.Popen(["tar", "-xO", "--wildcards", "./usr/src/linux-source-*.tar.xz"],
                          stdin=p1.stdout, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p1.stdout.close()
    p3 = subprocess.Popen(["tar", "-xJ", "-C", str(dest), "--no-same-owner"],
                          stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    got = 0
    try:
        with Bar(label, int(size or 0) * 1024) as bar:
            for chunk in iter(lambda: p2.stdout.read(1 << 20), b""):
                p3.stdin.write(chunk)
                got += len(chunk)
                bar.update(len(chunk))
    except BrokenPipeError:
        pass                                   # tar failed: its message below
    finally:
        p2.stdout.close()
        p3.stdin.close()
    err = (p3.stderr.read() + p2.stderr.read()).decode(errors="replace").strip()
    p2.stderr.close()
    p3.stderr.close()
    rcs = [p.wait() for p in (p1, p2, p3)]
    if any(rcs) or not got:
        raise GdbkdError(f"cannot unpack {deb.name}: {err.splitlines()[-1][:200] if err else 'no source tarball in it'}")


def record_tree(kernel, tree) -> dict:
    """Record TREE (a directory the user has) as the source of KERNEL's vmlinux for gdb;
    return the record (as :func:`ensure_source`). The tree must look like a kernel tree."""
    from ..target.offsets import vmlinux_build_id
    root = Path(tree).expanduser().resolve()
    if not root.is_dir():
        raise GdbkdError(f"source tree {tree} is not a directory")
    if not (root / "Makefile").is_file() or not (root / "include").is_dir():
        raise GdbkdError(f"{tree} does not look like a kernel tree (no Makefile and include/)")
    bid = vmlinux_build_id(kernel.vmlinux)
    if not bid:
        raise GdbkdError(f"{kernel.vmlinux} has no build-id: its source cannot be recorded")
    info = {"tree": str(root), "package": "local tree", "version": None, "release": kernel.release,
            "rules": source_rules(kernel.vmlinux), "vmlinux": str(kernel.vmlinux), "build_id": bid}
    with atomic_write(_pointer(bid), "w") as f:
        json.dump(info, f, indent=1)
    return info


def ensure_source(profile, kernel, tree=None) -> dict:
    """Record the source of PROFILE's KERNEL for gdb: TREE when given; a local profile's
    kernel tree (``[kernel] tree``, e.g. ``$RLK_TREE``); else fetch (once) its Debian
    source package. Returns {"tree", "package", "version", "rules", "release", "vmlinux"}."""
    from ..target.offsets import vmlinux_build_id
    kcfg = profile.kernel
    local = profile.expand_optional(kcfg.get("tree", "")) if kcfg.get("source") == "local" else ""
    if tree or local:
        return record_tree(kernel, tree or local)
    bid = vmlinux_build_id(kernel.vmlinux)
    info = find_source(kernel.vmlinux) if bid else None
    if info is not None:
        return info
    if kcfg.get("source") != "debian" or not kcfg.get("suites"):
        raise GdbkdError(f"profile {profile.name}: this kernel has no source package to fetch: "
                         f"point gdbkd at its tree (--source-tree DIR"
                         + (", or set RLK_TREE" if kcfg.get("tree") else "") + ")")
    if not bid:
        raise GdbkdError(f"{kernel.vmlinux} has no build-id: its source cannot be recorded")
    from .apt import Apt
    apt = Apt(kcfg["suites"])
    apt.update()
    version = _kernel_version(apt, kernel.release)
    series = kcfg.get("series") or ".".join(_upstream(version).split(".")[:2])
    name = f"linux-source-{series}"
    have = _versions(apt, name)
    pick = version if version in have else next((v for v in have if _upstream(v) == _upstream(version)), None)
    if pick is None:
        raise GdbkdError(f"{name} {_upstream(version)} (the source of kernel {kernel.release}, {version}) "
                         f"is not in {', '.join(kcfg['suites'])}"
                         + (f" (there: {', '.join(have[:4])})" if have else ""), 3)
    fields = apt.show(f"{name}:all={pick}") or {}
    key = key_of(fields.get("SHA256", pick))
    out = cache_root() / "sources" / f"{name}_{pick.replace(':', '%3a')}-{key}"
    if not (out / ".complete").exists():
        deb = apt.download(name, "all", pick, cache_root() / "debs", size=fields.get("Size"))
        with atomic_dir(out) as tmp:
            _unpack_source(deb, tmp, f"unpacking {name} {pick} (one time)")
            (tmp / ".complete").write_text(pick + "\n")
    trees = [p for p in out.iterdir() if p.is_dir()]
    if len(trees) != 1:
        raise GdbkdError(f"{out}: expected one source tree, found {len(trees)}")
    progress(f"mapping {Path(kernel.vmlinux).name}'s source paths")
    info = {"tree": str(trees[0]), "package": name, "version": pick, "release": kernel.release,
            "rules": source_rules(kernel.vmlinux), "vmlinux": str(kernel.vmlinux), "build_id": bid}
    with atomic_write(_pointer(bid), "w") as f:
        json.dump(info, f, indent=1)
    return info
