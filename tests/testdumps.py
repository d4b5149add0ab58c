"""Make real crash dumps of a profile's guest with QEMU, for tests and benchmarks.

:func:`ensure_test_dumps` boots the profile's kernel under TCG with KASLR on,
starts a few known sleeping processes, crashes the guest with
``echo c > /proc/sysrq-trigger`` and, while the guest spins in ``panic()``
(``panic=0``: the kernel never reboots, so ``-no-reboot`` does not end QEMU),
asks QEMU over QMP for ``dump-guest-memory`` in the ``elf`` and ``kdump-zlib``
formats. The results are cached under ``~/.cache/gdbkd/dumps/<release>-<key>/``
with a ``meta.json`` of what the test established itself (the pids and comms
it started, the serial log, the memory size).

:func:`ensure_makedumpfile_dumps` then runs Debian's arm64 makedumpfile under
qemu-user on the ELF dump (``MAKEDUMPFILE_VARIANTS``): bookworm's 1.7.2 for
zlib, lzo, flattened, ELF and a 3-part ``--split`` set, trixie's 1.7.6 (its
own sysroot) for zstd. Variants already in the cache are kept as they are.

Exactly one QEMU runs at a time, and it is always killed before returning.
"""

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gdbkd.cache import cache_root, key_of, atomic_dir, progress
from gdbkd.errors import GdbkdError

__all__ = ["ensure_test_dumps", "ensure_edge_dump", "crashed_pc_in_vectors", "EDGE_KINDS", "ensure_kdump_test_dump", "dumps_by_name", "sleeper_pids", "ensure_makedumpfile_dumps", "cached_test_dumps", "TestDumps",
           "SLEEPER_COMMS", "MAKEDUMPFILE_VARIANTS", "MAKEDUMPFILE_SUITES", "MAKEDUMPFILE_PARTS",
           "makedumpfile_output"]

#: Processes started in the guest before the crash: (comm, shell command).
#: (busybox runs the applet named by argv[1] when its own name starts with "busybox").
SLEEPER_COMMS = ("busybox-sleeper", "busybox-reader")

_RC = r"""
cp /bin/busybox /bin/busybox-sleeper
cp /bin/busybox /bin/busybox-reader
mkfifo /tmp/fifo
/bin/busybox-sleeper sleep 100000 &
echo GDBKD-SLEEPER=$!
/bin/busybox-reader cat /tmp/fifo &
echo GDBKD-READER=$!
"""


class TestDumps:
    """Paths of one set of cached dumps and what is known about them."""

    def __init__(self, d: Path):
        self.dir = d
        self.meta = json.loads((d / "meta.json").read_text())
        self.elf = d / "vmcore.elf"
        self.kdump_flat = d / "vmcore.kdump-zlib"
        self.vmlinux = Path(self.meta["vmlinux"])

    def __repr__(self):
        return f"TestDumps({self.dir})"

    def drgn_core(self) -> Path:
        """The dump as drgn opens it: :attr:`elf` itself when it is an ELF dump with a
        VMCOREINFO note; else ``gdbkd convert``'s core (an in-guest kdump, or a QEMU dump of
        a kernel without qemu_fw_cfg, whose VMCOREINFO gdbkd finds in RAM), made once."""
        from gdbkd.dump import open_physical
        with open_physical(self.elf) as d:
            if self.elf.suffix == ".elf" and d.vmcoreinfo_raw:
                return self.elf
        core = self.dir / "convert.core"
        if not core.exists():
            tmp = self.dir / f".convert.core.{os.getpid()}"
            r = subprocess.run([sys.executable, "-m", "gdbkd", "convert", str(self.elf),
                                str(self.vmlinux), "-o", str(tmp)], capture_output=True, text=True,
                               timeout=600)
            if r.returncode != 0:
                raise GdbkdError(f"gdbkd convert {self.elf}: {r.stderr.strip()[-500:]}")
            os.replace(tmp, core)
        return core


def _crashed_cpu_in_vectors(elf: Path, vmlinux: str) -> bool:
    """Whether the dump caught the crashed CPU at an instant the tests cannot use: its saved
    pc in the exception vector table (the interrupted pc only in ELR_EL1, which no note
    carries), or a timer interrupt taken in panic's delay loop (sp on the IRQ stack, not on
    the crashed task's stack: the backtrace then starts in the interrupt handler)."""
    from gdbkd.target.dump import Dump
    d = Dump(elf, vmlinux)
    try:
        vec = d.sym("vectors")
        cpu = d.crashed_cpu
        notes = d.cpu_notes()
        if vec is None or cpu is None or cpu not in notes:
            return False
        if vec <= notes[cpu].pc < vec + 0x800:
            return True
        th = d.crashed_thread
        from gdbkd.model.tasks import thread_size
        size = thread_size(d.kernel)
        return th is not None and bool(th.task.stack) and \
            not th.task.stack <= notes[cpu].sp < th.task.stack + size
    finally:
        d.close()


