"""Two dumps a crash report must not be fooled by, on Debian's 6.1 and the course's 5.0.

* **interrupted**: the crashed CPU took a timer interrupt in panic's delay loop and the
  dump caught it in the exception vectors, before the handler saved pt_regs: gdb's own
  frames end there, and the report must still find ``panic`` below the exception (with
  panic's own message and the crashing shell as the task).
* **no-note**: a QEMU dump with no VMCOREINFO note (QEMU without its ``vmcoreinfo``
  device, as a kernel without qemu_fw_cfg also gives): gdbkd finds the kernel's own
  VMCOREINFO text in the dump's RAM, ``--check`` and the report say so, and ``gdbkd
  convert`` writes it as a note so drgn 0.3.0 opens the core (its tasks equal ``kd ps``).

The dumps are made once per kernel and cached (tests/testdumps.py ``ensure_edge_dump``).
"""

import json
import re
import subprocess
import sys

import pytest

from conftest import ROOT

pytestmark = pytest.mark.e2e

PREBUILT = ROOT.parent / "shared" / "kernels" / "rlk-5.0"
PROFILES = ["debian-6.1", "rlk-5.0"]


def _gdbkd(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "gdbkd", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, stdin=subprocess.DEVNULL)


def _json_docs(out):
    return [json.loads(l) for l in out.splitlines() if l.startswith("{")]


def _edge(profile, kind):
    from gdbkd.artifacts.kernel import ensure_kernel
    from gdbkd.errors import GdbkdError
    from gdbkd.qemu.profiles import load_profile
    from testdumps import ensure_edge_dump
    if profile.startswith("rlk") and not (PREBUILT / "SHA256SUMS").is_file():
        pytest.skip(f"the course's prebuilt 5.0 kernel is not at {PREBUILT}")
    kernel = ensure_kernel(load_profile(profile))
    try:
        d = ensure_edge_dump(profile, kind)
    except GdbkdError as e:
        if "never caught" in str(e):
            pytest.skip(str(e))
        raise
    console = (d / "console.txt").read_text()
    return kernel, d / "vmcore.elf", console, int(re.search(r"GDBKD-SHELL=(\d+)", console).group(1))


@pytest.mark.parametrize("profile", PROFILES)
def test_report_finds_panic_below_the_interrupt(profile):
    kernel, dump, console, shell = _edge(profile, "interrupted")
    said = re.search(r"Kernel panic - not syncing: (.*?)\r?\n", console).group(1).strip()
    r = _gdbkd("core", str(dump), kernel.vmlinux, "--batch", "-ex", "kd analyze --json")
    assert r.returncode == 0, r.stderr[-2000:]
    rep = next(j for j in _json_docs(r.stdout) if "backtrace" in j)
    assert rep["trap"]["trap"] == "panic" and rep["trap"]["below_exception"], rep["trap"]
    assert rep["backtrace"][0]["function"] != "panic"        # the dump's pc is not in panic
    assert rep["backtrace"][rep["trap"]["frame"]]["function"] == "panic"
    assert any(f["exception"] for f in rep["backtrace"][:rep["trap"]["frame"]])
    assert rep["trap"]["message"] == said
    assert rep["pid"] == shell


@pytest.mark.parametrize("profile", PROFILES)
def test_dump_without_vmcoreinfo_note(profile, tmp_path):
    from gdbkd.dump import open_physical
    kernel, dump, console, shell = _edge(profile, "no-note")
    with open_physical(dump) as p:
        assert p.vmcoreinfo_raw is None
    r = _gdbkd("core", "--check", str(dump), kernel.vmlinux)
    assert r.returncode == 0, r.stderr[-2000:]
    vmci = next(l for l in r.stdout.splitlines() if " VMCOREINFO " in l)
    assert "OK" in vmci and "the dump's RAM at physical" in vmci
    assert r.stdout.splitlines()[-1] == "consistent"
    r = _gdbkd("core", str(dump), kernel.vmlinux, "--batch", "-ex", "kd analyze --json",
               "-ex", "kd ps --json")
    assert r.returncode == 0, r.stderr[-2000:]
    rep, ps = _json_docs(r.stdout)[-2:]
    assert rep["vmcoreinfo"].startswith("the dump's RAM at physical")
    assert rep["pid"] == shell
    core = tmp_path / "core.elf"
    r = _gdbkd("convert", str(dump), kernel.vmlinux, "-o", str(core))
    assert r.returncode == 0, r.stderr[-2000:]
    with open_physical(core) as p:
        assert p.vmcoreinfo_raw and b"OSRELEASE=" + kernel.release.encode() in p.vmcoreinfo_raw
    drgn = pytest.importorskip("drgn")
    from drgn.helpers.linux.pid import for_each_task
    prog = drgn.Program()
    prog.set_core_dump(str(core))                  # drgn refuses a core with no VMCOREINFO
    prog.load_debug_info([kernel.vmlinux])
    theirs = {(t.pid.value_(), t.comm.string_().decode()) for t in for_each_task(prog)}
    mine = {(t["pid"], t["comm"]) for t in ps["tasks"]}
    assert (shell, "sh") in mine and {t for t in mine if t[0]} == {t for t in theirs if t[0]}
