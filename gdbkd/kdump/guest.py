"""What the two kernels of a kdump run need in their initramfs, and their scripts.

The first kernel's overlay carries kexec and its libraries, the kernel Image to
kexec into and the capture initramfs; its rc loads the capture kernel with
``kexec -p`` (kexec_load(2) with KEXEC_ON_CRASH) before the caller's rc runs.
The capture initramfs (the same busybox base) carries makedumpfile and its
libraries plus the virtio-mmio / virtio-blk modules; its rc writes
``makedumpfile -F -c -d 31 /proc/vmcore`` to the raw dump disk and powers the
machine off.

A kernel that cannot take an initramfs (the course's 5.0: no
``CONFIG_BLK_DEV_INITRD``) boots gdbkd's ext4 root on virtio-blk instead
(:mod:`gdbkd.artifacts.rootfs`). The same files then go onto that root, the
capture kernel is loaded without ``--initrd`` and boots the same root with
``init=`` :data:`CAPTURE_INIT` (a script doing what the capture initramfs's
init and rc do). The dump disk is then a second virtio disk, so the capture
script finds it by :data:`DISK_MAGIC`, written at its start by the host, not
by its name (QEMU virt's virtio-mmio slots name the disks in reverse command
line order).

Two kexec-tools 2.0.25 details handled here (arm64):

- it looks up ``_text`` in /proc/kallsyms, which a kernel without
  CONFIG_KALLSYMS_ALL does not list (kallsyms only keeps text symbols between
  ``_stext`` and ``_etext`` then). The rc writes a copy of /proc/kallsyms with a
  ``_text`` line computed from ``_stext`` and the vmlinux's own
  ``_stext - _text`` (64 KiB on arm64 since 5.8's TEXT_OFFSET removal, read
  from the vmlinux rather than assumed), bind-mounts it over /proc/kallsyms for
  the load and unmounts it afterwards.
- with ``nokaslr`` it refuses the device tree ("kaslr-seed is not wiped to
  0"): kdump runs keep KASLR on.

The scripts make an oops or a hung-task report panic (``panic_on_oops``,
``hung_task_panic``): an oops in process context otherwise only kills the task
(``kexec_should_crash()`` in kernel/kexec_core.c) and no dump is taken.
"""

import re
import shlex
from pathlib import Path

from ..errors import GdbkdError
from .tools import LIB_DIRS

__all__ = ["CAPTURE_MODULES", "GUEST_DIR", "DISK_MAGIC", "CAPTURE_INIT", "MARK_LOADED",
           "MARK_CAPTURE", "MARK_DONE", "module_closure", "text_delta", "first_rc", "capture_rc",
           "capture_init", "capture_append", "capture_module_files"]

#: Modules the capture kernel loads to see the dump disk (=m in Debian's 6.1 cloud kernel).
CAPTURE_MODULES = ("virtio_mmio", "virtio_blk")
GUEST_DIR = "boot/gdbkd-kdump"          # Image and capture initramfs in the first kernel
CAPTURE_MODULE_DIR = "lib/modules/kdump"
#: The host writes this at the start of the dump disk; the capture kernel writes the dump over it.
DISK_MAGIC = "GDBKD-KDUMP-DISK"
#: The capture kernel's init on a root disk (kernels without initramfs support).
CAPTURE_INIT = "sbin/gdbkd-capture"
MARK_LOADED = "GDBKD-KDUMP-LOADED="     # + /sys/kernel/kexec_crash_loaded
MARK_CAPTURE = "GDBKD-KDUMP-CAPTURE"    # the capture kernel's rc started
MARK_DONE = "GDBKD-KDUMP-DONE rc="      # + makedumpfile's exit status

_LD_PATH = ":".join("/" + d for d in LIB_DIRS)


def _modinfo_depends(ko: Path):
    m = re.search(rb"(?:^|\0)depends=([^\0]*)\0", ko.read_bytes())
    return [d for d in (m.group(1).decode().split(",") if m else []) if d]


def module_closure(modules_dir, names) -> list:
    """.ko paths of ``names`` and their ``depends=`` (modinfo), dependencies first."""
    if not modules_dir or not Path(modules_dir).is_dir():
        raise GdbkdError("the kernel has no modules directory: cannot load virtio in the "
                         "capture kernel")
    index = {}
    for ko in Path(modules_dir).rglob("*.ko"):
        index.setdefault(ko.stem.replace("-", "_"), ko)
    order, seen = [], set()

    def visit(name, chain=()):
        if name in seen:
            return
        if name in chain:
            raise GdbkdError(f"module dependency loop at {name}")
        ko = index.get(name.replace("-", "_"))
        if ko is None:
            raise GdbkdError(f"module {name} not found in {modules_dir} (built in?)")
        for dep in _modinfo_depends(ko):
            visit(dep, chain + (name,))
        seen.add(name)
        order.append(ko)

    for n in names:
        visit(n)
    return order


