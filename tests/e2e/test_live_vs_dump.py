"""Each kd command gives the same result live and on a dump of the same stopped guest:
Debian's 6.1 (default tier) and the course's 5.0 (slow tier; gdbkd's ext4 root, a QEMU dump
without a VMCOREINFO note)."""

import json

import pytest

from conftest import gdbkd

pytestmark = pytest.mark.e2e

# commands whose JSON must be equal live and postmortem (volatile fields removed below)
COMMANDS = ["kd ps --json", "kd mod --json", "kd sys --json", "kd task --json 1", "kd bt --json 2",
            "kd log --json", "kd runq --json", "kd analyze --json --log 0", "kd foreach IN task --json",
            "kd files --json 1", "kd vm --json 1", "kd mount --json", "kd irq --json", "kd dev --json",
            "kd kmem -s --json", "kd deadlock --json"]


def _strip(cmd, data):
    if cmd.startswith("kd mod"):
        for m in data["modules"]:
            m.pop("symbols", None)       # whether gdb has the .ko loaded differs by path
        data.pop("messages", None)
    if cmd.startswith("kd analyze"):
        data.pop("trap", None)           # live: stopped at the breakpoint; dump: stopped in panic's loop
        data.pop("vmcoreinfo", None)     # a dump without the note says where it found it
        data["backtrace"] = [f["function"] for f in data["backtrace"] if f["function"] == "sysrq_handle_crash"]
    return data


@pytest.mark.parametrize("profile", ["debian-6.1", pytest.param("rlk-5.0", marks=pytest.mark.slow)])
def test_kd_commands_live_equal_postmortem(profile, tmp_path, no_leftover_qemu):
    from gdbkd.artifacts.kernel import ensure_kernel
    from gdbkd.qemu.profiles import load_profile
    kernel = ensure_kernel(load_profile(profile))
    dump = tmp_path / "vmcore.elf"
    args = ["run", profile, "--batch", "--json", "--exec", "echo c > /proc/sysrq-trigger",
            "--dump-on-crash", str(dump)]
    for c in COMMANDS:
        args += ["-ex", c]
    r = gdbkd(*args)
    assert r.returncode == 0, r.stderr[-2000:]
    rep = json.loads(r.stdout.strip().splitlines()[-1])
    live = {e["command"]: json.loads(e["output"]) for e in rep["ex"]}
    args = ["core", str(dump), kernel.vmlinux, "--batch"]
    for c in COMMANDS:
        args += ["-ex", "echo @@" + c + "\\n", "-ex", c]
    r = gdbkd(*args)
    assert r.returncode == 0, r.stderr[-2000:]
    post, cur = {}, None
    for line in r.stdout.splitlines():
        if line.startswith("@@"):
            cur = line[2:]
        elif cur and line.startswith(("{", "[")):
            post[cur] = json.loads(line)
            cur = None
    for c in COMMANDS:
        assert c in post, (c, r.stdout[-1500:])
        assert _strip(c, post[c]) == _strip(c, live[c]), c
