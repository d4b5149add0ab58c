"""gdbkd attach in its default mode (every task a gdb thread, through gdbkd's proxy) at any
moment of a guest's life: while the kernel boots, while it runs, after it has panicked; on
Debian's 6.1 and on the course's 5.0 (gdbkd's ext4 root: it takes no initramfs).

Each case attaches, the guest is crashed with sysrq-c (unless it already has), and the
stop's ``info threads`` must name exactly the tasks ``kd ps`` finds, with the panicking
shell among them. (On 5.0, attaching during boot used to end in "gdb-multiarch exited
unexpectedly", and after a panic the thread list held only the CPUs' idle tasks.)
"""

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT

pytestmark = pytest.mark.e2e

PREBUILT = ROOT.parent / "shared" / "kernels" / "rlk-5.0"
PROFILES = ["debian-6.1", "rlk-5.0"]
MOMENTS = ["boot", "running", "panicked"]
THREAD = re.compile(r'Thread \d+ "[^"]*" \(pid (\d+) ')


def _machine(profile_name, workdir: Path):
    from gdbkd.artifacts.kernel import ensure_kernel
    from gdbkd.qemu.machine import Machine
    from gdbkd.qemu.profiles import load_profile
    if profile_name.startswith("rlk") and not (PREBUILT / "SHA256SUMS").is_file():
        pytest.skip(f"the course's prebuilt 5.0 kernel is not at {PREBUILT}")
    profile = load_profile(profile_name)
    kernel = ensure_kernel(profile)
    from gdbkd.artifacts.rootfs import guest_boot
    initrd, args, _ = guest_boot(profile, kernel, {}, "echo GDBKD-SHELL=$$\n", workdir,
                                 own_allowed=False)
    return kernel, Machine(profile, kernel, initrd, extra_args=args)


@pytest.mark.parametrize("moment", MOMENTS)
@pytest.mark.parametrize("profile", PROFILES)
def test_attach_shows_every_task_as_a_thread(profile, moment, tmp_path, no_leftover_qemu):
    if profile == "debian-6.1" and moment == "panicked":
        pytest.skip("6.1 after a panic: tests/e2e/test_attach_crashed.py")
    kernel, m = _machine(profile, tmp_path)
    m.start()
    try:
        if moment == "boot":
            pass        # at once: QEMU may not listen yet (gdbkd waits up to 3 s for it)
        else:
            assert m.console.wait_for("GDBKD-READY", 120), m.console.text()[-1000:]
        if moment == "panicked":
            m.console.send("echo c > /proc/sysrq-trigger\n")
            assert m.console.wait_for("end Kernel panic", 60)
        a = subprocess.Popen([sys.executable, "-m", "gdbkd", "attach", f"127.0.0.1:{m.gdb_port}",
                              "--vmlinux", str(kernel.vmlinux), "--batch", "--json", "--timeout", "120",
                              "-ex", "info threads", "-ex", "kd ps --json"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
        if moment != "panicked":
            assert m.console.wait_for("GDBKD-READY", 120), m.console.text()[-1000:]
            time.sleep(3)                 # attach is waiting for the crash by now (or soon)
            m.console.send("echo c > /proc/sysrq-trigger\n")
        out, err = a.communicate(timeout=400)
        console = m.console.text()
    finally:
        m.stop()
    assert a.returncode == 0, err[-2000:]
    res = json.loads(out.strip().splitlines()[-1])
    shell = int(re.search(r"GDBKD-SHELL=(\d+)", console).group(1))
    if moment == "panicked":
        assert res["stopped"].startswith("the guest had already panicked on CPU "), res["stopped"]
    assert res["report"]["trap"]["trap"] == "panic" and res["report"]["pid"] == shell
    threads, ps = (e["output"] for e in res["ex"])
    tasks = json.loads(ps)["tasks"]
    thread_pids = sorted(int(p) for p in THREAD.findall(threads))
    assert len(tasks) > 20 and shell in thread_pids
    assert thread_pids == sorted(t["pid"] for t in tasks)
