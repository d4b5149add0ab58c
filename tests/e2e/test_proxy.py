"""gdbkd proxy: every task a gdb thread on a live guest (gdb ⇄ gdbkd proxy ⇄ QEMU's gdbstub).

The guest is the 6.1 test guest with kdtest.ko (a debugfs write handler to break in) and a
few known processes. gdb runs in batch sessions through `target remote | gdbkd proxy`;
a small Python driver inside gdb collects what gdb itself says (threads, bt, locals) and
what kd says, as JSON. The dump of the same stop (QMP dump-guest-memory while gdb holds
the guest) opened with `gdbkd core` is the reference for gdb's own bt.
"""

import json
import os
import re
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import pytest

from kdlive import boot_guest
from conftest import gdbkd, pids_where

pytestmark = pytest.mark.e2e

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]

DRIVER = r"""
import gdb, json
res = {}
def threads():
    inf = gdb.selected_inferior()
    return {(t.ptid[1] or t.ptid[2]): t for t in inf.threads()}
def tid_of(t):
    return t.ptid[1] or t.ptid[2]
def bt_names(limit=40):
    f, out = gdb.newest_frame(), []
    while f is not None and len(out) < limit:
        out.append(f.name())
        try:
            f = f.older()
        except gdb.error:
            break
    return out
gdb.execute("source " + KD_PY)
gdb.execute("set breakpoint pending off")
gdb.execute("kd symbols --modules-dir " + MODDIR if MODDIR else "kd symbols --no-modules",
            to_string=True)
exec(open(BODY).read())
json.dump(res, open(OUT, "w"))
"""


def run_proxied(guest, body, timeout=240, background=False, extra_env=None):
    """Run BODY (Python, with `res` to fill) in gdb attached through gdbkd proxy."""
    tmp = Path(tempfile.mkdtemp(dir=guest.dir))
    (tmp / "body.py").write_text(body)
    (tmp / "driver.py").write_text(f"KD_PY = {str(ROOT / 'gdb_scripts/kd.py')!r}\n"
                                   f"BODY = {str(tmp / 'body.py')!r}\nOUT = {str(tmp / 'out.json')!r}\n"
                                   f"MODDIR = {str(Path(guest.ko).parent) if getattr(guest, 'ko', None) else ''!r}\n"
                                   + DRIVER)
    vml = str(guest.kernel.vmlinux)
    argv = ["gdb-multiarch", "-nx", "-batch", "-iex", "set auto-load no",
            "-iex", "set debuginfod enabled off", "-ex", "set pagination off",
            "-ex", f"file {vml}",
            "-ex", f"target remote | {sys.executable} -m gdbkd proxy 127.0.0.1:{guest.port} {vml}",
            "-ex", f"source {tmp / 'driver.py'}"]
    env = dict(os.environ, GDBKD_SITE=sysconfig.get_paths()["purelib"], GDBKD_PATH=str(ROOT),
               **(extra_env or {}))
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True, env=env, cwd=ROOT)

    def collect():
        out, err = proc.communicate(timeout=timeout)
        p = tmp / "out.json"
        assert p.exists(), f"gdb driver produced no result:\n{err[-3000:]}\n{out[-3000:]}"
        return json.loads(p.read_text()), out, err
    return (proc, collect) if background else collect()


@pytest.fixture(scope="module")
def guest(kernel61, tmp_path_factory):
    from gdbkd.artifacts.modules import build_module_dir
    ko = build_module_dir(HERE / "kdtest_mod", kernel61)[0]
    g = boot_guest(kernel61, tmp_path_factory.mktemp("proxyguest"),
                   {"lib/modules/gdbkd/kdtest.ko": ko}, rc="insmod /lib/modules/gdbkd/kdtest.ko\n")
    g.ko = ko
    try:
        yield g
    finally:
        g.stop()


