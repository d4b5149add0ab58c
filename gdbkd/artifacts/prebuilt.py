"""A kernel built elsewhere and handed over as files: the course's 5.0 build.

A *prebuilt directory* (``../shared/kernels/rlk-5.0`` beside the repo, or
``[kernel] prebuilt`` of a profile) holds ``Image.xz``, ``vmlinux.xz``,
``kbuild.tar.xz`` (an ``rlk-kbuild/`` tree for out-of-tree modules),
``modules.tar.xz`` (``lib/modules/REL/``), ``config-REL`` and ``SHA256SUMS`` (of
those files and of the unpacked ``vmlinux`` and ``arch/arm64/boot/Image``).

:func:`ensure_prebuilt` checks every file against SHA256SUMS and unpacks them
into the content-keyed cache (``kernels/NAME-KEY``, KEY from SHA256SUMS), in a
temporary directory renamed into place; the vmlinux gets a .gdb_index there (so
its own checksum is checked before). Nothing is unpacked twice.
"""

import hashlib
import subprocess
from pathlib import Path

from ..cache import cache_root, key_of, atomic_dir, progress
from ..errors import GdbkdError
from ..progress import Ticker
from .kerneldir import Kernel, add_gdb_index, kernel_from_dir

__all__ = ["ensure_prebuilt", "read_sums", "local_kernel"]


def read_sums(src: Path) -> dict:
    """SHA256SUMS of a prebuilt directory: {name: hex digest}."""
    try:
        text = (src / "SHA256SUMS").read_text()
    except OSError as e:
        raise GdbkdError(f"prebuilt kernel {src}: cannot read SHA256SUMS ({e.strerror})")
    sums = {}
    for line in text.splitlines():
        digest, _, name = line.strip().partition("  ")
        if digest and name:
            sums[name.lstrip("*")] = digest
    return sums


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _check(path: Path, sums: dict, name: str):
    want = sums.get(name)
    if want is None:
        raise GdbkdError(f"prebuilt kernel: SHA256SUMS lists no {name}")
    if _sha256(path) != want:
        raise GdbkdError(f"prebuilt kernel: {path} does not match its SHA256SUMS entry ({name})")


def _unxz(src: Path, dest: Path):
    with open(dest, "wb") as out:
        r = subprocess.run(["xz", "-dc", str(src)], stdout=out, stderr=subprocess.PIPE)
    if r.returncode != 0:
        raise GdbkdError(f"cannot unpack {src}: {r.stderr.decode(errors='replace').strip()[:200]}")


def _untar(src: Path, dest: Path):
    dest.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["tar", "-xJf", str(src), "-C", str(dest)], capture_output=True, text=True)
    if r.returncode != 0:
        raise GdbkdError(f"cannot unpack {src}: {r.stderr.strip()[:200]}")


def ensure_prebuilt(src, name: str, release: str, make_vars=None) -> Kernel:
    """The unpacked, checked kernel of the prebuilt directory ``src`` (see the module
    docstring); ``name`` names the cache entry, ``release`` is the kernel's uname -r."""
    src = Path(src)
    sums = read_sums(src)
    d = cache_root() / "kernels" / f"{name}-{key_of(*sorted(sums.items()))}"
    if not (d / ".complete").exists():
        packed = ["Image.xz", "vmlinux.xz", "kbuild.tar.xz", "modules.tar.xz", f"config-{release}"]
        for f in packed:
            if not (src / f).is_file():
                raise GdbkdError(f"prebuilt kernel {src}: {f} is missing")
        with atomic_dir(d) as tmp:
            with Ticker(f"unpacking the prebuilt kernel {name} from {src} (one time)"):
                for f in packed:
                    _check(src / f, sums, f)
                _unxz(src / "Image.xz", tmp / "Image")
                _check(tmp / "Image", sums, "arch/arm64/boot/Image")
                _unxz(src / "vmlinux.xz", tmp / "vmlinux")
                _check(tmp / "vmlinux", sums, "vmlinux")
                _untar(src / "kbuild.tar.xz", tmp)
                _untar(src / "modules.tar.xz", tmp)
                (tmp / "config").write_bytes((src / f"config-{release}").read_bytes())
            add_gdb_index(tmp / "vmlinux")
            (tmp / ".complete").write_text(release + "\n")
        progress(f"prebuilt kernel {name} unpacked into {d}")
    return kernel_from_dir(release, d, {"make_vars": make_vars or {}})


def local_kernel(profile) -> Kernel:
    """A ``source = "local"`` profile's kernel, from the first of: the user's paths
    (``image``/``vmlinux``/``kdir``, e.g. ``${RLK_IMAGE}``), one variable naming the
    kernel tree (``tree``, e.g. ``${RLK_TREE}``, with ``tree_files`` inside it), and
    the ``prebuilt`` directory (relative to the repo root; :func:`ensure_prebuilt`)."""
    kcfg = profile.kernel
    release = kcfg.get("release", profile.series)
    make_vars = dict(kcfg.get("make_vars", {}))
    given = [w for w in ("image", "vmlinux", "kdir") if profile.expand_optional(kcfg.get(w, ""))]
    tree = profile.expand_optional(kcfg.get("tree", ""))
    prebuilt = kcfg.get("prebuilt") and Path(__file__).resolve().parents[2] / kcfg["prebuilt"]
    if given or not tree and not (prebuilt and prebuilt.is_dir()):
        # the user's paths (expand names a variable that is missing)
        k = Kernel(release=release,
                   image=profile.expand(kcfg["image"], "kernel.image"),
                   vmlinux=profile.expand(kcfg["vmlinux"], "kernel.vmlinux"),
                   kdir=profile.expand_optional(kcfg.get("kdir", "")) or "", make_vars=make_vars)
    elif tree:
        root = Path(tree)
        if not root.is_dir():
            raise GdbkdError(f"profile {profile.name}: kernel tree {tree} is not a directory")
        rel_file = root / "include/config/kernel.release"
        if rel_file.is_file():
            release = rel_file.read_text().strip() or release
        inside = kcfg.get("tree_files", {})
        k = Kernel(release=release, image=str(root / inside.get("image", "arch/arm64/boot/Image")),
                   vmlinux=str(root / inside.get("vmlinux", "vmlinux")), kdir=str(root),
                   make_vars=make_vars)
    else:
        return ensure_prebuilt(prebuilt, profile.name, release, make_vars)
    for what in ("image", "vmlinux"):
        if not Path(getattr(k, what)).is_file():
            raise GdbkdError(f"profile {profile.name}: {what} {getattr(k, what)} does not exist")
    return k