def _boot_media(kernel, profile, td: Path, rc=_RC):
    """``(initrd, qemu_args)`` booting the guest with ``rc``: an initramfs, or gdbkd's
    root disk for a kernel that cannot take one (the course's 5.0)."""
    from gdbkd.artifacts.rootfs import guest_boot
    initrd, args, _ = guest_boot(profile, kernel, {}, rc, td, own_allowed=False)
    return initrd, args


def sleeper_pids(console: str) -> dict:
    """{comm: pid} of the processes :data:`_RC` started, from the guest's console."""
    pids = {}
    for line in console.splitlines():
        for tag, comm in (("GDBKD-SLEEPER=", SLEEPER_COMMS[0]), ("GDBKD-READER=", SLEEPER_COMMS[1])):
            if line.startswith(tag):
                pids[comm] = int(line[len(tag):].strip())
    return pids


def _make_dumps(kernel, profile, memory: str, out: Path, cpu=None):
    with tempfile.TemporaryDirectory(prefix="gdbkd-dump-") as td:
        td = Path(td)
        initrd, disk = _boot_media(kernel, profile, td)
        from gdbkd.qemu.machine import Machine
        progress(f"booting {kernel.release} ({memory}) to make test dumps")
        g = Machine(profile, kernel, initrd, append_extra="panic=0", memory=memory, cpu=cpu,
                    extra_args=disk)
        try:
            g.start()
            if not g.console.wait_for("GDBKD-READY", 120):
                raise GdbkdError("the test guest did not reach its shell: " + g.console.text()[-300:])
            argv = g.argv()
            pids = sleeper_pids(g.console.text())
            time.sleep(1.0)
            g.console.send("echo c > /proc/sysrq-trigger\n")
            if not g.console.wait_for("end Kernel panic", 60):
                raise GdbkdError("the test guest did not panic: " + g.console.text()[-300:])
            time.sleep(0.5)
            from gdbkd.qemu.qmp import Qmp
            q = Qmp(g.qmp_path)
            try:
                # Both dumps must show the same instant: stop the guest first. The panic loop
                # takes timer interrupts; an instant inside the exception vectors (the
                # interrupted pc only in ELR_EL1, which no dump note carries) is retried.
                for attempt in range(10):
                    q.execute("stop")
                    progress("dump-guest-memory elf")
                    q.dump(str(out / "vmcore.elf"), "elf")
                    if not _crashed_cpu_in_vectors(out / "vmcore.elf", kernel.vmlinux):
                        break
                    q.execute("cont")
                    time.sleep(0.05 * (attempt + 1))
                progress("dump-guest-memory kdump-zlib")
                q.dump(str(out / "vmcore.kdump-zlib"), "kdump-zlib")
            finally:
                q.close()
            log = g.console.text()
        finally:
            g.stop()
    (out / "serial.log").write_text(log)
    offset = None
    for line in log.splitlines():
        if "Kernel Offset:" in line:
            offset = line.split("Kernel Offset:")[1].split()[0]
    meta = {"release": kernel.release, "vmlinux": kernel.vmlinux, "memory": memory,
            "sleepers": pids, "kernel_offset_log": offset,
            "cmdline": argv[argv.index("-append") + 1]}
    (out / "meta.json").write_text(json.dumps(meta, indent=1))


def ensure_test_dumps(profile_name: str = "debian-6.1", memory: str = "1G", cpu=None) -> TestDumps:
    """Return cached QEMU dumps (ELF + kdump-zlib) of a crashed guest, making them if absent.

    CPU overrides the profile's QEMU CPU (``max``: LPA2 52-bit VA and pointer auth)."""
    from gdbkd.qemu.profiles import load_profile
    from gdbkd.artifacts.kernel import ensure_kernel
    profile = load_profile(profile_name)
    kernel = ensure_kernel(profile)
    parts = ["v2-stopped", kernel.release, memory, _RC, os.path.getsize(kernel.image)]
    if cpu:
        parts.append(f"cpu={cpu}")
    key = key_of(*parts)
    tag = f"_{cpu.split(',')[0]}" if cpu else ""
    d = cache_root() / "dumps" / f"{kernel.release}-{memory}{tag}-{key}"
    if not (d / "meta.json").exists():
        with atomic_dir(d) as tmp:
            _make_dumps(kernel, profile, memory, tmp, cpu=cpu)
    return TestDumps(d)