def text_delta(vmlinux) -> int:
    """``_stext - _text`` of the vmlinux (bytes)."""
    from ..elfsyms import symbol_values
    got = symbol_values(vmlinux, ["_text", "_stext"])
    if len(got) != 2:
        raise GdbkdError(f"{vmlinux} has no _text/_stext symbols")
    delta = got["_stext"] - got["_text"]
    if not 0 <= delta < 1 << 32:
        raise GdbkdError(f"{vmlinux}: unexpected _stext - _text = {delta:#x}")
    return delta


def capture_append(append: str, root_disk: bool) -> str:
    """The capture kernel's command line from the first kernel's ``append``: one CPU, reset
    devices, no ``crashkernel=`` (a second reservation would not fit in the first); on a root
    disk, :data:`CAPTURE_INIT` as init."""
    words = [w for w in append.split() if not w.startswith(("crashkernel=", "init="))]
    words += ["maxcpus=1", "reset_devices"]
    if root_disk:
        words.append(f"init=/{CAPTURE_INIT}")
    return " ".join(words)


def first_rc(append: str, delta: int, initrd: bool = True) -> str:
    """rc for the first kernel: load the capture kernel (with the capture initramfs unless
    ``initrd`` is false), report whether it is loaded."""
    initrd_arg = f"--initrd=/{GUEST_DIR}/capture.img " if initrd else ""
    return f"""
echo 1 > /proc/sys/kernel/panic_on_oops
echo 1 > /proc/sys/kernel/hung_task_panic 2>/dev/null
if ! grep -q ' _text$' /proc/kallsyms; then
  a=$(awk '$3 == "_stext" {{ print $1; exit }}' /proc/kallsyms)
  hi=${{a%????????}}; lo=$((0x${{a#$hi}} - {delta}))
  if [ $lo -lt 0 ]; then lo=$((lo + 0x100000000)); hi=$(printf %08x $((0x$hi - 1))); fi
  {{ printf '%s%08x T _text\\n' "$hi" "$lo"; cat /proc/kallsyms; }} > /tmp/.kallsyms
  mount -o bind /tmp/.kallsyms /proc/kallsyms
fi
LD_LIBRARY_PATH={_LD_PATH} /sbin/kexec -p /{GUEST_DIR}/Image {initrd_arg}\\
  --append={shlex.quote(append)}
umount /proc/kallsyms 2>/dev/null; rm -f /tmp/.kallsyms
echo {MARK_LOADED}$(cat /sys/kernel/kexec_crash_loaded)
"""


def capture_rc(modules) -> str:
    """rc for the capture kernel: modules, makedumpfile to the raw disk, power off."""
    insmods = "".join(f"insmod /{CAPTURE_MODULE_DIR}/{Path(m).name} || echo 'gdbkd-kdump: "
                      f"insmod {Path(m).stem} failed'\n" for m in modules)
    return f"""
echo {MARK_CAPTURE}
{insmods}i=0 disk=
while [ -z "$disk" ] && [ $i -lt 100 ]; do
  for d in /dev/vd?; do
    [ -b "$d" ] && [ "$(head -c {len(DISK_MAGIC)} "$d" 2>/dev/null)" = {DISK_MAGIC} ] && disk=$d
  done
  [ -n "$disk" ] || sleep 0.1
  i=$((i + 1))
done
if [ -n "$disk" ]; then
  LD_LIBRARY_PATH={_LD_PATH} /usr/bin/makedumpfile -F -c -d 31 /proc/vmcore > "$disk"
  rc=$?
  sync
else
  echo "gdbkd-kdump: no dump disk ({DISK_MAGIC}) in the capture kernel"
  rc=255
fi
echo "{MARK_DONE}$rc"
poweroff -f
"""


def capture_init(modules) -> str:
    """:data:`CAPTURE_INIT`: the capture kernel's init on a root disk (the mounts the
    initramfs's init makes, then :func:`capture_rc`)."""
    return ("#!/bin/busybox sh\nexport PATH=/bin:/sbin:/usr/bin:/usr/sbin\n"
            "/bin/busybox mount -t proc proc /proc\n/bin/busybox mount -t sysfs sysfs /sys\n"
            "/bin/busybox mount -t devtmpfs devtmpfs /dev 2>/dev/null\n" + capture_rc(modules))


def capture_module_files(modules) -> dict:
    return {f"{CAPTURE_MODULE_DIR}/{Path(m).name}": Path(m) for m in modules}
