"""Real in-guest kdump on Debian 6.1: kexec -p, capture kernel, makedumpfile -F -c -d 31.

The module fixture boots the guest with crashkernel=256M, starts a busybox
copy under a name of its own that prints its pid and crashes the kernel with
sysrq-c, and lets the capture kernel write the dump to a virtio disk; the test
then checks the copied file with gdbkd's reader, `gdbkd core` (gdb) and drgn
(the independent reference) against what it established itself: the kernel
release, the crashing pid and comm, the crash path.
"""

import json
import os
import re
import struct
import time
from pathlib import Path

import pytest

from conftest import gdbkd, qemu_pids

pytestmark = pytest.mark.slow

CRASHER = "busybox-crasher"          # 15 characters: the whole comm
TRIGGER = [f"cp /bin/busybox /bin/{CRASHER}",
           f"/bin/{CRASHER} sh -c 'echo KDUMP-CRASHER=$$; echo c > /proc/sysrq-trigger'"]


def _own_qemus():
    """gdbkd QEMUs whose parent is this test process (a leak: run_kdump runs in-process)."""
    mine = set()
    for pid in qemu_pids():
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == os.getpid():
            mine.add(pid)
    return mine


def _assert_no_qemu_left():
    for _ in range(50):
        if not _own_qemus():
            return
        time.sleep(0.1)
    pytest.fail(f"QEMU left running: {sorted(_own_qemus())}")


@pytest.fixture(scope="module")
def profile61():
    from gdbkd.qemu.profiles import load_profile
    return load_profile("debian-6.1")


@pytest.fixture(scope="module")
def sysrq(tmp_path_factory, kernel61, profile61):
    from gdbkd.kdump import run_kdump
    d = tmp_path_factory.mktemp("kdump")
    out = d / "vmcore.flat"
    res = run_kdump(kernel61, profile61, {}, "", TRIGGER, out)
    _assert_no_qemu_left()
    m = re.search(r"KDUMP-CRASHER=(\d+)", res["console"])
    assert m, res["console"][-2000:]
    return {"out": out, "dir": d, "res": res, "pid": int(m.group(1))}


@pytest.fixture(scope="module")
def drgn_crashed(sysrq, kernel61):
    drgn = pytest.importorskip("drgn")
    prog = drgn.Program()
    prog.set_core_dump(str(sysrq["out"]))
    prog.load_debug_info([kernel61.vmlinux])
    t = prog.crashed_thread()
    trace = t.stack_trace()
    return {"tid": t.tid, "comm": t.object.comm.string_().decode(),
            "bt": [f.name for f in trace], "bt_outer": [f.name for f in trace if not f.is_inline]}


def _analyze(dump, vmlinux, *extra):
    r = gdbkd("core", str(dump), vmlinux, *extra, "--batch", "-ex", "kd analyze --json", "-ex", "bt")
    assert r.returncode == 0, r.stderr[-2000:]
    rep = next(json.loads(l) for l in r.stdout.splitlines() if l.startswith("{") and '"backtrace"' in l)
    return rep, r


def test_dump_file_is_the_whole_flattened_stream(sysrq):
    out, res = sysrq["out"], sysrq["res"]
    data = out.read_bytes()
    assert data[:12] == b"makedumpfile"
    assert data[-16:] == struct.pack(">qq", -1, -1)         # trimmed right after the end marker
    assert res["bytes"] == len(data) and res["records"] > 0
    # -d 31 and zlib: far smaller than the 1 GiB guest
    assert len(data) < 200 << 20
    assert [p.name for p in sysrq["dir"].iterdir()] == ["vmcore.flat"]   # no temp file left
    assert "makedumpfile Completed." in res["console"]
    assert set(res["seconds"]) >= {"boot_and_load", "capture_boot", "makedumpfile", "total"}


def test_opens_with_gdbkd_reader(sysrq, kernel61):
    from gdbkd.target import open_dump
    with open_dump(sysrq["out"], kernel61.vmlinux) as d:
        assert d.vmcoreinfo["OSRELEASE"] == kernel61.release
        assert d.kaslr_offset != 0                       # kdump runs keep KASLR on
        t = d.crashed_thread
        assert t is not None and t.task.pid == sysrq["pid"]
        assert t.task.name == CRASHER


def test_core_bt_shows_sysrq_crash_and_equals_drgn(sysrq, kernel61, drgn_crashed):
    rep, r = _analyze(sysrq["out"], kernel61.vmlinux)
    funcs = [f["function"] for f in rep["backtrace"]]
    assert "sysrq_handle_crash" in funcs and "panic" in funcs
    assert "sysrq_handle_crash" in r.stdout.split('"backtrace"')[-1]      # plain `bt` too
    assert rep["pid"] == sysrq["pid"] and rep["comm"] == CRASHER
    assert drgn_crashed["tid"] == sysrq["pid"] and drgn_crashed["comm"] == CRASHER
    # the same frames as drgn's, named as the ELF symbol (crash's and the kernel's own name:
    # el0_svc_common.constprop.0) where drgn gives the DWARF function (el0_svc_common).
    # The report and `kd bt` are one walk: both list the inlined frames too (crash_setup_regs
    # in __crash_kexec, pde_write, __do_sys_write, ...) as drgn does
    from gdbkd.analysis.crashsig import normalize_function
    assert [normalize_function(f) for f in funcs] == drgn_crashed["bt"]
    assert [f["function"] for f in rep["backtrace"] if not f["inlined"]] and \
        [normalize_function(f["function"]) for f in rep["backtrace"] if not f["inlined"]] == \
        drgn_crashed["bt_outer"]
    r = gdbkd("core", str(sysrq["out"]), kernel61.vmlinux, "-s", "--batch", "-ex", "kd bt --json")
    assert r.returncode == 0, r.stderr[-2000:]
    bt = next(json.loads(l) for l in r.stdout.splitlines() if l.startswith("["))[0]["frames"]
    assert [normalize_function(f["function"]) for f in bt] == drgn_crashed["bt"]
    assert [f["function"] for f in bt if f["inlined"]] == \
        [n for n in drgn_crashed["bt"] if n not in drgn_crashed["bt_outer"]]


