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
import subprocess
import sys

import pytest

from conftest import pids_where
from test_rlk50 import PREBUILT, _gdbkd, _json_lines, analyze_ps_bt_log

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not (PREBUILT / "SHA256SUMS").is_file(),
                                 reason=f"the course's prebuilt 5.0 kernel is not at {PREBUILT}")]


@pytest.fixture(scope="module")
def kdump50():
    from testdumps import ensure_kdump_test_dump
    return ensure_kdump_test_dump("rlk-5.0")


@pytest.fixture(scope="module")
def on_kdump(kdump50):
    return analyze_ps_bt_log(kdump50.kdump, kdump50.vmlinux,
                             kdump50.meta["sleepers"]["busybox-sleeper"])


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
    assert rep["pid"] == drgn_kdump["crashed"]
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
    assert rep["comm"] == "insmod"
    from test_kdump import _check_oops_registers
    _check_oops_registers(rep)


# -- every task's backtrace, the runqueues, sys and task on both 5.0 dumps ---------------------
DRGN_ALL = r"""
import json, sys, drgn
from drgn.helpers.linux.pid import for_each_task
from drgn.helpers.linux.sched import cpu_curr, task_state_to_char
from drgn.helpers.linux.cpumask import for_each_present_cpu
p = drgn.Program()
p.set_core_dump(sys.argv[1])
p.load_debug_info([sys.argv[2]])
bts = {}
for t in for_each_task(p):
    try:
        bts[t.pid.value_()] = [f.name for f in p.stack_trace(t)]
    except ValueError:
        bts[t.pid.value_()] = None           # drgn: running on a CPU without saved regs
uts = p["init_uts_ns"].name
print(json.dumps({
    "bts": bts,
    "crashed": p.crashed_thread().tid,
    "curr": {c: cpu_curr(p, c).pid.value_() for c in for_each_present_cpu(p)},
    "state": {t.pid.value_(): task_state_to_char(t) for t in for_each_task(p)},
    "release": uts.release.string_().decode(), "nodename": uts.nodename.string_().decode(),
    "machine": uts.machine.string_().decode()}))
"""


#: crash's state names (kd ps/task) → the letter of /proc and drgn's task_state_to_char
CRASH_STATE = {"RU": "R", "IN": "S", "UN": "D", "ST": "T", "TR": "t", "ZO": "Z", "DE": "X",
               "ID": "I", "PA": "P", "NE": "N", "SW": "W", "WA": "W"}


@pytest.mark.parametrize("name", ["rlk-5.0", "rlk-5.0-kdump"])
def test_every_backtrace_runq_sys_task_equal_drgn(name):
    """On 5.0's QEMU dump and its in-guest kdump: kd bt of every task, the tasks each CPU
    runs (kd runq), the state letters (kd task), and kd sys's release, node and machine,
    all as drgn 0.3.0 reads them from convert's core."""
    from gdbkd.analysis.crashsig import normalize_function
    from testdumps import dumps_by_name
    td = dumps_by_name(name)
    r = subprocess.run([sys.executable, "-c", DRGN_ALL, str(td.drgn_core()), str(td.vmlinux)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    ref = json.loads(r.stdout.strip().splitlines()[-1])
    pids = sorted(int(p) for p in ref["bts"])
    cmds = ["kd sys --json", "kd runq --json"] + [f"kd bt --json {p}" for p in pids if p] + \
           [f"kd task --json {p}" for p in pids if p]
    args = ["core", str(td.elf), str(td.vmlinux), "--batch"]
    for c in cmds:
        args += ["-ex", c]
    r = _gdbkd(*args)
    assert r.returncode == 0, r.stderr[-3000:]
    out = dict(zip(cmds, _json_lines(r.stdout)[-len(cmds):]))
    runq = out["kd runq --json"]
    # a QEMU dump's NT_PRSTATUS notes carry QEMU's CPU numbers as pids (1, 2), so drgn gives
    # the tasks with those pids the CPUs' registers: compared here are the tasks no CPU runs
    # (in the kdump the crashing kernel wrote each CPU's current pid: all of them)
    running = {q["current"]["pid"] for q in runq} if not name.endswith("-kdump") else set()
    compared = 0
    for p in pids:
        if not p or p in running or p in (1, 2) and not name.endswith("-kdump"):
            continue
        mine = [normalize_function(f["function"]) for f in out[f"kd bt --json {p}"][0]["frames"]]
        # drgn 0.3.0 stops at a kernel thread's last frame record (fp 0): kd also shows the
        # return address that record holds, ret_from_fork, as crash does
        if mine[-1:] == ["ret_from_fork"] and ref["bts"][str(p)][-1:] != ["ret_from_fork"]:
            mine = mine[:-1]
        assert mine == ref["bts"][str(p)], p
        compared += 1
    assert compared >= len(pids) - 6
    for p in pids:
        if p:
            t = out[f"kd task --json {p}"][0]
            assert t["pid"] == p and CRASH_STATE[t["state"]] == ref["state"][str(p)], \
                (p, t["state"])
    sysd = out["kd sys --json"]
    assert (sysd["release"], sysd["nodename"], sysd["machine"]) == \
        (ref["release"], ref["nodename"], ref["machine"])
    # every present CPU, the ones panic stopped (offline) too
    assert {str(q["cpu"]): q["current"]["pid"] for q in runq} == ref["curr"]
    assert [q["online"] for q in runq].count(True) == sysd["cpus"]
