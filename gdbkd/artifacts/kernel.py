"""Fetch and unpack a profile's kernel: Image, vmlinux (+.gdb_index), modules, headers.

Debian profiles resolve the newest ABI of the profile's series for which the
unsigned image, the -dbg vmlinux, both header packages and the amd64 kbuild all
download; the unpacked result is keyed by the packages' SHA256 sums. When the
archive cannot be reached, the last kernel resolved for the profile is used.

Debian replaces an ABI (6.1.0-56 -> 6.1.0-57) on its mirrors without notice. A
kernel once unpacked stays usable: a profile can pin one (``[kernel] abi =
"6.1.0-56"``, or ``GDBKD_ABI=debian-6.1=6.1.0-56``), a pinned ABI already in the
cache is used without asking the archive, and :func:`cached_kernels` lists every
kernel the cache holds with its build-id (``gdbkd fetch --list``).
:func:`kernel_for_release` gives the kernel of a release (a dump's OSRELEASE):
from the cache, else from the archive while it still carries that ABI.
The :class:`Kernel` record, the cache directories' layout and the .gdb_index are
:mod:`.kerneldir`'s; ``source = "local"`` profiles are :mod:`.prebuilt`'s.
"""

import json
import os
import re
import subprocess
from pathlib import Path

from ..cache import cache_root, key_of, progress, atomic_dir, atomic_write
from ..errors import GdbkdError
from ..progress import Bar
from .apt import Apt
from .kerneldir import Kernel, kernel_from_dir, add_gdb_index, compact_gdb_index, run_tool

__all__ = ["ensure_kernel", "cached_kernels", "kernel_for_release", "pinned_abi"]


def _vkey(s):
    return [int(x) if x.isdigit() else x for x in re.split(r"(\d+)", s)]