def test_threads_are_kd_ps_tasks_and_sleeping_bt_equals_the_dumps(guest, tmp_path):
    dump = tmp_path / "stop.elf"
    body = f"""
ths = threads()
res["tids"] = sorted(ths)
res["names"] = {{str(k): v.name for k, v in ths.items()}}
res["ps"] = json.loads(gdb.execute("kd ps --json", to_string=True))["tasks"]
sl = ths[{guest.sleeper}]
sl.switch()
res["bt"] = bt_names()
# frame N + info locals on the sleeping task
gdb.execute("frame 2", to_string=True)
res["frame2"] = gdb.selected_frame().name()
res["locals"] = gdb.execute("info locals", to_string=True)
res["find"] = gdb.execute("thread find sleep", to_string=True)
res["apply_all"] = gdb.execute("thread apply all bt 3", to_string=True)
# the dump of this very stop, taken while gdb holds the guest
from gdbkd.qemu.qmp import Qmp
q = Qmp({str(guest.qmp_path)!r}); q.dump({str(dump)!r}, "elf"); q.close()
"""
    res, out, err = run_proxied(guest, body)
    ps_tids = {t["pid"] if t["pid"] else 4194304 + t["cpu"] for t in res["ps"]}
    assert set(res["tids"]) == ps_tids and len(ps_tids) > 40
    assert res["names"][str(guest.sleeper)] == "sleep"
    assert res["bt"][0] in ("__switch_to", "cpu_switch_to") and "schedule" in res["bt"]
    assert "do_nanosleep" in res["bt"] or "hrtimer_nanosleep" in res["bt"], res["bt"]
    assert res["frame2"] == res["bt"][2] and "No symbol table info" not in res["locals"]
    assert re.search(r"Thread \d+ has target name 'sleep'", res["find"])
    assert res["apply_all"].count("\nThread ") + res["apply_all"].startswith("Thread ") >= len(ps_tids) - 1
    # the same task's bt on the dump of the same stop, through gdbkd core's server
    r = gdbkd("core", str(dump), str(guest.kernel.vmlinux), "-s", "--batch",
              "-ex", "thread find sleep", "-ex", "python import gdb\n", "-ex",
              f"python [t.switch() for t in gdb.selected_inferior().threads() if t.ptid[1] == {guest.sleeper}]",
              "-ex", "bt 40")
    assert r.returncode == 0, r.stderr[-2000:]
    dump_bt = re.findall(r"^#\d+\s+(?:0x[0-9a-f]+ in )?(\S+) \(", r.stdout, re.M)
    assert dump_bt == res["bt"][:len(dump_bt)] and len(dump_bt) == len(res["bt"]), (dump_bt, res["bt"])


def test_twenty_stops_follow_tasks_that_come_and_go(guest):
    body = """
res["cycles"] = []
gdb.execute("hbreak kernel_clone", to_string=True)
for i in range(20):
    gdb.execute("continue", to_string=True)
    ths = threads()
    ps = json.loads(gdb.execute("kd ps --json", to_string=True))["tasks"]
    cur = gdb.selected_thread()
    me = json.loads(gdb.execute("kd task --json", to_string=True))
    me = me[0] if isinstance(me, list) else me
    res["cycles"].append({"tids": sorted(ths),
                          "ps": sorted(t["pid"] if t["pid"] else 4194304 + t["cpu"] for t in ps),
                          "stopped": tid_of(cur), "task_pid": me.get("pid"),
                          "frame": gdb.newest_frame().name()})
gdb.execute("delete")
"""
    # every half second a new `sleep 2` starts: tasks come and go between the stops
    loop = int(re.search(r"LOOP=(\d+)", guest.sh(
        "(while :; do sleep 2 & sleep 0.5; done) > /dev/null 2>&1 & echo LOOP=$!")).group(1))
    try:
        res, out, err = run_proxied(guest, body)
    finally:
        guest.sh(f"kill {loop} 2>/dev/null; true")
    cycles = res["cycles"]
    assert len(cycles) == 20
    for c in cycles:
        assert c["tids"] == c["ps"], "thread list and kd ps disagree at a stop"
        assert c["frame"] == "kernel_clone"
        assert c["stopped"] == c["task_pid"], c          # the stop names the task that hit it
    sets = [frozenset(c["tids"]) for c in cycles]
    assert len(set(sets)) > 5, "tasks were created and exited between the stops"


def test_breakpoint_in_a_module_reports_the_writer_and_refuses_sleepers(guest):
    body = f"""
gdb.execute("hbreak dsleep_write", to_string=True)
gdb.execute("continue", to_string=True)
res["stopped"] = tid_of(gdb.selected_thread())
res["frame"] = gdb.newest_frame().name()
gdb.execute("delete")
# a sleeping task cannot be stepped: one-line refusal, the session goes on
threads()[{guest.sleeper}].switch()
try:
    res["step"] = gdb.execute("stepi", to_string=True)
except gdb.error as e:
    res["step"] = str(e)
res["after"] = tid_of(gdb.selected_thread())
"""
    proc, collect = run_proxied(guest, body, background=True)
    time.sleep(3)
    out = guest.sh("sh -c 'echo 1 > /sys/kernel/debug/kdtest/dsleep' & echo W=$!", timeout=60)
    writer = int(re.search(r"W=(\d+)", out).group(1))
    res, gout, err = collect()
    assert res["frame"] == "dsleep_write" and res["stopped"] == writer
    assert "sleeping task cannot be stepped" in err + gout + res["step"]
    guest.sh("echo 1 > /sys/kernel/debug/kdtest/release 2>/dev/null; true")


