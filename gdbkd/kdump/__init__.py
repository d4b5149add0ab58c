"""Real in-guest kdump: ``kexec -p`` a capture kernel, ``makedumpfile -c -d 31`` from it.

This is the crash-dump flow of a real machine, run inside the QEMU guest:

1. the first kernel boots with ``crashkernel=256M`` (a reserved region for the
   capture kernel); its initramfs rc loads the same Image with
   ``kexec -p Image --initrd capture.img --append "... maxcpus=1 reset_devices"``;
2. the caller's rc and trigger commands run; a panic (an oops or a hung-task
   report also panic: see :mod:`.guest`) makes the kernel save each CPU's
   registers and jump into the capture kernel (``crash_kexec``);
3. the capture kernel boots from the reserved region with the capture
   initramfs, sees the crashed kernel's memory as /proc/vmcore, loads
   virtio-mmio/virtio-blk and writes ``makedumpfile -F -c -d 31 /proc/vmcore``
   (flattened, zlib, free/cache/user/zero pages excluded) straight to the raw
   virtio disk, then powers off (QEMU runs with ``-no-reboot`` and exits);
4. the host copies the flattened stream off the disk image into the output
   file (under a temporary name, renamed when complete). gdbkd reads the
   flattened format directly (``gdbkd core OUT VMLINUX``); ``makedumpfile -R``
   turns it into a regular kdump file for other tools.

Tools: Debian bookworm's kexec-tools 2.0.25 and makedumpfile 1.7.2 (arm64)
with their library closures, unpacked under ``~/.cache/gdbkd/tools``.
Verified on Debian's 6.1 cloud kernel. makedumpfile 1.7.2 refuses kernels
configured for 52-bit VAs (Debian's 6.12: "VA Bits 52 not supported").
"""

import os
import re
import subprocess
import tempfile
import time
from pathlib import Path

from ..cache import progress
from ..errors import GdbkdError
from ..textutil import escape
from . import guest
from .flatcopy import copy_flattened
from .tools import KEXEC, MAKEDUMPFILE, ensure_sysroot, guest_files

__all__ = ["run_kdump", "kdump_sysrq", "check_kernel", "SYSRQ_CRASH", "CRASHKERNEL"]

#: Trigger commands that panic the guest through magic SysRq ('c': sysrq_handle_crash → panic).
SYSRQ_CRASH = ["echo c > /proc/sysrq-trigger"]
#: Memory reserved for the capture kernel (its Image, initramfs and run time).
CRASHKERNEL = "256M"
_LAST_LINES = 15
_PANIC = "end Kernel panic - not syncing"      # the end of a panic's console report
MAKEDUMPFILE_VERSION = "1.7.2"      # Debian bookworm's


def _mem_bytes(mem: str) -> int:
    s = str(mem).strip().upper().removesuffix("B")
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    if s and s[-1] in mult:
        return int(float(s[:-1]) * mult[s[-1]])
    return int(s) << 20           # QEMU's -m default unit is MiB


def _done_status(console, mark, wait=10.0):
    """makedumpfile's exit status from the capture rc's DONE line (once the line is complete)."""
    pat = re.compile(re.escape(guest.MARK_DONE) + r"(\d+)\r?\n")
    end = time.monotonic() + wait
    while True:
        mt = pat.search(console.text(mark))
        if mt or time.monotonic() > end:
            return mt.group(1) if mt else "?"
        time.sleep(0.05)


def _fail(reason: str, machine=None):
    lines = []
    if machine is not None and machine.console is not None:
        lines = [l.rstrip("\r") for l in machine.console.text().splitlines() if l.strip()]
    msg = f"kdump: {reason}"
    if lines:
        # guest output: control characters escaped before they reach a terminal
        msg += "\nlast console lines:\n" + "\n".join("  " + escape(l) for l in lines[-_LAST_LINES:])
    return GdbkdError(msg)


