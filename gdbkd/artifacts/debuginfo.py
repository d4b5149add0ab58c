"""Find the vmlinux of a dump by itself, as drgn and crash do.

A dump names its kernel: VMCOREINFO ``BUILD-ID`` (5.9 and later) and ``OSRELEASE``.
The vmlinux is looked up, in this order:

1. the directories the user gave (``--vmlinux-dir``; two levels deep);
2. gdbkd's cache: every kernel it ever unpacked (artifacts/kernel.py);
3. where Debian's debug packages put it: ``/usr/lib/debug/boot/vmlinux-RELEASE`` and
   ``/usr/lib/debug/lib/modules/RELEASE/vmlinux``;
4. Debian's archive, through the profile of the release's series, while the archive
   still carries that ABI (the kernel is then unpacked into the cache, modules too).

A candidate is taken when its build-id equals the dump's; for a dump without one
(before v5.9) when it is named by the release (the banner check of
``Dump.attach_vmlinux`` then proves it). The result says which file and why; when
none fits, the error is one line naming the build-id, the release and where it
looked.
"""

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import GdbkdError

__all__ = ["Found", "find_vmlinux", "DEBIAN_PATHS", "dir_index"]

DEBIAN_PATHS = ("/usr/lib/debug/boot/vmlinux-{release}", "/usr/lib/debug/lib/modules/{release}/vmlinux")

_SKIP_SUFFIXES = (".ko", ".gz", ".xz", ".txt", ".json", ".deb", ".map")
_dir_cache = {}


@dataclass
class Found:
    path: str
    why: str


def _build_id(path):
    from ..target.offsets import vmlinux_build_id
    try:
        with open(path, "rb") as f:
            if f.read(4) != b"\x7fELF":
                return None
        return vmlinux_build_id(path) or ""
    except (OSError, GdbkdError):
        return None


def dir_index(directory) -> dict:
    """{build-id: path} of the ELF vmlinux files under DIRECTORY (two levels deep; other
    files are passed over). Kept per directory and modification time."""
    root = Path(directory)
    if not root.is_dir():
        raise GdbkdError(f"--vmlinux-dir {directory} is not a directory")
    key = (str(root.resolve()), root.stat().st_mtime_ns)
    if key in _dir_cache:
        return _dir_cache[key]
    found = {}
    top = sorted(root.iterdir())
    for p in top + sorted(q for p in top if p.is_dir() for q in p.iterdir()):
        if not p.is_file() or p.name.endswith(_SKIP_SUFFIXES):
            continue
        bid = _build_id(p)
        if bid:
            found.setdefault(bid, str(p))
    _dir_cache[key] = found
    return found


def _short(bid):
    return f"{bid[:12]}…" if bid else "none"


def find_vmlinux(release, build_id, dirs=(), download=True) -> Found:
    """The vmlinux of a dump of RELEASE with BUILD_ID (None or "" when the dump has none).
    Raises GdbkdError (one line) when none fits."""
    if not release and not build_id:
        raise GdbkdError("the dump names no kernel (no OSRELEASE or BUILD-ID in its VMCOREINFO): "
                         "give the vmlinux")
    bid = (build_id or "").lower() or None
    looked = []
    named_other = []            # files named by the release whose build-id differs

    def fits(path, bid_of_path):
        if bid:
            return bid_of_path == bid
        return bool(release) and release in os.path.basename(path) or \
            bool(release) and f"/{release}/" in path

    # 1. the user's directories
    for d in dirs:
        idx = dir_index(d)
        looked.append(str(d))
        if bid and bid in idx:
            return Found(idx[bid], f"build-id {_short(bid)} matches, in {d}")
        same = sorted(p for p in idx.values() if release and release in p)
        if not bid and len(same) == 1:
            return Found(same[0], f"named by release {release}, in {d} (the dump has no build-id)")
        named_other += [p for p in same if bid]
    # 2. the cache
    from .kernel import cached_kernels, kernel_for_release
    cached = cached_kernels()
    looked.append(f"gdbkd's cache ({len(cached)} kernel{'s' if len(cached) != 1 else ''})")
    for k in cached:
        if (bid and k["build_id"] == bid) or (not bid and k["release"] == release):
            how = f"build-id {_short(bid)} matches" if bid else f"release {release} matches"
            return Found(k["vmlinux"], f"{how}, in gdbkd's cache")
        if bid and k["release"] == release:
            named_other.append(k["vmlinux"])
    # 3. Debian's debug paths
    if release:
        for pat in DEBIAN_PATHS:
            p = pat.format(release=release)
            looked.append(p)
            if os.path.isfile(p):
                pb = _build_id(p)
                if fits(p, pb):
                    how = f"build-id {_short(bid)} matches" if bid else "named by the release"
                    return Found(p, f"{how}, Debian's debug path")
                if bid and pb:
                    named_other.append(p)
    # 4. Debian's archive
    if release and download:
        looked.append("Debian's archive")
        try:
            k = kernel_for_release(release)
        except GdbkdError as e:
            looked[-1] = f"Debian's archive ({str(e).splitlines()[0][:160]})"
        else:
            kb = _build_id(k.vmlinux)
            if not bid or kb == bid:
                how = f"build-id {_short(bid)} matches" if bid else f"release {release}"
                return Found(k.vmlinux, f"{how}, downloaded from Debian's archive")
            named_other.append(k.vmlinux)
            looked[-1] = "Debian's archive (its package of that release has another build-id)"
    hint = ""
    named_other = list(dict.fromkeys(os.path.realpath(p) for p in named_other))
    if named_other:
        hint = f"; {len(named_other)} file(s) of that release have another build-id " \
               f"(e.g. {named_other[0]})"
    raise GdbkdError(f"no vmlinux for {release or 'an unknown release'} with build-id "
                     f"{_short(bid)}: looked in {', '.join(looked)}{hint}; give VMLINUX", 1)
