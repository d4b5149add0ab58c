"""Real crash dumps for the triage tests and bench (tests/e2e/test_triage*.py, bench/bench_triage.py).

Each dump is made once by booting the Debian 6.1 guest under QEMU (KASLR on) and cached
under ``~/.cache/gdbkd/triage-dumps/<name>-<key>/`` (content-keyed by the lab's sources, the
kernel release and the boot tag), as ``kdump-zlib`` (~20 MB each instead of 1 GB):

- ``sysrq``: ``gdbkd run --exec 'echo c > /proc/sysrq-trigger' --dump-on-crash``
  (QEMU dumps at gdb's ``panic`` breakpoint);
- ``sysrq-loop``: the cached test dump (tests/testdumps.py: the same sysrq crash, dumped
  while the panicked kernel spins in ``panic()``'s delay loop, another boot);
- ``labN`` / ``labN-boot2``: oops labs by ``gdbkd lab run N --dump`` (dumped at ``die``);
  hang labs (5, 7) booted with the lab's overlay and dumped over QMP once the hung-task
  detector named all the lab's blocked threads (as ``gdbkd lab run`` stops; no gdb in the
  loop). ``lab1-boot2`` is the same crash as ``lab1`` in a separate boot (another KASLR
  offset, other addresses).

One QEMU at a time (the machine is shared); a failed boot raises with its stderr tail.
"""

import contextlib
import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

__all__ = ["ensure_triage_dumps", "FLEET", "MORE_BOOTS", "bad_dump", "vmlinux_dir", "fleet_dir",
           "dask_cluster"]

ROOT = Path(__file__).resolve().parents[1]

#: name -> (kind, lab number or None). Two deadlocks (5: ABBA mutexes, 7: mutex/rwsem/semaphore).
FLEET = {
    "sysrq": ("sysrq", None),
    "lab1": ("lab", 1),
    "lab1-boot2": ("lab", 1),
    "lab2": ("lab", 2),
    "lab3": ("lab", 3),
    "lab4": ("lab", 4),
    "lab6": ("lab", 6),
    "lab8": ("lab", 8),
    "lab5": ("lab", 5),
    "lab7": ("lab", 7),
}


def _lab_digest(n) -> str:
    from gdbkd.labs import get_lab
    h = hashlib.sha256()
    d = get_lab(n).dir
    for p in sorted(d.iterdir()):
        if p.is_file():
            h.update(p.name.encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:16]


def _make_hang(lab_no, out: Path):
    """A hang lab dumped by QMP once the hung-task detector named every blocked thread of
    the lab (no gdb in the loop: the guest is stopped and dumped as it hangs)."""
    import re
    import tempfile
    import time
    from gdbkd.artifacts.initramfs import ensure_base_initramfs, write_overlay
    from gdbkd.artifacts.kernel import ensure_kernel
    from gdbkd.labs import get_lab, build_lab, lab_rc
    from gdbkd.qemu.machine import Machine
    from gdbkd.qemu.profiles import load_profile
    from gdbkd.qemu.qmp import Qmp
    profile = load_profile("debian-6.1")
    kernel = ensure_kernel(profile)
    lab = get_lab(lab_no)
    base = ensure_base_initramfs(kernel, profile.guest.get("boot_modules", []))
    want = set(lab.hang_comms) | set(lab.victim_comms)
    with tempfile.TemporaryDirectory(prefix="gdbkd-triage-") as td:
        initrd = write_overlay(base, build_lab(lab, kernel), Path(td) / "initrd.img", rc=lab_rc(lab))
        m = Machine(profile, kernel, initrd)
        try:
            m.start()
            if not m.console.wait_for("GDBKD-READY", 120):
                raise RuntimeError(f"lab {lab_no}: no shell: {m.console.text()[-500:]}")
            for cmd in lab.trigger:
                m.console.send(cmd + "\n")
                time.sleep(0.3)
            end = time.monotonic() + 150
            while set(re.findall(r"task (\S+):\d+ blocked for more than", m.console.text())) < want:
                if time.monotonic() > end:
                    raise RuntimeError(f"lab {lab_no}: no hang report: {m.console.text()[-800:]}")
                time.sleep(0.5)
            q = Qmp(m.qmp_path)
            try:
                q.execute("stop")
                q.dump(str(out / "vmcore.kdump"), "kdump-zlib")
            finally:
                q.close()
            (out / "serial.log").write_text(m.console.text())
        finally:
            m.stop()


def _make(name, kind, lab, out: Path):
    dump = out / "vmcore.kdump"
    from gdbkd.labs import get_lab
    if kind == "lab" and get_lab(lab).expect == "hang":
        return _make_hang(lab, out)
    argv = [sys.executable, "-m", "gdbkd"]
    if kind == "sysrq":
        argv += ["run", "--batch", "--json", "--exec", "echo c > /proc/sysrq-trigger",
                 "--dump-on-crash", str(dump), "--dump-format", "kdump-zlib"]
    else:
        argv += ["lab", "run", str(lab), "--batch", "--json", "--timeout", "150",
                 "--dump", str(dump), "--dump-format", "kdump-zlib"]
    r = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=900,
                       stdin=subprocess.DEVNULL)
    if r.returncode != 0 or not dump.is_file():
        raise RuntimeError(f"making the {name} dump failed ({r.returncode}): {r.stderr[-2000:]}")
    (out / "run.json").write_text(r.stdout)