def check_kernel(kernel):
    """Raise GdbkdError unless ``kernel``'s config allows this kdump flow.

    Needs CONFIG_KEXEC (kexec_load(2); the 6.1 cloud kernel has no KEXEC_FILE)
    and CONFIG_CRASH_DUMP (/proc/vmcore in the capture kernel). makedumpfile
    1.7.2 rejects kernels built for 52-bit VAs (Debian's 6.12 cloud kernel).
    """
    try:
        cfg = Path(kernel.config).read_text(errors="replace") if kernel.config else ""
    except OSError:
        cfg = ""
    if not cfg:
        return                  # no config to check: let the guest report what fails
    for opt in ("CONFIG_KEXEC", "CONFIG_CRASH_DUMP"):
        if f"\n{opt}=y" not in "\n" + cfg:
            raise GdbkdError(f"kdump: {kernel.release} is built without {opt}: use a QEMU dump "
                             f"(--dump) instead")
    if "\nCONFIG_ARM64_VA_BITS=52" in "\n" + cfg:
        raise GdbkdError(f"kdump: makedumpfile {MAKEDUMPFILE_VERSION} does not support "
                         f"{kernel.release} (52-bit VA kernel): use a QEMU dump (--dump) instead")


def _guest_files(kernel, profile, files, rc, workdir: Path, root_disk: bool):
    """The first kernel's files and rc with the kdump setup: ``(files, rc)``.

    With an initramfs the capture kernel gets its own (``capture.img``, carried by the
    first); on a root disk it boots the same root with :data:`guest.CAPTURE_INIT`."""
    from ..artifacts.initramfs import ensure_base_initramfs, write_overlay
    kexec_root = ensure_sysroot(KEXEC[0])
    mdf_root = ensure_sysroot(MAKEDUMPFILE[0])
    capture_files = dict(guest_files(mdf_root, MAKEDUMPFILE[1]))
    first_files = dict(guest_files(kexec_root, KEXEC[1]))
    first_files[f"{guest.GUEST_DIR}/Image"] = Path(kernel.image)
    if root_disk:           # the capture kernel's drivers are built in (no initramfs to load them)
        first_files.update(capture_files)
        first_files[guest.CAPTURE_INIT] = guest.capture_init([]).encode()
    else:
        base = ensure_base_initramfs(kernel, profile.guest.get("boot_modules", []))
        modules = guest.module_closure(kernel.modules_dir, guest.CAPTURE_MODULES)
        capture_files.update(guest.capture_module_files(modules))
        first_files[f"{guest.GUEST_DIR}/capture.img"] = write_overlay(
            base, capture_files, workdir / "capture.img", rc=guest.capture_rc(modules))
    clash = sorted(set(first_files) & set(files))
    if clash:
        raise GdbkdError(f"kdump: guest file {clash[0]} is used by the kdump setup")
    first_files.update(files)
    append = guest.capture_append(profile.qemu.get("append", "console=ttyAMA0"), root_disk)
    first = guest.first_rc(append, guest.text_delta(kernel.vmlinux), initrd=not root_disk)
    return first_files, first + (rc or "")


def _boot_media(kernel, profile, files, rc, workdir: Path):
    """``(initrd, qemu_args, ready)`` of the first kernel with the kdump setup (a kernel
    without initramfs support boots gdbkd's own root: the tools must be written into it)."""
    from ..artifacts.rootfs import guest_boot
    root_disk = not profile.guest.get("initramfs", True)
    first_files, first_rc = _guest_files(kernel, profile, files, rc, workdir, root_disk)
    return guest_boot(profile, kernel, first_files, first_rc, workdir, own_allowed=False)