def ensure_kdump_test_dump(profile_name: str = "rlk-5.0") -> TestDumps:
    """A real in-guest kdump (:func:`gdbkd.kdump.run_kdump`: kexec -p, makedumpfile -F -c
    -d 31 in the capture kernel) of the same guest as :func:`ensure_test_dumps` (the
    :data:`_RC` sleepers, crashed with sysrq-c), cached; its file is ``.kdump``."""
    from gdbkd.qemu.profiles import load_profile
    from gdbkd.artifacts.kernel import ensure_kernel
    from gdbkd.kdump import kdump_sysrq
    profile = load_profile(profile_name)
    kernel = ensure_kernel(profile)
    key = key_of("kdump-v1", kernel.release, _RC, os.path.getsize(kernel.image))
    d = cache_root() / "dumps" / f"{kernel.release}-kdump-{key}"
    if not (d / "meta.json").exists():
        with atomic_dir(d) as tmp:
            res = kdump_sysrq(kernel, profile, tmp / "vmcore.kdump", rc=_RC)
            (tmp / "serial.log").write_text(res["console"])
            meta = {"release": kernel.release, "vmlinux": kernel.vmlinux,
                    "memory": profile.qemu.get("memory", "1G"),
                    "sleepers": sleeper_pids(res["console"])}
            (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
    td = TestDumps(d)
    td.elf = td.kdump = d / "vmcore.kdump"       # what kd opens (drgn: drgn_core())
    return td


def crashed_pc_in_vectors(elf, vmlinux) -> bool:
    """Whether the crashed CPU's saved pc is in the exception vectors (an interrupt taken in
    panic's delay loop, caught before the handler saved pt_regs: gdb's frames end there)."""
    from gdbkd.target.dump import Dump
    with Dump(elf, vmlinux) as d:
        vec, cpu = d.sym("vectors"), d.crashed_cpu
        notes = d.cpu_notes()
        return vec is not None and cpu in notes and vec <= notes[cpu].pc < vec + 0x800


#: what :func:`ensure_edge_dump` makes
EDGE_KINDS = {
    # the crashed CPU caught in the vectors, inside panic (a timer interrupt in its delay loop)
    "interrupted": {"vmcoreinfo": True},
    # no VMCOREINFO note: QEMU without its vmcoreinfo device (or a kernel without qemu_fw_cfg)
    "no-note": {"vmcoreinfo": False},
}


def ensure_edge_dump(profile_name: str, kind: str) -> Path:
    """A directory with ``vmcore.elf`` (a QEMU dump of a guest crashed with sysrq-c from its
    shell) and ``console.txt`` (its console: ``GDBKD-SHELL=PID`` names the crashing shell),
    of a ``kind`` of :data:`EDGE_KINDS`, made once and cached by content key. Raises
    GdbkdError if an "interrupted" instant is not caught in 80 stops."""
    from gdbkd.qemu.profiles import load_profile
    from gdbkd.artifacts.kernel import ensure_kernel
    profile = load_profile(profile_name)
    kernel = ensure_kernel(profile)
    key = key_of("edge-v1", kind, kernel.release, os.path.getsize(kernel.image))
    d = cache_root() / "dumps" / f"{kernel.release}-{kind}-{key}"
    if not (d / "console.txt").exists():
        with atomic_dir(d) as tmp:
            _make_edge_dump(kernel, profile, kind, tmp)
    return d


def _make_edge_dump(kernel, profile, kind, out: Path):
    from gdbkd.qemu.machine import Machine
    from gdbkd.qemu.qmp import Qmp
    with tempfile.TemporaryDirectory(prefix="gdbkd-dump-") as td:
        initrd, disk = _boot_media(kernel, profile, Path(td), rc="")
        m = Machine(profile, kernel, initrd, append_extra="panic=0", extra_args=disk,
                    vmcoreinfo=EDGE_KINDS[kind]["vmcoreinfo"])
        try:
            m.start()
            if not m.console.wait_for("GDBKD-READY", 120):
                raise GdbkdError("the test guest did not reach its shell: " + m.console.text()[-300:])
            m.console.send("echo GDBKD-SHELL=$$; echo c > /proc/sysrq-trigger\n")
            if not m.console.wait_for("end Kernel panic", 60):
                raise GdbkdError("the test guest did not panic: " + m.console.text()[-300:])
            q = Qmp(m.qmp_path)
            try:
                for attempt in range(80 if kind == "interrupted" else 1):
                    q.execute("stop")
                    q.dump(str(out / "vmcore.elf"), "elf")
                    if kind != "interrupted" or crashed_pc_in_vectors(out / "vmcore.elf",
                                                                      kernel.vmlinux):
                        break
                    q.execute("cont")
                    time.sleep(0.01 * (attempt % 7 + 1))
                else:
                    raise GdbkdError("the crashed CPU was never caught in the vectors in 80 stops")
            finally:
                q.close()
            (out / "console.txt").write_text(m.console.text())
        finally:
            m.stop()


def dumps_by_name(name: str, memory: str = "1G", cpu=None) -> TestDumps:
    """A profile's QEMU dumps (``debian-6.1``), or with ``-kdump`` after the profile's name
    (``rlk-5.0-kdump``) its in-guest kdump."""
    if name.endswith("-kdump"):
        return ensure_kdump_test_dump(name.removesuffix("-kdump"))
    return ensure_test_dumps(name, memory, cpu=cpu)


# -- makedumpfile outputs ------------------------------------------------------------------
#: makedumpfile runs (arm64 binary under qemu-user) on the QEMU ELF dump: name → arguments.
MAKEDUMPFILE_VARIANTS = {
    "mdf-zlib-d31.kdump": ["-c", "-d", "31"],
    "mdf-lzo-d31.kdump": ["-l", "-d", "31"],
    "mdf-flat-d31.kdump": ["-F", "-c", "-d", "31"],
    "mdf-elf-d31.elf": ["-E", "-d", "31"],
    "mdf-zstd-d31.kdump": ["-z", "-d", "31"],
    # --splitblock-size is in KiB: with the default (1 GiB) a 1 GiB guest lands
    # in the first part only; 16 MiB blocks spread its pages over all three.
    "mdf-split-d31": ["--split", "--splitblock-size", "16384", "-c", "-d", "31"],
}
#: Variants bookworm's makedumpfile 1.7.2 cannot write (it is built without zstd):
#: made by Debian trixie's makedumpfile 1.7.6 (arm64, linked with libzstd) instead.
MAKEDUMPFILE_SUITES = {"mdf-zstd-d31.kdump": "trixie"}
#: Variants written as several files (makedumpfile --split): name → number of parts.
MAKEDUMPFILE_PARTS = {"mdf-split-d31": 3}


def makedumpfile_output(d: Path, name: str):
    """Where variant ``name`` is kept in dump directory ``d``: a Path, or for a
    --split variant the list of its part files (what :func:`open_dump` takes)."""
    n = MAKEDUMPFILE_PARTS.get(name)
    if not n:
        return d / name
    return [d / f"{name}-part{i}.kdump" for i in range(1, n + 1)]


def _output_exists(out) -> bool:
    return all(p.exists() for p in (out if isinstance(out, list) else [out]))


def _makedumpfile_root(suite: str = "bookworm") -> Path:
    """Debian's makedumpfile:arm64 and its libraries unpacked into a sysroot, run
    here under qemu-user: bookworm's is the one the in-guest kdump flow uses;
    trixie's (1.7.6) is the first with zstd."""
    import shutil
    from gdbkd.kdump.tools import ensure_sysroot, SUITE
    if not shutil.which("qemu-aarch64-static"):
        raise GdbkdError("running makedumpfile:arm64 needs qemu-user-static "
                         "(apt-get install qemu-user-static)")
    return ensure_sysroot("makedumpfile") if suite == SUITE else ensure_sysroot("makedumpfile", suite)


def _procvmcore_from_qemu(dump_elf: Path, out: Path):
    """Rewrite QEMU's ELF dump the way /proc/vmcore lays it out, for makedumpfile.

    makedumpfile (1.7.2, and 1.7.6 too) reads program headers at a fixed offset
    right after the ELF header; QEMU 7.2 puts a section header there first. The
    rewrite keeps the notes and memory as they are and gives each PT_LOAD its
    linear-map virtual address, as the kdump kernel's /proc/vmcore does.
    """
    import struct
    from gdbkd.target.dump import Dump
    from gdbkd.postmortem.convert import _note
    d = Dump(dump_elf)
    try:
        p = d.phys
        notes = b"".join(_note(n.name.encode(), n.type, n.desc) for n in p.notes)
        segs = p._segs
        nph = 1 + len(segs)
        note_off = 64 + 56 * nph
        data_off = (note_off + len(notes) + 4095) & ~4095
        ph = [struct.pack("<IIQQQQQQ", 4, 0, note_off, 0, 0, len(notes), 0, 0)]
        off = data_off
        for s in segs:
            ph.append(struct.pack("<IIQQQQQQ", 1, 7, off, d.mmu.linear_va(s.paddr), s.paddr,
                                  s.filesz, s.memsz, 0))
            off += s.filesz
        eh = (b"\x7fELF" + bytes([2, 1, 1, 0]) + b"\0" * 8
              + struct.pack("<HHIQQQIHHHHHH", 4, 183, 1, 0, 64, 0, 0, 64, 56, nph, 64, 0, 0))
        with open(out, "wb") as f:
            f.write(eh + b"".join(ph) + notes + b"\0" * (data_off - note_off - len(notes)))
            for s in segs:
                done = 0
                while done < s.filesz:
                    n = min(1 << 24, s.filesz - done)
                    f.write(p.pread(s.offset + done, n))
                    done += n
    finally:
        d.close()


def _split_part_pages(path: Path) -> int:
    """Dumped pages a --split part holds in its own pfn range."""
    from gdbkd.dump.diskdump import KdumpDump
    with KdumpDump(path, split_part=True) as k:
        return k.part_pages


def ensure_makedumpfile_dumps(td: TestDumps) -> dict:
    """makedumpfile's outputs (``MAKEDUMPFILE_VARIANTS``) of the cached QEMU ELF dump:
    {name: path, or the list of part paths for a --split variant}. Only the
    missing ones are made."""
    want = {name: makedumpfile_output(td.dir, name) for name in MAKEDUMPFILE_VARIANTS}
    if all(_output_exists(p) for p in want.values()):
        return want
    roots = {}
    src = td.dir / ".procvmcore.elf"
    progress("rewriting the QEMU dump for makedumpfile")
    _procvmcore_from_qemu(td.elf, src)
    try:
        for name, args in MAKEDUMPFILE_VARIANTS.items():
            out = want[name]
            if _output_exists(out):
                continue
            suite = MAKEDUMPFILE_SUITES.get(name, "bookworm")
            if suite not in roots:
                roots[suite] = _makedumpfile_root(suite)
            root = roots[suite]
            outs = out if isinstance(out, list) else [out]
            tmps = [o.with_name(f".{o.name}.tmp") for o in outs]
            progress(f"makedumpfile {' '.join(args)}" + (f" ({suite})" if suite != "bookworm" else ""))
            cmd = ["qemu-aarch64-static", "-L", str(root), str(root / "usr/bin/makedumpfile"),
                   *args, str(src)]
            if "-F" in args:
                with open(tmps[0], "wb") as f:
                    r = subprocess.run(cmd, stdout=f, stderr=subprocess.PIPE, text=True)
            else:
                for t in tmps:
                    t.unlink(missing_ok=True)
                r = subprocess.run(cmd + [str(t) for t in tmps], capture_output=True, text=True)
            try:
                if r.returncode != 0:
                    raise GdbkdError(f"makedumpfile {' '.join(args)} failed: "
                                     f"{(r.stderr.strip().splitlines() or ['?'])[-1][:160]}")
                if len(tmps) > 1:
                    empty = [o.name for o, t in zip(outs, tmps) if _split_part_pages(t) == 0]
                    if empty:
                        raise GdbkdError(f"makedumpfile {' '.join(args)}: no pages in "
                                         f"{', '.join(empty)} (use a smaller --splitblock-size)")
            except BaseException:
                for t in tmps:
                    t.unlink(missing_ok=True)
                raise
            for t, o in zip(tmps, outs):
                os.replace(t, o)
    finally:
        src.unlink(missing_ok=True)
    return want


def cached_test_dumps(memory: str = "1G"):
    """(TestDumps, {makedumpfile variant: path}) already in the cache, or (None, {}); never boots."""
    root = cache_root() / "dumps"
    if not root.is_dir():
        return None, {}
    for d in sorted(root.glob(f"*-{memory}-*")):
        if (d / "meta.json").exists() and (d / "vmcore.elf").exists():
            td = TestDumps(d)
            if not td.vmlinux.exists():
                continue
            outs = {n: makedumpfile_output(d, n) for n in MAKEDUMPFILE_VARIANTS}
            return td, {n: p for n, p in outs.items() if _output_exists(p)}
    return None, {}
