"""The course's own kernel (Linux 5.0, runninglinuxkernel_5.0), default tier.

One ``gdbkd run rlk-5.0`` per session, with no RLK_* variable set: the kernel
comes from ``../shared/kernels/rlk-5.0`` (unpacked into the cache), the root is
gdbkd's own ext4 image on virtio-blk. The guest starts a sleeper under a comm of
the test's choosing, writes a random marker into the kernel log, and crashes
with sysrq; gdbkd catches the panic live and writes a QEMU dump, which has no
VMCOREINFO note (this kernel has no qemu_fw_cfg driver). Checked: the live
report and ``kd ps``; on the dump ``gdbkd core --check`` (VMCOREINFO from the
RAM), ``kd ps``, ``kd bt`` and ``kd log`` against what the test did and against
drgn 0.3.0 on ``gdbkd convert``'s core.
"""

import json
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, pids_where
from gdbkd.cache import cache_root

PREBUILT = ROOT.parent / "shared" / "kernels" / "rlk-5.0"
#: busybox runs the applet named by argv[1] when its own name starts with "busybox"
SLEEPER = "busybox-rlk"

pytestmark = pytest.mark.skipif(not (PREBUILT / "SHA256SUMS").is_file(),
                                reason=f"the course's prebuilt 5.0 kernel is not at {PREBUILT}")