def _extract(deb: Path, dest: Path, *members, label=None):
    """Extract selected members (tar patterns) of a .deb's data into dest; the data
    stream goes through this process to show LABEL's bar (its size: Installed-Size)."""
    dest.mkdir(parents=True, exist_ok=True)
    size = subprocess.run(["dpkg-deb", "-f", str(deb), "Installed-Size"], capture_output=True, text=True).stdout
    p1 = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
    p2 = subprocess.Popen(["tar", "-x", "-C", str(dest), "--wildcards", *members],
                          stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        with Bar(label or f"unpacking {deb.name}", int(size.strip() or 0) * 1024) as bar:
            for chunk in iter(lambda: p1.stdout.read(1 << 20), b""):
                p2.stdin.write(chunk)
                bar.update(len(chunk))
    except BrokenPipeError:
        pass                                   # tar failed: its message below
    finally:
        for p in (p1, p2):
            for f in (p.stdin, p.stdout):
                if f:
                    f.close()
    err = p2.stderr.read().decode(errors="replace")
    p2.stderr.close()
    if p2.wait() != 0 or p1.wait() != 0:
        raise GdbkdError(f"cannot unpack {deb.name}: {err.strip()[:200] or 'dpkg-deb failed'}")


def pinned_abi(profile):
    """The ABI PROFILE is pinned to (``GDBKD_ABI=PROFILE=ABI[,…]`` first, then the
    profile's ``[kernel] abi``), or None for the newest. A pin that the profile's
    ``abi_regex`` does not match is refused."""
    pin = None
    for item in os.environ.get("GDBKD_ABI", "").split(","):
        name, _, abi = item.strip().partition("=")
        if abi and name == profile.name:
            pin = abi.strip()
    pin = pin or profile.kernel.get("abi")
    if pin and not re.fullmatch(profile.kernel.get("abi_regex", ".*"), pin):
        raise GdbkdError(f"profile {profile.name}: ABI {pin!r} is not of its series "
                         f"(abi_regex {profile.kernel.get('abi_regex')})")
    return pin or None


def _debian_candidates(apt: Apt, kcfg, pin=None):
    flavour = kcfg.get("flavour", "cloud-arm64")
    rx = re.compile(rf"^linux-image-({kcfg['abi_regex']})-{re.escape(flavour)}-dbg$")
    abis = sorted({m.group(1) for n in apt.pkgnames("linux-image-") if (m := rx.match(n))},
                  key=_vkey, reverse=True)
    if pin:
        abis = [a for a in abis if a == pin]
    for abi in abis:
        rel = f"{abi}-{flavour}"
        img = apt.show(f"linux-image-{rel}-unsigned:arm64")
        dbg = apt.show(f"linux-image-{rel}-dbg:arm64")
        hdr = apt.show(f"linux-headers-{rel}:arm64")
        if not (img and dbg and hdr):
            continue
        deps = [d.strip().split()[0] for d in hdr.get("Depends", "").split(",")]
        common = next((d for d in deps if d.startswith("linux-headers-") and d.endswith("-common")), None)
        kbuild = next((d for d in deps if d.startswith("linux-kbuild-")), None)
        com = apt.show(f"{common}:all", version=hdr["Version"]) if common else None
        kb = apt.show(f"{kbuild}:amd64", version=hdr["Version"]) if kbuild else None
        if not (com and kb):
            continue
        pkgs = [(f"linux-image-{rel}-unsigned", "arm64", img), (f"linux-image-{rel}-dbg", "arm64", dbg),
                (f"linux-headers-{rel}", "arm64", hdr), (common, "all", com), (kbuild, "amd64", kb)]
        yield rel, pkgs


def _build_kernel_dir(rel, debs, kcfg, out: Path):
    img_deb, dbg_deb, hdr_deb, com_deb, kb_deb = debs
    # bookworm ships /lib/modules, trixie (merged /usr) /usr/lib/modules: take the whole image
    _extract(img_deb, out / "pkg", "./boot/*", "./*lib/modules/*", label=f"unpacking kernel {rel}")
    _extract(dbg_deb, out / "pkg", f"./usr/lib/debug/boot/vmlinux-{rel}", f"./usr/lib/debug/boot/System.map-{rel}",
             label=f"unpacking vmlinux of {rel}")
    hdr = out / "hdr"
    for d in (hdr_deb, com_deb, kb_deb):
        run_tool(["dpkg-deb", "-x", str(d), str(hdr)], f"unpack {d.name}")
    kdir = hdr / "usr/src" / f"linux-headers-{rel}"
    # The flavour headers include the common ones by absolute /usr/src path.
    for mk in [kdir / "Makefile"]:
        if mk.exists():
            txt = mk.read_text()
            mk.write_text(txt.replace("/usr/src/", f"{hdr}/usr/src/"))
    # Kernel packages of 6.12 ship .ko.xz; busybox insmod wants plain .ko.
    if (out / "pkg/usr/lib/modules").is_dir() and not (out / "pkg/lib/modules").exists():
        (out / "pkg/lib").mkdir(parents=True, exist_ok=True)
        os.replace(out / "pkg/usr/lib/modules", out / "pkg/lib/modules")
    xzs = [str(p) for p in (out / "pkg/lib/modules").rglob("*.ko.xz")]
    for i in range(0, len(xzs), 200):
        run_tool(["xz", "-d", *xzs[i:i + 200]], "xz -d modules")
    zss = [str(p) for p in (out / "pkg/lib/modules").rglob("*.ko.zst")]
    for i in range(0, len(zss), 200):
        run_tool(["zstd", "-q", "-d", "--rm", *zss[i:i + 200]], "zstd -d modules")
    vmlinux = out / f"vmlinux-{rel}"
    os.replace(out / "pkg/usr/lib/debug/boot" / f"vmlinux-{rel}", vmlinux)
    os.replace(out / "pkg/usr/lib/debug/boot" / f"System.map-{rel}", out / "System.map")
    os.replace(out / "pkg/boot" / f"vmlinuz-{rel}", out / "Image")
    os.replace(out / "pkg/boot" / f"config-{rel}", out / "config")
    add_gdb_index(vmlinux)


def _fix_paths_after_rename(tmp: Path, final: Path):
    mk = next((final / "hdr/usr/src").glob("linux-headers-*[!n]/Makefile"), None)
    for mk in (final / "hdr/usr/src").glob("*/Makefile"):
        txt = mk.read_text()
        if str(tmp) in txt:
            mk.write_text(txt.replace(str(tmp), str(final)))


def ensure_kernel(profile, offline_ok=True, abi=None) -> Kernel:
    """Return the profile's kernel artifacts, fetching and unpacking them if needed, with
    the profile's module toolchain applied (``[kernel] toolchain``, e.g. trixie-gcc-14).
    ABI: this ABI of the profile's series (default: the pin, else the newest)."""
    k = _ensure_kernel(profile, offline_ok, abi)
    if profile.kernel.get("toolchain"):
        from .toolchain import apply_toolchain
        apply_toolchain(k, profile.kernel["toolchain"])
    return k


def _ensure_kernel(profile, offline_ok=True, abi=None) -> Kernel:
    kcfg = profile.kernel
    if kcfg.get("source") == "local":
        from .prebuilt import local_kernel
        return local_kernel(profile)
    pin = abi or pinned_abi(profile)
    if pin:
        # a pinned ABI already unpacked needs no archive (which may have dropped it)
        k = _cached_release(f"{pin}-{kcfg.get('flavour', 'cloud-arm64')}", kcfg)
        if k is not None:
            return k
    pointer = cache_root() / "kernels" / (f"{profile.name}@{pin}.json" if pin else f"{profile.name}.json")
    if pointer.exists() and os.environ.get("GDBKD_REFRESH") != "1":
        # Resolved recently: do not ask the archive again on every run (speed, offline use).
        import time
        k = Kernel(**json.loads(pointer.read_text()))
        k.make_vars = dict(kcfg.get("make_vars", {}))     # the profile, not the cached copy, decides
        fresh = time.time() - pointer.stat().st_mtime < 7 * 86400
        if fresh and Path(k.vmlinux).exists() and Path(k.image).exists():
            compact_gdb_index(Path(k.vmlinux))      # kernels cached before the compaction existed
            return k
    apt = Apt(kcfg["suites"])
    try:
        apt.update()
    except GdbkdError as e:
        if pointer.exists():
            k = Kernel(**json.loads(pointer.read_text()))
            k.make_vars = dict(kcfg.get("make_vars", {}))
            if Path(k.vmlinux).exists() and Path(k.image).exists():
                progress(f"{e}; using the cached kernel {k.release}")
                return k
        # any kernel of the series the cache holds (newest first), e.g. one unpacked
        # under another profile name or pin
        flavour = kcfg.get("flavour", "cloud-arm64")
        for rel, _ in _complete_dirs():
            if re.fullmatch(rf"({re.escape(pin) if pin else kcfg['abi_regex']})-{re.escape(flavour)}", rel):
                k = _cached_release(rel, kcfg)
                if k is not None:
                    progress(f"{e}; using the cached kernel {k.release}")
                    return k
        raise GdbkdError(f"kernel for profile {profile.name} is not cached and {e}", 3)
    last_err = None
    for rel, pkgs in _debian_candidates(apt, kcfg, pin):
        key = key_of(*(p[2].get("SHA256", p[2]["Version"]) for p in pkgs))
        d = cache_root() / "kernels" / f"{rel}-{key}"
        if not (d / ".complete").exists():
            try:
                debs = [apt.download(n, a, f["Version"], cache_root() / "debs", size=f.get("Size"))
                        for n, a, f in pkgs]
            except GdbkdError as e:
                last_err = e
                progress(f"{e}; trying an older ABI")
                continue
            with atomic_dir(d) as tmp:
                _build_kernel_dir(rel, debs, kcfg, tmp)
                (tmp / ".complete").write_text(rel + "\n")
            _fix_paths_after_rename(tmp, d)
        k = kernel_from_dir(rel, d, kcfg)
        compact_gdb_index(Path(k.vmlinux))
        with atomic_write(pointer, "w") as f:
            json.dump(k.to_json(), f, indent=1)
        return k
    what = f"ABI {pin}" if pin else "kernel package set"
    raise GdbkdError(f"no complete {what} for profile {profile.name} in "
                     f"{', '.join(kcfg['suites'])}" + (f" ({last_err})" if last_err else ""), 3)


def _complete_dirs():
    """(release, directory) of every kernel unpacked in the cache, newest first."""
    root = cache_root() / "kernels"
    out = []
    for done in root.glob("*/.complete") if root.is_dir() else ():
        try:
            rel = done.read_text().strip()
        except OSError:
            continue
        if rel:
            out.append((rel, done.parent))
    out.sort(key=lambda rd: (_vkey(rd[0]), rd[1].stat().st_mtime), reverse=True)
    return out


def _cached_release(release, kcfg=None):
    """The cached Kernel of RELEASE (its newest unpacking), or None."""
    for rel, d in _complete_dirs():
        if rel == release:
            k = kernel_from_dir(rel, d, kcfg or {})
            if Path(k.vmlinux).is_file() and Path(k.image).is_file():
                return k
    return None


def cached_kernels():
    """Every kernel the cache holds: dicts of release, build_id, vmlinux, image, dir
    (newest release first). The build-id is read from each vmlinux's note."""
    from ..target.offsets import vmlinux_build_id
    out = []
    for rel, d in _complete_dirs():
        k = kernel_from_dir(rel, d, {})
        try:
            bid = vmlinux_build_id(k.vmlinux)
        except GdbkdError:
            continue                      # an unpacking whose vmlinux is gone or damaged
        out.append({"release": rel, "build_id": bid, "vmlinux": k.vmlinux, "image": k.image,
                    "dir": str(d)})
    return out


def _profiles_for_release(release):
    """(profile, ABI) of each Debian profile whose series and flavour name RELEASE."""
    from ..qemu.profiles import list_profiles, load_profile
    for name in list_profiles():
        try:
            p = load_profile(name)
        except GdbkdError:
            continue
        kcfg = p.kernel
        if kcfg.get("source") != "debian" or "abi_regex" not in kcfg:
            continue
        flavour = kcfg.get("flavour", "cloud-arm64")
        m = re.fullmatch(rf"({kcfg['abi_regex']})-{re.escape(flavour)}", release)
        if m:
            yield p, m.group(1)


def kernel_for_release(release, download=True) -> Kernel:
    """The Kernel of RELEASE (e.g. a dump's OSRELEASE ``6.1.0-56-cloud-arm64``): the
    cached one, else (DOWNLOAD) the archive's packages of that ABI through the
    profile of its series. Raises GdbkdError (one line) saying where it looked."""
    k = _cached_release(release)
    if k is not None:
        return k
    profiles = list(_profiles_for_release(release))
    if not profiles:
        raise GdbkdError(f"{release} is not the release of a Debian kernel any profile knows")
    if not download:
        raise GdbkdError(f"{release} is not in the cache (downloads are off)")
    errors = []
    for p, abi in profiles:
        try:
            return ensure_kernel(p, abi=abi)
        except GdbkdError as e:
            errors.append(str(e))
    raise GdbkdError("; ".join(errors))
