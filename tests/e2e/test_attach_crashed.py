"""gdbkd attach to a guest that has already crashed reports that crash at once (it used to
continue the guest and wait for another, "no crash within N s")."""

import json
import subprocess
import sys

import pytest

from kdlive import boot_guest

pytestmark = pytest.mark.e2e


def test_attach_after_the_panic_reports_it_at_once(kernel61, tmp_path, no_leftover_qemu):
    g = boot_guest(kernel61, tmp_path)
    try:
        shell = int(g.sh("echo SHELL=$$").split("SHELL=")[1].split()[0])
        mark = g.m.console.mark()
        g.m.console.send("echo c > /proc/sysrq-trigger\n")
        g.wait_for(b"Kernel panic - not syncing", timeout=60, start=mark)
        r = subprocess.run([sys.executable, "-m", "gdbkd", "attach", f"127.0.0.1:{g.port}",
                            "--vmlinux", str(kernel61.vmlinux), "--batch", "--json", "--timeout", "30"],
                           capture_output=True, text=True, timeout=300, cwd=tmp_path)
    finally:
        g.stop()
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["stopped"].startswith("the guest had already panicked on CPU "), res["stopped"]
    rep = res["report"]
    assert rep["trap"]["trap"] == "panic" and "sysrq triggered crash" in rep["trap"]["message"]
    assert rep["pid"] == shell
    assert "sysrq_handle_crash" in [f["function"] for f in rep["backtrace"]]
