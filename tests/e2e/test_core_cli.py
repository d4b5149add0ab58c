"""Live crash → QMP dump → `gdbkd core`: the same crash, the same kd report."""

import json
import re
import shutil

import pytest

from conftest import gdbkd

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("fmt", ["elf", "kdump-zlib"])
def test_run_dump_then_core_shows_the_same_crash(tmp_path, kernel61, no_leftover_qemu, fmt):
    dump = tmp_path / f"vmcore.{fmt}"
    r = gdbkd("run", "--batch", "--json", "--exec", "echo c > /proc/sysrq-trigger",
              "--dump-on-crash", str(dump), "--dump-format", fmt, "-ex", "p/x $SP_EL0")
    assert r.returncode == 0, r.stderr[-2000:]
    live = json.loads(r.stdout.strip().splitlines()[-1])
    live_task = live["report"]
    assert dump.stat().st_size > 0
    r = gdbkd("core", str(dump), kernel61.vmlinux, "--batch", "-ex", "kd analyze --json", "-ex", "info threads")
    assert r.returncode == 0, r.stderr[-2000:]
    rep = next(json.loads(l) for l in r.stdout.splitlines() if l.startswith("{") and '"backtrace"' in l)
    funcs = [f["function"] for f in rep["backtrace"]]
    assert "sysrq_handle_crash" in funcs
    # the crashing task is selected and is the one the live session saw
    assert rep["pid"] == live_task["pid"] and rep["task"] == live_task["task"]
    assert f'(pid {live_task["pid"]} {live_task["comm"]}' in r.stdout


def test_core_bad_input(tmp_path, kernel61):
    junk = tmp_path / "junk"
    junk.write_bytes(b"\x7fELF" + b"\0" * 100)
    for args in (["core", str(junk), kernel61.vmlinux, "--batch"],
                 ["core", str(tmp_path / "missing"), kernel61.vmlinux, "--batch"]):
        r = gdbkd(*args)
        assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_gdb_bt_crosses_the_irq_stack(kernel61):
    """The CPU stopped by panic's IPI: gdb's own bt goes from the IPI handler on the IRQ
    stack through call_on_irq_stack and the el1 IRQ entry back to the idle loop."""
    from testdumps import ensure_test_dumps
    import re
    td = ensure_test_dumps()
    r = gdbkd("core", str(td.elf), kernel61.vmlinux, "--batch", "-ex", "info threads")
    assert r.returncode == 0, r.stderr[-2000:]
    # the other CPU's task: "on cpu N" in the stub's thread info, but not the crashed one
    other = [m.group(1) for m in re.finditer(r"^\*?\s*(\d+)\s+Thread .*on cpu \d+\)", r.stdout, re.M)
             if "crashed" not in m.group(0)]
    assert len(other) == 1, r.stdout[:3000]
    r = gdbkd("core", str(td.elf), kernel61.vmlinux, "--batch", "-ex", f"thread {other[0]}", "-ex", "bt")
    assert r.returncode == 0, r.stderr[-2000:]
    bt = r.stdout[r.stdout.index(f"[Switching to thread {other[0]}"):]
    for fn in ("ipi_handler", "call_on_irq_stack", "el1h_64_irq", "do_idle"):
        assert fn in bt, bt
    assert "secondary_start_kernel" in bt or "rest_init" in bt, bt    # CPU 1 or the boot CPU
    assert "previous frame identical" not in bt


def _bt_functions(out):
    """Function names of gdb's `bt` lines (#N [0xADDR in] FUNC (...))."""
    return [m.group(1) for m in re.finditer(r"^#\d+\s+(?:0x[0-9a-f]+ in )?(\S+) \(", out, re.M)]