#: 9 more boots of the same crashes: with FLEET and ``sysrq-loop``, the 20 dumps of the bench
MORE_BOOTS = ["sysrq-boot2", "lab2-boot2", "lab3-boot2", "lab4-boot2", "lab5-boot2", "lab6-boot2",
              "lab7-boot2", "lab8-boot2", "lab1-boot3"]


def _kind_of(name):
    """(kind, lab) of a FLEET name or of ``sysrq-bootK`` / ``labN-bootK``."""
    if name in FLEET:
        return FLEET[name]
    m = re.fullmatch(r"(sysrq|lab(\d))-boot\d+", name)
    if not m:
        raise KeyError(f"unknown triage dump {name!r}")
    return ("sysrq", None) if m.group(1) == "sysrq" else ("lab", int(m.group(2)))


def ensure_triage_dumps(names=None) -> dict:
    """{name: Path of a cached dump} for NAMES (default: all of FLEET plus ``sysrq-loop``),
    making the missing ones."""
    from gdbkd.cache import cache_root, key_of, atomic_dir, progress
    from gdbkd.qemu.profiles import load_profile
    from gdbkd.artifacts.kernel import ensure_kernel
    names = list(FLEET) + ["sysrq-loop"] if names is None else list(names)
    kernel = ensure_kernel(load_profile("debian-6.1"))
    out = {}
    for name in names:
        if name == "sysrq-loop":
            from testdumps import ensure_test_dumps
            out[name] = ensure_test_dumps().kdump_flat
            continue
        kind, lab = _kind_of(name)
        boot = name.rsplit("-", 1)[1] if "-boot" in name else "boot1"
        key = key_of("triage-dump-v1", kind, lab, _lab_digest(lab) if lab else "", kernel.release, boot)
        d = cache_root() / "triage-dumps" / f"{name}-{key}"
        if not (d / "vmcore.kdump").is_file():
            progress(f"making the triage dump {name} (a QEMU boot)")
            with atomic_dir(d) as tmp:
                _make(name, kind, lab, Path(tmp))
        out[name] = d / "vmcore.kdump"
    return out


def bad_dump(tmp: Path) -> Path:
    """A file that is no dump (junk bytes with a dump-like name)."""
    p = Path(tmp) / "junk.vmcore"
    p.write_bytes(b"not a crash dump\n" * 64)
    return p


def vmlinux_dir(tmp: Path) -> Path:
    """A directory holding the 6.1 vmlinux (a symlink) and another ELF program with a build-id
    of its own (``vmlinux-not-a-kernel``), for --vmlinux-dir."""
    from gdbkd.qemu.profiles import load_profile
    from gdbkd.artifacts.kernel import ensure_kernel
    vml = ensure_kernel(load_profile("debian-6.1")).vmlinux
    d = Path(tmp) / "vmlinux"
    d.mkdir(exist_ok=True)
    (d / os.path.basename(vml)).symlink_to(vml)
    shutil.copy("/bin/ls", d / "vmlinux-not-a-kernel")
    return d


def fleet_dir(tmp: Path, names=None, junk=True) -> dict:
    """{name: TMP/name.vmcore} symlinks to ensure_triage_dumps(NAMES), plus ``junk`` (bad_dump)."""
    out = {}
    for name, p in ensure_triage_dumps(names).items():
        out[name] = Path(tmp) / f"{name}.vmcore"
        out[name].symlink_to(p)
    if junk:
        out["junk"] = bad_dump(tmp)
    return out


def _free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port, proc, what, timeout=60):
    import socket
    import time
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited: {proc.stderr.read()[-2000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port}")


@contextlib.contextmanager
def dask_cluster(workdir, workers=2):
    """A real ``dask scheduler`` and WORKERS ``dask worker`` processes (one thread each) on
    127.0.0.1, this venv's; yields the scheduler address once every worker registered, and
    ends the processes it started."""
    dask = str(Path(sys.executable).with_name("dask"))
    port = _free_port()
    procs = []
    try:
        sched = subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=workdir)
        procs.append(sched)
        _wait_port(port, sched, "dask scheduler")
        addr = f"tcp://127.0.0.1:{port}"
        for i in range(workers):
            procs.append(subprocess.Popen([dask, "worker", addr, "--host", "127.0.0.1", "--nthreads", "1",
                                           "--no-dashboard", "--name", f"w{i}", "--local-directory", str(workdir)],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=workdir))
        from distributed import Client
        with Client(addr, timeout=30) as c:
            c.wait_for_workers(workers, timeout=60)
        yield addr
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in reversed(procs):
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    for n, p in ensure_triage_dumps(sys.argv[1:] or None).items():
        print(n, p, p.stat().st_size)