def _gdbkd(*args, timeout=600):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RLK_")}
    return subprocess.run([sys.executable, "-m", "gdbkd", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env=env, stdin=subprocess.DEVNULL)


def _json_lines(out):
    return [json.loads(l) for l in out.splitlines() if l.startswith(("{", "["))]


@pytest.fixture(scope="module")
def kernel50():
    from gdbkd.qemu.profiles import load_profile
    from gdbkd.artifacts.kernel import ensure_kernel
    return ensure_kernel(load_profile("rlk-5.0"))


@pytest.fixture(scope="module")
def crashed(tmp_path_factory, kernel50):
    """The run's JSON result and its dump, plus the facts the guest printed."""
    marker = f"GDBKD-MARK-{secrets.token_hex(6)}"
    dump = tmp_path_factory.mktemp("rlk50") / "vmcore.elf"
    ours = f"gdbkd.test={secrets.token_hex(6)}"      # names this run's QEMU among others'
    r = _gdbkd("run", "rlk-5.0", "--batch", "--json", "--append", ours,
               "--boot-exec", f"cp /bin/busybox /bin/{SLEEPER}",
               "--boot-exec", f"/bin/{SLEEPER} sleep 100000 &",
               "--boot-exec", "echo GDBKD-SLEEPER=$!",
               "--boot-exec", f"echo {marker} > /dev/kmsg",
               "--exec", "echo GDBKD-SHELL=$$; echo c > /proc/sysrq-trigger",
               "-ex", "kd ps --json", "--dump-on-crash", str(dump))
    assert r.returncode == 0, r.stderr[-3000:]
    # gdbkd stopped the QEMU it started (the one with this run's marker on its command line)
    assert not pids_where(lambda cmd: ours.encode() in cmd)
    res = next(j for j in _json_lines(r.stdout) if isinstance(j, dict) and "report" in j)
    console = res["console"]
    return {"res": res, "dump": dump, "marker": marker, "stderr": r.stderr,
            "sleeper": int(re.search(r"GDBKD-SLEEPER=(\d+)", console).group(1)),
            "shell": int(re.search(r"GDBKD-SHELL=(\d+)", console).group(1))}


def analyze_ps_bt_log(dump, vmlinux, pid) -> dict:
    """kd analyze, kd ps, kd bt PID and kd log (--json) in one gdbkd core on DUMP."""
    r = _gdbkd("core", str(dump), str(vmlinux), "--batch",
               "-ex", "kd analyze --json", "-ex", "kd ps --json",
               "-ex", f"kd bt --json {pid}", "-ex", "kd log --json")
    assert r.returncode == 0, r.stderr[-3000:]
    analyze, ps, bt, log = _json_lines(r.stdout)[-4:]
    return {"analyze": analyze, "ps": ps, "bt": bt, "log": log}


@pytest.fixture(scope="module")
def on_dump(crashed, kernel50):
    return analyze_ps_bt_log(crashed["dump"], kernel50.vmlinux, crashed["sleeper"])


@pytest.fixture(scope="module")
def drgn50(crashed, kernel50, tmp_path_factory):
    drgn = pytest.importorskip("drgn")
    from drgn.helpers.linux.pid import for_each_task
    from drgn.helpers.linux.printk import get_printk_records
    core = tmp_path_factory.mktemp("rlk50core") / "core.elf"
    r = _gdbkd("convert", str(crashed["dump"]), kernel50.vmlinux, "-o", str(core))
    assert r.returncode == 0, r.stderr[-2000:]
    prog = drgn.Program()
    prog.set_core_dump(str(core))                 # drgn needs the VMCOREINFO note convert wrote
    prog.load_debug_info([kernel50.vmlinux])
    tasks = {(t.pid.value_(), t.comm.string_().decode()) for t in for_each_task(prog)}
    trace = prog.stack_trace(crashed["sleeper"])
    out = {"tasks": tasks, "bt": [f.name for f in trace],
           "log": [rec.text.decode("utf-8", "replace") for rec in get_printk_records(prog)],
           "release": prog["init_uts_ns"].name.release.string_().decode()}
    core.unlink()
    return out


def test_run_with_no_variables_catches_the_panic(crashed, kernel50):
    res = crashed["res"]
    rep = res["report"]
    assert rep["trap"]["trap"] == "panic"
    assert rep["pid"] == crashed["shell"]
    funcs = [f["function"] for f in rep["backtrace"]]
    assert "sysrq_handle_crash" in funcs
    live_ps = json.loads(res["ex"][0]["output"])["tasks"]
    assert {(t["pid"], t["comm"]) for t in live_ps} >= {(crashed["sleeper"], SLEEPER)}
    # gdbkd's own root: the kernel mounted the ext4 image on virtio-blk
    assert "VFS: Mounted root (ext4 filesystem)" in res["console"]
    assert Path(kernel50.vmlinux).is_relative_to(cache_root())      # unpacked, not committed


def test_dump_without_note_check_says_ram(crashed, kernel50):
    from gdbkd.dump import open_physical
    with open_physical(str(crashed["dump"])) as p:
        assert p.vmcoreinfo_raw is None                # QEMU wrote no note: no fw_cfg driver
    r = _gdbkd("core", "--check", str(crashed["dump"]), kernel50.vmlinux)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.splitlines()
    vmci = next(l for l in lines if " VMCOREINFO " in l)
    assert "OK" in vmci and "the dump's RAM at physical" in vmci
    assert any(" OSRELEASE " in l and l.split()[0] == "OK" and kernel50.release in l for l in lines)
    assert lines[-1] == "consistent"


def test_dump_finds_its_vmlinux_without_a_build_id(crashed, kernel50):
    """5.0 puts no BUILD-ID in VMCOREINFO (that came in 5.9): `gdbkd core DUMP` finds the
    cached prebuilt vmlinux by the dump's release, says so in one line, and the banner check
    then accepts it (the task of the panic is there)."""
    r = _gdbkd("core", str(crashed["dump"]), "--batch", "-ex", "kd ps --json")
    assert r.returncode == 0, r.stderr[-2000:]
    line = next(l for l in r.stderr.splitlines() if l.startswith("gdbkd: vmlinux "))
    assert line == (f"gdbkd: vmlinux {kernel50.vmlinux} (release {kernel50.release} matches, "
                    f"in gdbkd's cache)"), line
    ps = next(d for d in _json_lines(r.stdout) if isinstance(d, dict) and "tasks" in d)
    assert crashed["shell"] in {t["pid"] for t in ps["tasks"]}


def test_dump_ps_equals_drgn(crashed, on_dump, drgn50):
    tasks = on_dump["ps"]["tasks"]
    mine = {(t["pid"], t["comm"]) for t in tasks if t["pid"]}
    assert (crashed["sleeper"], SLEEPER) in mine
    assert mine == {t for t in drgn50["tasks"] if t[0]}
    sleeper = next(t for t in tasks if t["pid"] == crashed["sleeper"])
    assert sleeper["state"] == "IN" and not sleeper["kthread"]


def test_dump_bt_equals_drgn(crashed, on_dump, drgn50):
    from gdbkd.analysis.crashsig import normalize_function
    frames = on_dump["bt"][0]["frames"]
    assert [normalize_function(f["function"]) for f in frames] == drgn50["bt"]
    assert any("nanosleep" in f["function"] for f in frames)


def test_dump_log_has_the_marker_and_equals_drgn(crashed, on_dump, drgn50):
    from gdbkd.textutil import escape
    lines = ["\n".join(r["lines"]) for r in on_dump["log"]["records"]]
    assert sum(crashed["marker"] in l for l in lines) == 1
    assert lines == [escape(t) for t in drgn50["log"]]       # kd log escapes control characters


def test_dump_report_names_the_vmcoreinfo_source(crashed, on_dump, drgn50, kernel50):
    rep = on_dump["analyze"]
    assert rep["trap"]["trap"] == "panic" and rep["pid"] == crashed["shell"]
    assert rep["vmcoreinfo"].startswith("the dump's RAM at physical")
    assert drgn50["release"] == kernel50.release


# -- source lines from the course's tree ------------------------------------------------------
def test_source_tree_gives_source_lines(crashed, kernel50):
    """`gdbkd fetch rlk-5.0 --source-tree DIR` records a tree the user has as the kernel's
    source (nothing downloaded): gdb then lists this kernel's code from it. The tree here is
    the kbuild tree unpacked from the prebuilt kernel (the course tree's own headers; the
    prebuilt was built in another directory, so the build directory is mapped to it)."""
    from gdbkd.artifacts.source import _pointer
    from gdbkd.target.offsets import vmlinux_build_id
    tree = Path(kernel50.kdir)
    header = tree / "arch/arm64/include/asm/kexec.h"
    body = header.read_text().splitlines()
    pointer = _pointer(vmlinux_build_id(kernel50.vmlinux))
    saved = pointer.read_bytes() if pointer.exists() else None     # the user's own record
    try:
        r = _gdbkd("fetch", "rlk-5.0", "--source-tree", str(tree), "--json")
        assert r.returncode == 0, r.stderr[-2000:]
        assert json.loads(r.stdout.splitlines()[-1])["source"] == str(tree.resolve())
        r = _gdbkd("core", str(crashed["dump"]), kernel50.vmlinux, "--batch",
                   "-ex", "list crash_setup_regs")
        assert r.returncode == 0, r.stderr[-2000:]
        got = [(int(n), t) for n, t in re.findall(r"^(\d+)\t(.*)$", r.stdout, re.M)]
        assert len(got) >= 5 and all(body[n - 1] == t for n, t in got), r.stdout[-2000:]
        assert any("crash_setup_regs" in t for _, t in got)
    finally:
        if saved is None:
            pointer.unlink(missing_ok=True)
        else:
            pointer.write_bytes(saved)
    r = _gdbkd("fetch", "rlk-5.0", "--source-tree", str(tree / "include"))
    assert r.returncode != 0 and "does not look like a kernel tree" in r.stderr
    assert "Traceback" not in r.stderr


# -- the course's own rootfs ------------------------------------------------------------------
COURSE_INIT = """#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev 2>/dev/null
echo "Debian GNU/Linux 10 rlk ttyAMA0"
echo
echo -n "rlk login: "
read -r user
echo "GDBKD-LOGGED-IN=$user"
exec /bin/busybox setsid /bin/busybox cttyhack /bin/busybox sh
"""


def test_course_rootfs_is_booted_as_the_course_does(kernel50, tmp_path):
    """RLK_ROOTFS: gdbkd boots the user's own ext4 root as it is (root=/dev/vda), attaches
    gdb once its console shows ``login:``, and --exec types at that console (the first
    line logs in). The root here is a small stand-in with a login prompt of its own (the
    course's Debian image is not available), not gdbkd's: no GDBKD-READY, no gdbkd rc."""
    from gdbkd.artifacts.rootfs import ensure_base_rootfs
    image = tmp_path / "course-rootfs.ext4"
    image.write_bytes(ensure_base_rootfs(kernel50, []).read_bytes())
    init = tmp_path / "init"
    init.write_text(COURSE_INIT)
    init.chmod(0o755)
    for req in ("rm /sbin/init", f"write {init} /sbin/init"):
        subprocess.run(["/usr/sbin/debugfs", "-w", "-R", req, str(image)], check=True,
                       capture_output=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RLK_")}
    env["RLK_ROOTFS"] = str(image)
    r = subprocess.run([sys.executable, "-m", "gdbkd", "run", "rlk-5.0", "--batch", "--json",
                        "--exec", "student", "--exec", "echo c > /proc/sysrq-trigger"],
                       capture_output=True, text=True, timeout=600, cwd=ROOT, env=env,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr[-3000:]
    res = next(j for j in _json_lines(r.stdout) if isinstance(j, dict) and "report" in j)
    assert "rlk login:" in res["console"] and "GDBKD-LOGGED-IN=student" in res["console"]
    assert "GDBKD-READY" not in res["console"].replace('GDBKD-""READY', "")
    assert res["report"]["trap"]["trap"] == "panic"
    assert "sysrq_handle_crash" in [f["function"] for f in res["report"]["backtrace"]]