def test_excluded_page_gives_clear_error(sysrq, kernel61):
    from gdbkd.target import open_dump
    from gdbkd.dump.base import PageExcluded
    with open_dump(sysrq["out"], kernel61.vmlinux) as d:
        pa = next(a for a in range(0x40000000, 0x80000000, 1 << 20)
                  if d.phys.page_state(a) == "excluded")
        va = d.mmu.linear_va(pa)
        with pytest.raises(PageExcluded, match="page excluded from the dump"):
            d.read(va, 8)
    r = gdbkd("core", str(sysrq["out"]), kernel61.vmlinux, "--batch",
              "-ex", f"x/gx {va:#x}", "-ex", "p init_task.comm")
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"{va:#x}: page excluded from the dump (makedumpfile -d)" in r.stderr
    assert f"Cannot access memory at address {va:#x}" in r.stderr
    assert '"swapper/0' in r.stdout                      # kept pages still read


def test_lab1_through_run_kdump(tmp_path, kernel61, profile61):
    from gdbkd.kdump import run_kdump
    from gdbkd.labs import get_lab, build_lab, lab_rc
    lab = get_lab(1)
    files = build_lab(lab, kernel61)
    out = tmp_path / "lab1.vmcore"
    res = run_kdump(kernel61, profile61, files, lab_rc(lab), lab.trigger, out)
    _assert_no_qemu_left()
    assert out.exists() and res["bytes"] == out.stat().st_size
    ko = files[lab.ko_guest_path]
    rep, _ = _analyze(out, kernel61.vmlinux, "--modules-dir", str(Path(ko).parent))
    funcs = [f["function"] for f in rep["backtrace"]]
    assert funcs[0] == lab.fault_function, funcs
    assert rep["comm"] == "insmod"
    _check_oops_registers(rep)
    drgn = pytest.importorskip("drgn")
    prog = drgn.Program()
    prog.set_core_dump(str(out))
    prog.load_debug_info([kernel61.vmlinux, str(ko)])
    t = prog.crashed_thread()
    assert t.tid == rep["pid"]
    assert t.stack_trace()[0].name == lab.fault_function


def _check_oops_registers(rep):
    """The report's trap on a kdump of an oops: die() passed the oops's pt_regs to
    crash_kexec, so the crashed CPU's saved registers are the exception's (the oops's own
    pc line proves it); ESR and the fault address from the oops; the fault explained."""
    t = rep["trap"]
    assert t["trap"] == "die" and t["from_log"], t
    assert t["registers"]["pc"] == rep["backtrace"][0]["pc"] == t["fault_pc"]
    assert "crash_kexec" in t["registers_from"]
    assert (int(t["esr"], 16) >> 26) & 0x3F == 0x25       # a data abort taken at EL1
    assert int(t["far"], 16) < 0x10000 and "message" in t["far_from"]  # NULL + a member's offset
    acc = rep["explanation"]
    assert acc["far"] == t["far"] and acc["instruction"]["pc"] == t["fault_pc"], acc


def test_no_crash_is_one_clear_error(tmp_path, kernel61, profile61):
    from gdbkd.errors import GdbkdError
    from gdbkd.kdump import run_kdump
    out = tmp_path / "never.vmcore"
    with pytest.raises(GdbkdError) as ei:
        run_kdump(kernel61, profile61, {}, "", ["echo still-alive"], out, timeout=40)
    _assert_no_qemu_left()
    lines = str(ei.value).splitlines()
    assert lines[0] == "kdump: the guest did not crash (no 'Starting crashdump kernel')"
    assert lines[1] == "last console lines:" and any("still-alive" in l for l in lines[2:])
    assert list(tmp_path.iterdir()) == []


def test_52bit_kernel_refused_up_front(tmp_path):
    from gdbkd.qemu.profiles import load_profile
    from gdbkd.artifacts.kernel import ensure_kernel
    from gdbkd.errors import GdbkdError
    from gdbkd.kdump import run_kdump
    profile = load_profile("debian-6.12")
    k = ensure_kernel(profile)
    with pytest.raises(GdbkdError, match=r"^kdump: makedumpfile 1\.7\.2 does not support .*52-bit"):
        run_kdump(k, profile, {}, "", ["echo c > /proc/sysrq-trigger"], tmp_path / "x")
    assert list(tmp_path.iterdir()) == []