def test_core_split_dump(kernel61):
    """`gdbkd core PART1 PART2 PART3 VMLINUX`: the 3 files of bookworm makedumpfile's
    --split -c -d 31 open as one dump, with the crashed task's backtrace selected;
    a missing part is one line."""
    if not shutil.which("qemu-aarch64-static"):
        pytest.skip("makedumpfile:arm64 needs qemu-user-static (apt-get install qemu-user-static)")
    from testdumps import ensure_test_dumps, ensure_makedumpfile_dumps
    td = ensure_test_dumps()
    parts = [str(p) for p in ensure_makedumpfile_dumps(td)["mdf-split-d31"]]
    assert len(parts) == 3
    r = gdbkd("core", *parts, kernel61.vmlinux, "--batch", "-s", "-ex", "bt")
    assert r.returncode == 0, r.stderr[-2000:]
    bt = _bt_functions(r.stdout)
    assert "sysrq_handle_crash" in bt and "panic" in bt, r.stdout[-3000:]
    assert "kd analyze" not in r.stdout and "Kernel panic" not in r.stdout    # -s: no report
    # the same task and frames as on the full QEMU ELF dump of the same instant
    ref = gdbkd("core", str(td.elf), kernel61.vmlinux, "--batch", "-s", "-ex", "bt")
    assert ref.returncode == 0, ref.stderr[-2000:]
    assert bt == _bt_functions(ref.stdout)
    # the vmlinux forgotten: the parts find it by their build-id
    r = gdbkd("core", *parts, "--batch", "-s", "-ex", "bt")
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"gdbkd: vmlinux {kernel61.vmlinux} (build-id " in r.stderr
    assert _bt_functions(r.stdout) == bt
    # a part left out: one line, non-zero, no gdb
    for args, msg in (([parts[0], parts[2], kernel61.vmlinux], "split dump incomplete"),
                      ([parts[1], kernel61.vmlinux], "one part of a split dump"),
                      ([parts[0], parts[2]], "split dump incomplete")):
        r = gdbkd("core", *args, "--batch", "-s", "-ex", "bt")
        assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and msg in lines[0], r.stderr


def test_stub_listen_serves_one_gdb_on_a_socket(tmp_path):
    """`gdbkd stub --listen SOCKET`: the fast transport for a plain gdb; the socket file
    goes once gdb is connected and the server ends when gdb disconnects."""
    import subprocess
    import sys
    import time
    from testdumps import ensure_test_dumps
    from gdbkd.target import open_dump
    td = ensure_test_dumps()
    with open_dump(td.elf) as d:
        off = d.kaslr_offset
    sock = tmp_path / "s.sock"
    srv = subprocess.Popen([sys.executable, "-m", "gdbkd.stub", str(td.elf), str(td.vmlinux),
                            "--listen", str(sock)], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 60
        while not sock.exists() and time.time() < deadline and srv.poll() is None:
            time.sleep(0.05)
        assert sock.exists(), srv.stderr.read() if srv.poll() is not None else "no socket"
        r = subprocess.run(["gdb-multiarch", "-batch", "-nx", "-iex", "set auto-load no",
                            "-ex", f"add-symbol-file -o {off:#x} {td.vmlinux}",
                            "-ex", f"target remote {sock}", "-ex", "info threads 1", "-ex", "bt 6"],
                           capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        assert "(crashed)" in r.stdout and "panic" in r.stdout, r.stdout + r.stderr
        assert srv.wait(30) == 0
        assert not sock.exists()
    finally:
        if srv.poll() is None:
            srv.kill()
            srv.wait()


def _gdbs_of_core_dirs():
    """gdb-multiarch processes started by some gdbkd core (their command line names a
    gdbkd-core- FIFO)."""
    import os
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
        except OSError:
            continue
        if cmd and cmd[0].endswith(b"gdb-multiarch") and any(b"gdbkd-core-" in a for a in cmd):
            out.append(int(pid))
    return out


def test_core_prestarted_gdb_leaves_nothing_and_batch_status(kernel61, tmp_path):
    """gdbkd core starts gdb before its command line is parsed (postmortem/prestart.py): a
    rejected option, a missing dump, --help and a wrong --batch guess leave no gdb and no
    directory behind; --batch ends with gdb -batch's status (1 when the last -ex failed)."""
    import glob
    import tempfile
    import time
    from testdumps import ensure_test_dumps
    td = ensure_test_dumps()
    pattern = f"{tempfile.gettempdir()}/gdbkd-core-*"
    before = set(glob.glob(pattern))
    for args in (["core", "--bogus", str(td.elf), kernel61.vmlinux],
                 ["core", str(tmp_path / "missing"), kernel61.vmlinux, "--batch"],
                 ["core", "--help"],
                 # guessed --batch, parsed as -ex's value: an interactive gdb replaces it
                 ["core", str(td.elf), kernel61.vmlinux, "-s", "-ex", "--batch"]):
        r = gdbkd(*args)
        assert "Traceback" not in r.stderr, r.stderr
    time.sleep(0.5)                    # PR_SET_PDEATHSIG is delivered asynchronously
    assert set(glob.glob(pattern)) == before and not _gdbs_of_core_dirs()
    runs = {("kd nosuch",): 1, ("kd nosuch", "kd reader"): 0, ("frame 999",): 1, ("bt 1",): 0}
    for cmds, want in runs.items():
        r = gdbkd("core", str(td.elf), kernel61.vmlinux, "-s", "--batch",
                  *[a for c in cmds for a in ("-ex", c)])
        assert r.returncode == want, (cmds, r.stdout[-500:], r.stderr[-500:])
        assert "Traceback" not in r.stderr
    assert "#0 " in r.stdout                        # bt 1 printed its frame
