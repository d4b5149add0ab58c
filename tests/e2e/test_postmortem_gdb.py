"""gdb-multiarch on real crash dumps through the stub and through `convert`, checked against drgn.

The fixture boots the Debian 6.1 guest with KASLR on, starts two known sleeping
processes, crashes it with sysrq-c and dumps it with QEMU (ELF and kdump-zlib);
makedumpfile:arm64 (under qemu-user) then writes -d 31 variants (zlib, flattened,
ELF and a 3-part --split set with bookworm's 1.7.2, zstd with trixie's 1.7.6).
drgn 0.3.0, run on the same dump in the same test, is the independent reference.
"""

import json
import shutil
import subprocess
import sys

import pytest

pytestmark = pytest.mark.e2e

IDLE_TID_BASE = 4194304

GDB_SCRIPT = r"""
import gdb, json
out = {"threads": [], "bt": {}, "errors": []}
inf = gdb.selected_inferior()
sel = gdb.selected_thread()
out["selected"] = sel.ptid[1] or sel.ptid[2] if sel else None
def names():
    f, r = gdb.newest_frame(), []
    while f is not None and len(r) < 64:
        r.append(f.name())
        try:
            f = f.older()
        except gdb.error:
            break
    return r
for th in sorted(inf.threads(), key=lambda t: t.num):
    tid = th.ptid[1] or th.ptid[2]
    out["threads"].append([tid, th.name])
    if tid in WANT_BT:
        th.switch()
        out["bt"][str(tid)] = names()
for expr in EXPRS:
    try:
        out.setdefault("exprs", []).append(str(gdb.parse_and_eval(expr)))
    except gdb.error as e:
        out.setdefault("exprs", []).append("ERROR " + str(e))
print("GDBKD-JSON " + json.dumps(out))
"""


