"""gdbkd's own root for kernels that cannot take an initramfs: busybox on ext4 (virtio-blk).

The course's 5.0 kernel is built without ``CONFIG_BLK_DEV_INITRD`` and boots
``root=/dev/vda``. Without the course's own rootfs (``$RLK_ROOTFS``), gdbkd
gives it the initramfs's content (:func:`initramfs.base_content`: busybox-static,
the boot modules) on an ext4 image, with the initramfs's init as ``/sbin/init``
(the first init the kernel tries), so the guest prints the same ``GDBKD-READY``
marker and the whole run/attach machinery works on it.

The base image is built without root privileges (``mkfs.ext4 -d DIR``, e2fsprogs;
``debugfs`` adds ``/dev/console``, which the kernel opens for init before
devtmpfs is mounted) and cached under the same content key as the initramfs.
Each run gets its own copy (the guest mounts it read-write), with the run's
files (modules, helpers, ``/etc/gdbkd.rc``) written in by ``debugfs``.
"""

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from ..cache import cache_root, atomic_write, key_of
from ..errors import GdbkdError
from .initramfs import base_content, BASE_DIRS, INIT_SCRIPT, READY_MARKER

__all__ = ["ensure_base_rootfs", "write_rootfs", "disk_args", "guest_root", "guest_boot"]

#: the image's size (sparse: the content is a few MB); room for per-run files
ROOTFS_SIZE = "64M"
#: files up to this size fit in a run's copy as it is; larger ones grow it (:func:`write_rootfs`)
_ROOM = 16 << 20
#: what this module adds beside the initramfs's content (a new value rebuilds cached images)
_LAYOUT = "sbin/init, dev/console, dev/null"


def _tool(name):
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if path is None:
        raise GdbkdError(f"{name} not found: run ./install.sh (apt: e2fsprogs)")
    return path


def _run(cmd, what):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        err = (r.stderr.strip().splitlines() or ["failed"])[-1]
        raise GdbkdError(f"{what}: {err[:200]}")
    return r


def _debugfs(image: Path, commands: list):
    """Run debugfs requests on ``image`` (read-write); a request it refuses is an error."""
    with tempfile.NamedTemporaryFile("w", suffix=".debugfs") as f:
        f.write("\n".join(commands) + "\n")
        f.flush()
        r = _run([_tool("debugfs"), "-w", "-f", f.name, str(image)], "debugfs")
    # debugfs exits 0 whatever its requests did; it reports failures on stderr
    bad = [l for l in r.stderr.splitlines()
           if l.strip() and not l.startswith("debugfs ") and "already exists" not in l]
    if bad:
        raise GdbkdError(f"debugfs on {image.name}: {bad[0][:200]}")


def ensure_base_rootfs(kernel, boot_modules) -> Path:
    """The cached base ext4 image for ``kernel`` (see the module docstring)."""
    files, key = base_content(kernel, boot_modules)
    out = cache_root() / "rootfs" / f"base-{kernel.release}-{key}-{key_of(ROOTFS_SIZE, _LAYOUT)}.ext4"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".stage.", dir=out.parent) as stage:
        root = Path(stage) / "root"
        for d in BASE_DIRS:
            (root / d).mkdir(parents=True, exist_ok=True)
        (root / "bin/sh").symlink_to("busybox")
        for name, (data, mode) in {**files, "sbin/init": (INIT_SCRIPT.encode(), 0o755)}.items():
            (root / name).write_bytes(data)
            os.chmod(root / name, mode)
        img = Path(stage) / "root.ext4"
        _run([_tool("mkfs.ext4"), "-q", "-F", "-L", "gdbkd", "-E", "root_owner=0:0",
              "-d", str(root), str(img), ROOTFS_SIZE], "mkfs.ext4")
        # (debugfs's mknod wants a name in the current directory, not a path)
        _debugfs(img, ["cd /dev", "mknod console c 5 1", "sif console mode 020600",
                       "mknod null c 1 3", "sif null mode 020666"])
        with atomic_write(out) as f, open(img, "rb") as src:
            shutil.copyfileobj(src, f)
    return out


