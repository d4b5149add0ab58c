"""gdbkd attach without --modules-dir finds the .ko gdbkd itself built (its module cache,
matched by build-id) and names the module's frames and symbols from it."""

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from kdlive import boot_guest

pytestmark = pytest.mark.e2e

HERE = Path(__file__).resolve().parent


def test_attach_finds_the_ko_gdbkd_built(kernel61, tmp_path):
    from gdbkd.artifacts.modules import build_module_dir
    ko = build_module_dir(HERE / "kdtest_mod", kernel61)[0]
    g = boot_guest(kernel61, tmp_path, {"lib/modules/gdbkd/kdtest.ko": ko},
                   rc="insmod /lib/modules/gdbkd/kdtest.ko\n")
    try:
        def crash():
            time.sleep(8)
            g.m.console.send("echo c > /proc/sysrq-trigger\n")
        threading.Thread(target=crash, daemon=True).start()
        r = subprocess.run([sys.executable, "-m", "gdbkd", "attach", f"127.0.0.1:{g.port}",
                            "--vmlinux", str(kernel61.vmlinux), "--batch", "-ex", "kd mod",
                            "-ex", "info address dsleep_write"],
                           capture_output=True, text=True, timeout=300, cwd=tmp_path)
    finally:
        g.stop()
    assert r.returncode == 0, r.stderr[-2000:]
    mods = {l.split()[1]: l.split()[-1] for l in r.stdout.splitlines()
            if l.startswith("ffff") and len(l.split()) >= 7}
    assert mods.get("kdtest") == "loaded", r.stdout[-2000:]
    assert "Symbol \"dsleep_write\" is a function at address" in r.stdout
