"""Slow tier: every task a gdb thread (gdbkd proxy, shared RAM) on 5.10 and 6.12: gdb's
threads are kd ps's tasks, and gdb's own bt of a sleeping task reaches its sleep."""

import json

import pytest

from conftest import gdbkd

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SWITCH = ("python import gdb; "
          "[t.switch() for t in gdb.selected_inferior().threads() if t.name == 'sleep']")


@pytest.mark.parametrize("profile", ["debian-5.10", "debian-6.12"])
def test_tasks_as_threads(profile, no_leftover_qemu):
    tids = ("python import gdb, json; print(json.dumps(sorted((t.ptid[1] or t.ptid[2]) "
            "for t in gdb.selected_inferior().threads())))")
    r = gdbkd("run", profile, "--batch", "--json", "--exec", "sleep 100 &",
              "--exec", "echo c > /proc/sysrq-trigger", "-ex", tids, "-ex", "kd ps --json",
              "-ex", "kd reader --json", "-ex", SWITCH, "-ex", "bt 30", timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    ex = [e["output"] for e in json.loads(r.stdout.strip().splitlines()[-1])["ex"]]
    threads = json.loads(ex[0])
    ps = json.loads(ex[1])["tasks"]
    assert threads == sorted(t["pid"] if t["pid"] else 4194304 + t["cpu"] for t in ps)
    assert json.loads(ex[2])["ram"]
    assert "schedule" in ex[4] and "nanosleep" in ex[4], ex[4]
