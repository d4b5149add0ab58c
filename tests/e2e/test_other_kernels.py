"""The spine on Debian 5.10 (bullseye) and 6.12 (trixie): slow tier (two more kernel downloads)."""

import json

import pytest

from conftest import gdbkd
from test_spine import _write_module

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("profile", ["debian-5.10", "debian-6.12"])
def test_sysrq_crash_caught(profile, no_leftover_qemu):
    r = gdbkd("run", profile, "--batch", "--json", "--exec", "echo c > /proc/sysrq-trigger",
              "-ex", "kd ps --json", "-ex", "kd sys --json", timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    rep = json.loads(r.stdout.strip().splitlines()[-1])
    assert rep["report"]["trap"]["trap"] in ("panic", "vpanic")
    assert "sysrq_handle_crash" in [f["function"] for f in rep["report"]["backtrace"]]
    ps = json.loads(rep["ex"][0]["output"])
    assert any(t.get("pid") == 1 for t in (ps["tasks"] if isinstance(ps, dict) else ps))


def test_module_null_deref_on_5_10(tmp_path, no_leftover_qemu):
    tag, fn, line = _write_module(tmp_path)
    r = gdbkd("run", "debian-5.10", "--batch", "--json", "--module", str(tmp_path),
              "--exec", f"insmod /lib/modules/gdbkd/t{tag}.ko", timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    rep = json.loads(r.stdout.strip().splitlines()[-1])
    assert rep["report"]["trap"]["fault_function"].startswith(fn + "+")
    hit = [f for f in rep["report"]["backtrace"] if f["function"] == fn]
    assert hit and hit[0]["line"] == line
