"""The course's kdump on its own 5.0 kernel (slow tier): ``kexec -p`` into
``crashkernel=256M``, ``makedumpfile -F -c -d 31`` in the capture kernel.

5.0 takes no initramfs, so both kernels boot gdbkd's ext4 root on virtio-blk: the
first kernel loads the capture kernel without ``--initrd``, the capture kernel boots
the same root with ``init=/sbin/gdbkd-capture`` and writes the dump to a second
virtio disk it finds by its marker. Checked here: the dump is makedumpfile's
flattened stream; ``kd ps``, ``kd bt`` and ``kd log`` on it equal drgn 0.3.0 on
``gdbkd convert``'s core of it (5.0's kdump has no note drgn can take as it is);
``gdbkd lab run 1 --kernel 5.0 --kdump`` writes a dump whose report is the lab's
fault. The other kd commands on this dump are compared with drgn in
test_kd_state_other_kernels.py and test_kmem_other_kernels.py (``rlk-5.0-kdump``).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, pids_where

PREBUILT = ROOT.parent / "shared" / "kernels" / "rlk-5.0"

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not (PREBUILT / "SHA256SUMS").is_file(),
                                 reason=f"the course's prebuilt 5.0 kernel is not at {PREBUILT}")]


def _gdbkd(*args, timeout=900):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RLK_")}
    return subprocess.run([sys.executable, "-m", "gdbkd", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env=env, stdin=subprocess.DEVNULL)


def _json_lines(out):
    return [json.loads(l) for l in out.splitlines() if l.startswith(("{", "["))]


@pytest.fixture(scope="module")
def kdump50():
    from testdumps import ensure_kdump_test_dump
    return ensure_kdump_test_dump("rlk-5.0")


@pytest.fixture(scope="module")
def on_kdump(kdump50):
    sleeper = kdump50.meta["sleepers"]["busybox-sleeper"]
    r = _gdbkd("core", str(kdump50.kdump), str(kdump50.vmlinux), "--batch",
               "-ex", "kd analyze --json", "-ex", "kd ps --json",
               "-ex", f"kd bt --json {sleeper}", "-ex", "kd log --json")
    assert r.returncode == 0, r.stderr[-3000:]
    analyze, ps, bt, log = _json_lines(r.stdout)[-4:]
    return {"analyze": analyze, "ps": ps, "bt": bt, "log": log}


@pytest.fixture(scope="module")
def drgn_kdump(kdump50):
    drgn = pytest.importorskip("drgn")
    from drgn.helpers.linux.pid import for_each_task
    from drgn.helpers.linux.printk import get_printk_records
    prog = drgn.Program()
    prog.set_core_dump(str(kdump50.drgn_core()))
    prog.load_debug_info([str(kdump50.vmlinux)])
    return {"tasks": {(t.pid.value_(), t.comm.string_().decode()) for t in for_each_task(prog)},
            "bt": [f.name for f in prog.stack_trace(kdump50.meta["sleepers"]["busybox-sleeper"])],
            "log": [r.text.decode("utf-8", "replace") for r in get_printk_records(prog)],
            "crashed": prog.crashed_thread().tid}


def test_kdump_is_makedumpfiles_flattened_stream(kdump50):
    with open(kdump50.kdump, "rb") as f:
        assert f.read(12) == b"makedumpfile"
    log = (kdump50.dir / "serial.log").read_text()
    assert "Starting crashdump kernel" in log
    # the capture kernel booted gdbkd's root, not an initramfs (5.0 has no initrd support)
    assert "init=/sbin/gdbkd-capture" in log and "GDBKD-KDUMP-DONE rc=0" in log


def test_kdump_ps_equals_drgn(kdump50, on_kdump, drgn_kdump):
    mine = {(t["pid"], t["comm"]) for t in on_kdump["ps"]["tasks"] if t["pid"]}
    assert {(p, c) for c, p in kdump50.meta["sleepers"].items()} <= mine
    assert mine == {t for t in drgn_kdump["tasks"] if t[0]}


def test_kdump_bt_equals_drgn(on_kdump, drgn_kdump):
    from gdbkd.analysis.crashsig import normalize_function
    frames = on_kdump["bt"][0]["frames"]
    assert [normalize_function(f["function"]) for f in frames] == drgn_kdump["bt"]
    assert any("nanosleep" in f["function"] for f in frames)


def test_kdump_log_equals_drgn(on_kdump, drgn_kdump):
    from gdbkd.textutil import escape
    lines = ["\n".join(r["lines"]) for r in on_kdump["log"]["records"]]
    assert lines == [escape(t) for t in drgn_kdump["log"]]
    assert any("sysrq" in l.lower() and "crash" in l for l in lines)


def test_kdump_report_is_the_sysrq_panic(on_kdump, drgn_kdump):
    rep = on_kdump["analyze"]
    assert rep["task"]["pid"] == drgn_kdump["crashed"]
    assert "sysrq_handle_crash" in [f["function"] for f in rep["backtrace"]]


def test_lab1_kdump_on_50(tmp_path):
    """gdbkd lab run 1 --kernel 5.0 --kdump: the lab's module oopses, the oops panics
    (panic_on_oops), the capture kernel writes the dump; its report is the lab's fault."""
    from gdbkd.labs import get_lab
    lab = get_lab(1)
    out = tmp_path / "lab1.kdump"
    r = _gdbkd("lab", "run", "1", "--kernel", "5.0", "--kdump", str(out), "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    # the QEMU it started (its disks in a gdbkd-kdump- directory) is gone
    assert not pids_where(lambda cmd: b"qemu-system" in cmd and b"/gdbkd-kdump-" in cmd)
    res = _json_lines(r.stdout)[-1]
    assert res["path"] == str(out) and res["bytes"] == out.stat().st_size
    rep_run = _gdbkd("core", str(out), "--batch", "-ex", "kd analyze --json",
                     *[a for m in res["modules_dirs"] for a in ("--modules-dir", m)])
    assert rep_run.returncode == 0, rep_run.stderr[-3000:]
    rep = _json_lines(rep_run.stdout)[-1]
    assert rep["backtrace"][0]["function"] == lab.fault_function, rep["backtrace"][:3]
    assert rep["task"]["comm"] == "insmod"
    from test_kdump import _check_oops_registers
    _check_oops_registers(rep)