def run_kdump(kernel, profile, files: dict, rc: str, trigger: list, out, timeout=300,
              memory=None, echo=None) -> dict:
    """Boot ``kernel``, crash it with ``trigger``, take a real kdump, copy it to ``out``.

    ``files`` ({guest path: host path or bytes}) and ``rc`` (shell run before the
    console shell starts) go into the first kernel's initramfs after the kdump
    setup; each of ``trigger`` is then typed at the guest shell. Returns
    ``{"path", "bytes", "records", "seconds": {phase: s}, "console"}``. Raises
    GdbkdError (first line: what failed; then the last console lines) if the
    capture kernel cannot be loaded, the guest does not crash, or no complete
    dump is written within ``timeout`` seconds. QEMU is stopped on every path.
    """
    from ..qemu.machine import Machine
    out = Path(out)
    if not out.parent.is_dir():
        raise GdbkdError(f"kdump: directory {out.parent} does not exist")
    if out.is_dir():
        raise GdbkdError(f"kdump: {out} is a directory")
    check_kernel(kernel)
    memory = memory or profile.qemu.get("memory", "1G")
    t0 = time.monotonic()
    deadline = t0 + timeout
    secs = {}

    def left():
        return max(deadline - time.monotonic(), 0.1)

    with tempfile.TemporaryDirectory(prefix="gdbkd-kdump-") as td:
        td = Path(td)
        initrd, boot_args, ready = _boot_media(kernel, profile, files, rc, td)
        secs["prepare"] = round(time.monotonic() - t0, 1)
        disk = td / "dump.disk"
        with open(disk, "wb") as f:                     # sparse: costs no space until written
            f.write(guest.DISK_MAGIC.encode())
            f.truncate(_mem_bytes(memory) + (256 << 20))
        crashkernel = "" if "crashkernel=" in profile.qemu.get("append", "") else \
            f"crashkernel={CRASHKERNEL}"
        m = Machine(profile, kernel, initrd, append_extra=crashkernel, memory=memory, echo=echo,
                    # the dump disk first: QEMU virt gives the last virtio-mmio device on the
                    # command line the first slot the kernel probes, so a root disk stays vda
                    extra_args=["-drive", f"if=none,file={disk},format=raw,id=gdbkd-dump",
                                "-device", "virtio-blk-device,drive=gdbkd-dump"] + boot_args)
        try:
            progress(f"kdump: booting {kernel.release} with crashkernel={CRASHKERNEL}")
            t = time.monotonic()
            m.start()
            if m.console.wait_for_any([ready, _PANIC], left()) != ready:
                raise _fail("the guest did not reach its shell", m)
            txt = m.console.text()
            loaded = txt.split(guest.MARK_LOADED, 1)[1][:1] if guest.MARK_LOADED in txt else ""
            if loaded != "1":
                raise _fail("kexec -p did not load the capture kernel "
                            "(/sys/kernel/kexec_crash_loaded is not 1)", m)
            secs["boot_and_load"] = round(time.monotonic() - t, 1)
            t = time.monotonic()
            mark = m.console.mark()
            for cmd in trigger:
                m.console.send(cmd + "\n")
                if m.console.wait_for("Starting crashdump kernel", 0.3, start=mark):
                    break
            if not m.console.wait_for("Starting crashdump kernel", left(), start=mark):
                raise _fail("the guest did not crash (no 'Starting crashdump kernel')", m)
            secs["trigger_to_crash"] = round(time.monotonic() - t, 1)
            t = time.monotonic()
            if not m.console.wait_for(guest.MARK_CAPTURE, left(), start=mark):
                raise _fail("the capture kernel did not reach its init", m)
            secs["capture_boot"] = round(time.monotonic() - t, 1)
            t = time.monotonic()
            if not m.console.wait_for(guest.MARK_DONE, left(), start=mark):
                raise _fail("makedumpfile did not finish in the capture kernel", m)
            status = _done_status(m.console, mark)
            if status != "0":
                raise _fail(f"makedumpfile failed in the capture kernel (exit status {status})", m)
            secs["makedumpfile"] = round(time.monotonic() - t, 1)
            try:
                m.proc.wait(min(left(), 30))
            except subprocess.TimeoutExpired:
                pass               # powered off or not, the data is synced: stop() ends it
            console = m.console.text()
        finally:
            m.stop()
        t = time.monotonic()
        tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as f:
                stats = copy_flattened(disk, f)
            os.replace(tmp, out)
        except GdbkdError as e:
            raise GdbkdError(f"kdump: {e}")
        except OSError as e:
            raise GdbkdError(f"kdump: cannot write {out}: {e.strerror or e}")
        finally:
            if tmp.exists():
                tmp.unlink()
        secs["copy_out"] = round(time.monotonic() - t, 1)
    secs["total"] = round(time.monotonic() - t0, 1)
    progress(f"kdump: {out} ({stats['bytes']} bytes) in {secs['total']} s")
    return {"path": str(out), "bytes": stats["bytes"], "records": stats["records"],
            "seconds": secs, "console": console}


def kdump_sysrq(kernel, profile, out, timeout=300, rc="", **kw) -> dict:
    """A kdump of a guest crashed with ``echo c > /proc/sysrq-trigger`` after ``rc`` (for tests)."""
    return run_kdump(kernel, profile, {}, rc, SYSRQ_CRASH, out, timeout=timeout, **kw)