def run_gdb(vmlinux, *, stub_dump=None, core=None, offset=0, want_bt=(), exprs=(), extra=()):
    cmd = ["gdb-multiarch", "-batch", "-nx", "-iex", "set auto-load no",
           "-iex", "set debuginfod enabled off",
           # a loaded machine can take gdb's default 2 s to start a pipe stub's Python
           "-iex", "set remotetimeout 30"]
    if core:
        cmd += [str(vmlinux), str(core)]
    else:       # stub_dump: a file, or the parts of a split dump
        dumps = " ".join(map(str, stub_dump)) if isinstance(stub_dump, list) else stub_dump
        cmd += ["-ex", f"symbol-file -o {offset:#x} {vmlinux}",
                "-ex", f"target remote | {sys.executable} -m gdbkd.stub {dumps} {vmlinux}"]
    cmd += list(extra)
    script = f"WANT_BT = {list(want_bt)!r}\nEXPRS = {list(exprs)!r}\n" + GDB_SCRIPT
    cmd += ["-ex", "python\n" + script + "\nend"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    line = next((l for l in r.stdout.splitlines() if l.startswith("GDBKD-JSON ")), None)
    assert line, f"gdb printed no result:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
    return json.loads(line[len("GDBKD-JSON "):]), r


@pytest.fixture(scope="module")
def dumps():
    from testdumps import ensure_test_dumps
    return ensure_test_dumps()


@pytest.fixture(scope="module")
def mdf(dumps):
    if not shutil.which("qemu-aarch64-static"):
        pytest.skip("makedumpfile:arm64 needs qemu-user-static (apt-get install qemu-user-static)")
    from testdumps import ensure_makedumpfile_dumps
    return ensure_makedumpfile_dumps(dumps)


@pytest.fixture(scope="module")
def drgn_ref(dumps):
    drgn = pytest.importorskip("drgn")
    from drgn.helpers.linux.pid import for_each_task, find_task
    prog = drgn.Program()
    prog.set_core_dump(str(dumps.elf))
    prog.load_debug_info([str(dumps.vmlinux)])
    tasks = sorted((t.pid.value_(), t.comm.string_().decode()) for t in for_each_task(prog))
    crashed = prog.crashed_thread()
    sleeper_pid = dumps.meta["sleepers"]["busybox-sleeper"]
    return {
        "tasks": tasks,
        "crashed_tid": crashed.tid,
        "crashed_bt": [f.name for f in crashed.stack_trace()],
        "sleeper_pid": sleeper_pid,
        "sleeper_bt": [f.name for f in prog.stack_trace(find_task(prog, sleeper_pid))],
    }


@pytest.fixture(scope="module")
def kaslr(dumps):
    from gdbkd.target import open_dump
    with open_dump(dumps.elf) as d:
        return d.kaslr_offset


def _check_against_drgn(res, ref, names=True):
    tasks = sorted((tid, name) for tid, name in res["threads"] if tid < IDLE_TID_BASE)
    if names:
        assert tasks == ref["tasks"]
    else:   # Linux core files carry no thread names for gdb: compare the pids
        assert [t[0] for t in tasks] == [t[0] for t in ref["tasks"]]
    assert res["selected"] == ref["crashed_tid"]
    assert res["bt"][str(ref["crashed_tid"])] == ref["crashed_bt"]
    sleeper_bt = res["bt"][str(ref["sleeper_pid"])]
    # drgn starts a sleeping task's trace at cpu_context.pc as gdb does
    assert sleeper_bt == ref["sleeper_bt"]
    assert "do_nanosleep" in sleeper_bt


@pytest.mark.parametrize("which", ["elf", "kdump-zlib"])
def test_stub_threads_and_backtraces_equal_drgn(dumps, drgn_ref, kaslr, which):
    dump = dumps.elf if which == "elf" else dumps.kdump_flat
    assert kaslr != 0, "the test guest must run with KASLR"
    res, r = run_gdb(dumps.vmlinux, stub_dump=dump, offset=kaslr,
                     want_bt=[drgn_ref["crashed_tid"], drgn_ref["sleeper_pid"]],
                     exprs=["init_task.comm", "$_thread"])
    _check_against_drgn(res, drgn_ref)
    idle = [name for tid, name in res["threads"] if tid >= IDLE_TID_BASE]
    assert idle == ["swapper/0", "swapper/1"]
    assert res["exprs"][0].startswith('"swapper/0')


def test_info_threads_shows_pid_and_comm(dumps, drgn_ref, kaslr):
    r = subprocess.run(["gdb-multiarch", "-batch", "-nx", "-iex", "set auto-load no",
                        "-ex", f"symbol-file -o {kaslr:#x} {dumps.vmlinux}",
                        "-ex", f"target remote | {sys.executable} -m gdbkd.stub {dumps.elf} "
                               f"{dumps.vmlinux}",
                        "-ex", "info threads"], capture_output=True, text=True, timeout=300,
                       stdin=subprocess.DEVNULL)
    pid = drgn_ref["sleeper_pid"]
    line = next(l for l in r.stdout.splitlines() if f"Thread {pid} " in l)
    assert f'"busybox-sleeper" (pid {pid} busybox-sleeper [S])' in line
    crashed = next(l for l in r.stdout.splitlines() if l.startswith("*"))
    assert "(crashed)" in crashed


def test_excluded_page_clear_error(dumps, mdf, kaslr):
    from gdbkd.target import open_dump
    with open_dump(mdf["mdf-zlib-d31.kdump"], dumps.vmlinux) as d:
        pa = next(a for a in range(0x40000000, 0x80000000, 1 << 20)
                  if d.phys.page_state(a) == "excluded")
        va = d.mmu.linear_va(pa)
    res, r = run_gdb(dumps.vmlinux, stub_dump=mdf["mdf-zlib-d31.kdump"], offset=kaslr,
                     exprs=[f"*(unsigned long *){va:#x}", "init_task.comm"])
    assert res["exprs"][0] == f"ERROR Cannot access memory at address {va:#x}"
    assert f"{va:#x}: page excluded from the dump (makedumpfile -d)" in r.stderr
    assert res["exprs"][1].startswith('"swapper/0')


@pytest.mark.parametrize("name", ["mdf-zlib-d31.kdump", "mdf-flat-d31.kdump", "mdf-elf-d31.elf",
                                  "mdf-zstd-d31.kdump", "mdf-split-d31"])
def test_stub_on_makedumpfile_outputs(dumps, mdf, drgn_ref, kaslr, name):
    """-d 31 keeps kernel data and task stacks: same threads and backtraces as the full dump."""
    res, _ = run_gdb(dumps.vmlinux, stub_dump=mdf[name], offset=kaslr,
                     want_bt=[drgn_ref["crashed_tid"], drgn_ref["sleeper_pid"]])
    _check_against_drgn(res, drgn_ref)


def test_convert_opens_in_plain_gdb(dumps, drgn_ref, kaslr, tmp_path):
    from gdbkd.postmortem.convert import convert
    core = tmp_path / "kernel.core"
    stats = convert(dumps.kdump_flat, dumps.vmlinux, core)
    assert core.exists() and not list(tmp_path.glob(".kernel.core.*"))
    assert stats["kaslr_offset"] == kaslr
    res, r = run_gdb(dumps.vmlinux, core=core,
                     want_bt=[drgn_ref["crashed_tid"], drgn_ref["sleeper_pid"]],
                     exprs=["init_task.comm"])
    _check_against_drgn(res, drgn_ref, names=False)
    stub_res, _ = run_gdb(dumps.vmlinux, stub_dump=dumps.elf, offset=kaslr)
    assert [t[0] for t in res["threads"]] == [t[0] for t in stub_res["threads"]]
    assert res["exprs"][0].startswith('"swapper/0')


def test_cli_errors_are_one_line(dumps, tmp_path):
    bad = tmp_path / "bad.vmcore"
    bad.write_bytes(b"\0" * 4096)
    for args in ([str(bad), str(dumps.vmlinux)], [str(dumps.elf), str(tmp_path / "nope")]):
        r = subprocess.run([sys.executable, "-m", "gdbkd.stub", *args], capture_output=True,
                           text=True, timeout=120, stdin=subprocess.DEVNULL)
        assert r.returncode != 0
        assert r.stdout == ""
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("gdbkd stub: "), r.stderr