def _grow(image: Path, extra: int):
    """Make ``image`` ``extra`` bytes larger, its file system with it (resize2fs, offline)."""
    mib = -(-extra // (1 << 20))
    with open(image, "r+b") as f:
        f.truncate(image.stat().st_size + (mib << 20))
    _run([_tool("resize2fs"), "-f", str(image)], "resize2fs")


def write_rootfs(base: Path, files: dict, out: Path, rc: str = "") -> Path:
    """``out`` = a copy of ``base`` with ``files`` (guest path → host path or bytes,
    as :func:`initramfs.write_overlay` takes them) and ``rc`` as /etc/gdbkd.rc. Files
    under ``bin/``/``sbin/`` given as bytes are executable. The copy grows by the
    files' size when they are larger than the room :data:`ROOTFS_SIZE` leaves (a kdump
    run's kernel Image and tools)."""
    _run(["cp", "--sparse=always", str(base), str(out)], "copy the root image")
    size = sum(len(v) if isinstance(v, bytes) else Path(v).stat().st_size for v in files.values())
    if size > _ROOM:
        _grow(out, size + _ROOM)
    staged = Path(tempfile.mkdtemp(prefix="rootfs-files-", dir=out.parent))
    try:
        cmds, dirs = [], set(BASE_DIRS)
        items = dict(files)
        if rc:
            items["etc/gdbkd.rc"] = rc.encode()
        for i, (gp, src) in enumerate(items.items()):
            parts = Path(gp).parts[:-1]
            for j in range(1, len(parts) + 1):
                d = "/".join(parts[:j])
                if d not in dirs:
                    dirs.add(d)
                    cmds.append(f"mkdir /{d}")
            if isinstance(src, bytes):
                host = staged / str(i)
                host.write_bytes(src)
                executable = gp == "etc/gdbkd.rc" or gp.startswith(("bin/", "sbin/"))
                os.chmod(host, 0o755 if executable else 0o644)
            else:
                host = Path(src)
            cmds.append(f'write "{host}" /{gp}')
        if cmds:
            _debugfs(out, cmds)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    return out


def disk_args(image) -> list:
    """QEMU arguments for ``image`` as the guest's /dev/vda (the course's virtio-blk device)."""
    return ["-drive", f"if=none,file={image},id=hd0,format=raw",
            "-device", "virtio-blk-device,drive=hd0"]


def guest_root(profile, kernel, files: dict, rc: str, run_dir: Path, own_allowed: bool = True):
    """How a profile without an initramfs gets its root: ``(qemu_args, ready)``.

    ``[guest] rootfs`` (the course's ``${RLK_ROOTFS}``) when it is set, waiting for
    ``[guest] rootfs_ready`` on the console (its own init's ``login:``); else gdbkd's
    own image with the run's files, waiting for ``GDBKD-READY``. ``[guest] share``
    (``${RLK_SHARE}``), when set, is the course's 9p share (mount_tag kmod_mount).
    ``own_allowed=False`` (a kdump run, whose tools must be on the root) always takes
    gdbkd's own image."""
    g = profile.guest
    share = profile.expand_optional(g.get("share", ""))
    args = []
    if share:
        args += ["-fsdev", f"local,id=kmod_dev,path={share},security_model=none",
                 "-device", "virtio-9p-pci,fsdev=kmod_dev,mount_tag=kmod_mount"]
    own = profile.expand_optional(g.get("rootfs", "")) if own_allowed else ""
    if own:
        if not Path(own).is_file():
            raise GdbkdError(f"profile {profile.name}: rootfs {own} does not exist")
        if files or rc:
            raise GdbkdError(f"profile {profile.name}: modules and files go into gdbkd's own root "
                             f"only; unset RLK_ROOTFS (or put them in the 9p share)")
        return disk_args(own) + args, g.get("rootfs_ready", "login:")
    base = ensure_base_rootfs(kernel, g.get("boot_modules", []))
    return disk_args(write_rootfs(base, files, run_dir / "root.ext4", rc)) + args, READY_MARKER


def guest_boot(profile, kernel, files: dict, rc: str, run_dir: Path, own_allowed: bool = True):
    """How a profile's guest boots with ``files`` and ``rc``: ``(initrd, qemu_args, ready)``.
    An initramfs overlay (``initrd.img`` in ``run_dir``), or for a kernel without
    initramfs support (``[guest] initramfs = false``) its root disk (:func:`guest_root`)."""
    if not profile.guest.get("initramfs", True):
        args, ready = guest_root(profile, kernel, files, rc, run_dir, own_allowed)
        return None, args, ready
    from .initramfs import ensure_base_initramfs, write_overlay
    base = ensure_base_initramfs(kernel, profile.guest.get("boot_modules", []))
    return write_overlay(base, files, Path(run_dir) / "initrd.img", rc=rc), [], READY_MARKER
