"""kd's memory reader on a live guest: the block cache gives what uncached reads give, and
never serves memory from before the guest ran or before gdb wrote it."""

import json

import pytest

from kdlive import boot_guest

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def guest(kernel61, tmp_path_factory):
    g = boot_guest(kernel61, tmp_path_factory.mktemp("readerguest"))
    try:
        yield g
    finally:
        g.stop()


COMMANDS = ["kd ps --json", "kd bt -a --json", "kd mod --json", "kd sys --json", "kd runq --json",
            "kd foreach task --json", "kd rd -64 init_task 16 --json"]


def test_json_identical_with_cache_on_and_off_live(guest):
    cmds = COMMANDS + [f"kd bt {guest.sleeper} --json"]
    res = guest.gdb(["kd reader --json", *cmds, "kd reader --cache off", *cmds, "kd reader --json"])
    res = [r for r in res if not r["cmd"].startswith("<")]
    assert all(r["err"] is None for r in res), [r for r in res if r["err"]]
    on, off = res[1:1 + len(cmds)], res[2 + len(cmds):2 + 2 * len(cmds)]
    first, last = json.loads(res[0]["out"]), json.loads(res[-1]["out"])
    assert first["backend"] == "GdbReader" and first["cache"] and not last["cache"]
    for c, a, b in zip(cmds, on, off):
        assert a["out"] == b["out"], f"{c} differs with the cache off"
    ps = json.loads(on[0]["out"])["tasks"]
    assert any(t["pid"] == guest.sleeper and t["comm"] == "sleep" for t in ps)


def test_cache_never_serves_stale_memory_live(guest):
    pid = guest.sleeper
    ps_before, = guest.kd_json(f"kd ps {pid}")
    task = int(ps_before["tasks"][0]["task"], 16)
    res = guest.gdb([
        # fill the cache, then write through gdb: the next read must see the write
        f"kd ps {pid} --json",
        f"python gdb.execute('set var ((struct task_struct *){task:#x})->comm[0] = 90')",
        f"kd ps {pid} --json",
        f"set var ((struct task_struct *){task:#x})->comm[0] = 115",
        # the guest runs between two timer ticks: jiffies_64 moves on in guest memory
        "kd rd -64 jiffies_64 --json",
        "watch jiffies_64", "continue", "delete",
        "kd rd -64 jiffies_64 --json",
        "python print(int(gdb.parse_and_eval('jiffies_64')))",
        f"kd ps {pid} --json",
    ])
    res = [r for r in res if not r["cmd"].startswith("<")]
    assert all(r["err"] is None for r in res), [r for r in res if r["err"]]
    outs = {i: r["out"] for i, r in enumerate(res)}
    assert json.loads(outs[0])["tasks"][0]["comm"] == "sleep"
    assert json.loads(outs[2])["tasks"][0]["comm"] == "Zleep"
    j0 = int(json.loads(outs[4])["values"][0], 16)
    j1 = int(json.loads(outs[8])["values"][0], 16)
    gdb_says = int(outs[9].strip())
    assert j1 > j0 and j1 == gdb_says, (j0, j1, gdb_says, outs[6])
    assert json.loads(outs[10])["tasks"][0]["comm"] == "sleep"


def test_gdbkd_run_reads_the_shared_ram_and_agrees_with_the_gdbstub(no_leftover_qemu):
    """gdbkd run gives QEMU its RAM as a memfd; the proxy and kd read kernel memory from it.
    Every kd --json equals what the same commands give reading through gdb without a cache."""
    from conftest import gdbkd
    cmds = ["kd ps --json", "kd bt --json", "kd bt -a --json", "kd mod --json", "kd sys --json",
            "kd foreach task --json", "kd log --json"]
    ex = ["kd reader --json", *cmds, "kd reader --gdb --cache off", *cmds, "kd reader --json"]
    r = gdbkd("run", "--batch", "--json", "--exec", "sleep 100 &",
              "--exec", "echo c > /proc/sysrq-trigger", *[a for c in ex for a in ("-ex", c)])
    assert r.returncode == 0, r.stderr[-2000:]
    rep = json.loads(r.stdout.strip().splitlines()[-1])
    outs = [e["output"] for e in rep["ex"]]
    first, last = json.loads(outs[0]), json.loads(outs[-1])
    assert first["ram"] and first["backend"] == "LiveRamReader" and first["cache"]
    assert last["backend"] == "GdbReader" and not last["cache"]
    n = len(cmds)
    for c, a, b in zip(cmds, outs[1:1 + n], outs[2 + n:2 + 2 * n]):
        assert a == b, f"{c} differs between the shared RAM and the gdbstub"
    assert any(t["comm"] == "sleep" for t in json.loads(outs[1])["tasks"])
