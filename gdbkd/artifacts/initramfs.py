"""A busybox-static:arm64 initramfs, plus per-run overlays carrying modules and files.

The base image (busybox + /init + the profile's boot modules) is cached, keyed
by the busybox .deb and the kernel release. Per-run files (lab modules, helper
binaries) go in a second newc archive appended to the first: the kernel
unpacks concatenated archives in order.

/init mounts proc/sys/dev, loads the boot modules (qemu_fw_cfg so QEMU dumps
carry VMCOREINFO), runs /etc/gdbkd.rc if present, prints the marker
``GDBKD-READY`` and starts a shell on the console.
"""

import gzip
import io
import os
import shutil
import stat
import subprocess
from pathlib import Path

from ..cache import cache_root, key_of, progress, atomic_write
from ..errors import GdbkdError
from .apt import Apt

__all__ = ["ensure_base_initramfs", "write_overlay", "base_content", "BASE_DIRS", "READY_MARKER",
           "INIT_SCRIPT"]

READY_MARKER = "GDBKD-READY"

INIT_SCRIPT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
mkdir -p /proc /sys /dev /tmp /mnt /root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts && mount -t devpts devpts /dev/pts
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
for m in $(cat /etc/gdbkd.boot_modules 2>/dev/null); do insmod /lib/modules/boot/$m.ko 2>/dev/null; done
hostname gdbkd
export PS1='gdbkd# ' HOME=/root PATH=/bin:/sbin:/usr/bin:/usr/sbin
[ -f /etc/gdbkd.rc ] && . /etc/gdbkd.rc
echo GDBKD-""READY
exec setsid cttyhack sh
"""


class _Cpio:
    """Minimal newc writer (the kernel's initramfs format)."""

    def __init__(self):
        self.buf = io.BytesIO()
        self.ino = 1000

    def _hdr(self, name, mode, size, nlink=1):
        self.ino += 1
        name_b = name.encode() + b"\0"
        fields = [self.ino, mode, 0, 0, nlink, 0, size, 0, 0, 0, 0, len(name_b), 0]
        h = b"070701" + b"".join(b"%08X" % f for f in fields)
        self.buf.write(h + name_b)
        self._pad()

    def _pad(self):
        self.buf.write(b"\0" * ((4 - self.buf.tell() % 4) % 4))

    def dir(self, name):
        self._hdr(name, stat.S_IFDIR | 0o755, 0, 2)

    def file(self, name, data: bytes, mode=0o644):
        self._hdr(name, stat.S_IFREG | mode, len(data))
        self.buf.write(data)
        self._pad()

    def symlink(self, name, target):
        t = target.encode()
        self._hdr(name, stat.S_IFLNK | 0o777, len(t))
        self.buf.write(t)
        self._pad()

    def finish(self) -> bytes:
        self._hdr("TRAILER!!!", 0, 0)
        data = self.buf.getvalue()
        return data + b"\0" * ((512 - len(data) % 512) % 512)


def _busybox() -> Path:
    d = cache_root() / "busybox"
    bb = d / "busybox"
    if bb.exists():
        return bb
    apt = Apt(["bookworm"])
    apt.update()
    f = apt.show("busybox-static:arm64")
    if not f:
        raise GdbkdError("busybox-static:arm64 not found in the Debian archive")
    deb = apt.download("busybox-static", "arm64", f["Version"], cache_root() / "debs", size=f.get("Size"))
    tmp = d / f".x{os.getpid()}"
    tmp.mkdir(parents=True, exist_ok=True)
    subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp)], check=True)
    with atomic_write(bb) as out:
        out.write((tmp / "bin/busybox").read_bytes())
    os.chmod(bb, 0o755)
    shutil.rmtree(tmp)
    return bb


def _find_module(modules_dir: Path, name: str):
    for cand in modules_dir.rglob(f"{name}.ko"):
        return cand
    alt = name.replace("_", "-")
    for cand in modules_dir.rglob(f"{alt}.ko"):
        return cand
    return None


#: the base image's directories (the guest's root)
BASE_DIRS = ("bin", "sbin", "etc", "proc", "sys", "dev", "tmp", "root", "mnt",
             "lib", "lib/modules", "lib/modules/boot", "usr", "usr/bin", "usr/sbin")


def base_content(kernel, boot_modules):
    """What every gdbkd guest root holds besides its init: ``(files, key)`` where
    ``files`` maps a guest path to (bytes, mode) and ``key`` names that content
    (busybox, the kernel release, the boot modules) for the cache."""
    bb = _busybox()
    mods = []
    for m in boot_modules:
        p = _find_module(Path(kernel.modules_dir), m) if kernel.modules_dir else None
        if p is None:
            progress(f"boot module {m} not in {kernel.release}'s modules (built in?): skipped")
            continue
        mods.append(p)
    files = {"bin/busybox": (bb.read_bytes(), 0o755),
             "etc/gdbkd.boot_modules": ("".join(m.stem + "\n" for m in mods).encode(), 0o644)}
    for m in mods:
        files[f"lib/modules/boot/{m.name}"] = (m.read_bytes(), 0o644)
    key = key_of(bb.stat().st_size, kernel.release, INIT_SCRIPT, *[m.name for m in mods])
    return files, key


def ensure_base_initramfs(kernel, boot_modules) -> Path:
    """Return the cached base initramfs (gzip newc) for this kernel."""
    files, key = base_content(kernel, boot_modules)
    out = cache_root() / "initramfs" / f"base-{kernel.release}-{key}.cpio.gz"
    if out.exists():
        return out
    c = _Cpio()
    for d in BASE_DIRS:
        c.dir(d)
    c.symlink("bin/sh", "busybox")
    c.file("init", INIT_SCRIPT.encode(), 0o755)
    for name, (data, mode) in files.items():
        c.file(name, data, mode)
    with atomic_write(out) as f:
        f.write(gzip.compress(c.finish(), 6))
    return out


def write_overlay(base: Path, files: dict, out: Path, rc: str = ""):
    """Write ``out`` = base + an uncompressed newc archive with ``files``.

    ``files`` maps a guest path (relative, e.g. "lib/modules/gdbkd/lab1.ko") to a
    host path or bytes; ``rc`` becomes /etc/gdbkd.rc, run by /init before the shell.
    """
    c = _Cpio()
    dirs = set()
    for gp in files:
        parts = Path(gp).parts[:-1]
        for i in range(1, len(parts) + 1):
            dirs.add("/".join(parts[:i]))
    for d in sorted(dirs):
        c.dir(d)
    for gp, src in files.items():
        data = src if isinstance(src, bytes) else Path(src).read_bytes()
        mode = 0o755 if (not isinstance(src, bytes) and os.access(src, os.X_OK)) else 0o644
        c.file(gp, data, mode)
    if rc:
        c.file("etc/gdbkd.rc", rc.encode(), 0o755)
    with atomic_write(out) as f:
        data = base.read_bytes()
        # the kernel looks for the next archive's header at a 4-byte aligned offset
        f.write(data + b"\0" * ((512 - len(data) % 512) % 512))
        f.write(c.finish())
    return out