def test_ctrl_c_and_a_cpu_in_user_mode(guest):
    """SIGINT to gdb while the guest runs a user-mode busy loop (KPTI: that CPU maps only
    the trampoline): the stop comes, the threads are the tasks, kd works."""
    busy = int(re.search(r"BUSY=(\d+)", guest.sh("(while :; do :; done) & echo BUSY=$!")).group(1))
    body = """
gdb.execute("continue", to_string=True)
ths = threads()
res["tids"] = sorted(ths)
res["ps"] = sorted(t["pid"] if t["pid"] else 4194304 + t["cpu"]
                   for t in json.loads(gdb.execute("kd ps --json", to_string=True))["tasks"])
res["busy_state"] = [t["state"] for t in json.loads(gdb.execute("kd ps --json", to_string=True))["tasks"]
                     if t["comm"] == "sh" and t["active"]]
res["bt_all"] = gdb.execute("kd bt -a --json", to_string=True)[:200]
"""
    try:
        proc, collect = run_proxied(guest, body, background=True)
        time.sleep(6)
        proc.send_signal(signal.SIGINT)
        res, out, err = collect()
    finally:
        guest.sh(f"kill {busy} 2>/dev/null; true")
    assert res["tids"] == res["ps"]
    assert res["bt_all"].startswith(("[", "{"))


def test_no_proxy_left_when_gdb_or_qemu_dies(no_leftover_qemu):
    """gdbkd run (proxy by default): SIGKILL gdb, then in a second run SIGKILL QEMU — no
    proxy process survives either."""
    def proxies():
        return pids_where(lambda cmd: b"gdbkd\0proxy\0" in cmd and b"--listen" in cmd)

    def child(parent, pattern):
        for _ in range(600):
            for d in Path("/proc").iterdir():
                if not d.name.isdigit():
                    continue
                try:
                    cmd = (d / "cmdline").read_bytes()
                    ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, ValueError):
                    continue
                if ppid == parent and pattern in cmd:
                    return int(d.name)
            time.sleep(0.1)
        raise AssertionError(pattern)

    before = proxies()
    for victim in (b"gdb-multiarch", b"qemu-system-aarch64"):
        proc = subprocess.Popen([sys.executable, "-m", "gdbkd", "run", "--batch", "--timeout", "120"],
                                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            child(proc.pid, b"proxy")
            vpid = child(proc.pid, victim)
            seen = ""
            while "gdb attached" not in seen:
                line = proc.stderr.readline()
                assert line, seen
                seen += line
            os.kill(vpid, signal.SIGKILL)
            proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode != 0
        for _ in range(50):
            if not proxies() - before:
                break
            time.sleep(0.1)
        assert not proxies() - before, f"proxy left after killing {victim.decode()}"


def test_memory_and_register_writes_of_a_vcpu_task_go_through(guest):
    """Through the proxy: a memory write is seen by the next read (gdb's and kd's), and a
    register write of the task on a vCPU reaches that vCPU."""
    body = """
cur = json.loads(gdb.execute("kd task --json", to_string=True))
cur = cur[0] if isinstance(cur, list) else cur
addr = int(cur["task"], 16)
ps = lambda: [t for t in json.loads(gdb.execute("kd ps --json", to_string=True))["tasks"]
              if int(t["task"], 16) == addr][0]["comm"]
res["before"] = ps()
orig = int(gdb.parse_and_eval("((struct task_struct *)%d)->comm[0]" % addr))
gdb.execute("set var ((struct task_struct *)%d)->comm[0] = 81" % addr)
res["after"] = ps()
res["gdb_after"] = int(gdb.parse_and_eval("((struct task_struct *)%d)->comm[0]" % addr))
gdb.execute("set var ((struct task_struct *)%d)->comm[0] = %d" % (addr, orig))
x = int(gdb.parse_and_eval("$x9")) & 0xFFFFFFFFFFFFFFFF
gdb.execute("set var $x9 = 0x1234567")
gdb.execute("flushregs")
res["x9"] = int(gdb.parse_and_eval("$x9")) & 0xFFFFFFFFFFFFFFFF
gdb.execute("set var $x9 = %d" % x)
"""
    res, out, err = run_proxied(guest, body)
    assert res["after"] == "Q" + res["before"][1:] and res["gdb_after"] == 81
    assert res["x9"] == 0x1234567
