"""gdbkd triage on real dumps (the default tier's representative run; the whole fleet, Dask and
the browser check are in test_triage_fleet.py, slow tier).

Dumps (tests/triage_dumps.py, cached): lab 1's NULL dereference, lab 5's ABBA deadlock, the
test guest's sysrq panic in two formats (QEMU ELF and kdump-zlib of the same instant), and a
junk file. The vmlinux is picked from a directory that also holds another ELF program with a
build-id of its own.
"""

import json
import os

import pytest

from conftest import gdbkd

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    from triage_dumps import fleet_dir, vmlinux_dir, bad_dump
    from testdumps import ensure_test_dumps
    d = tmp_path_factory.mktemp("fleet")
    paths = fleet_dir(d, ["lab1", "lab5", "sysrq-loop"], junk=False)
    paths["sysrq-elf"] = d / "sysrq-elf.vmcore"
    paths["sysrq-elf"].symlink_to(ensure_test_dumps().elf)
    paths["junk"] = bad_dump(d)
    vdir = vmlinux_dir(d)
    from gdbkd.qemu.profiles import load_profile
    from gdbkd.artifacts.kernel import ensure_kernel
    release = ensure_kernel(load_profile("debian-6.1")).release   # whatever ABI the cache holds
    return paths, vdir, str(next(vdir.glob("vmlinux-6*")).resolve()), release


def test_triage_local(fleet, tmp_path):
    paths, vdir, vml, release = fleet
    html = tmp_path / "report.html"
    r = gdbkd("triage", *map(str, paths.values()), "--vmlinux-dir", str(vdir), "--json", "--html", str(html),
              "-j", "2", timeout=600)
    assert r.returncode == 3, r.stderr[-2000:]          # complete, with an error row
    assert "Traceback" not in r.stderr
    res = json.loads(r.stdout)
    rows = {os.path.basename(x["dump"]).removesuffix(".vmcore"): x for x in res["dumps"]}
    assert list(rows) == [p.name.removesuffix(".vmcore") for p in paths.values()]   # the order given
    assert rows["junk"]["ok"] is False and "not a kernel dump" in rows["junk"]["error"]
    assert "\n" not in rows["junk"]["error"]
    assert res["errors"] == [rows["junk"]]
    l1, l5 = rows["lab1"], rows["lab5"]
    assert l1["title"] == "Oops: NULL pointer dereference in lab1_attach_console [lab1_null]"
    assert l5["kind"] == "deadlock" and l5["title"].startswith("deadlock: mutex cycle of 2 tasks in lab5_")
    assert rows["sysrq-loop"]["title"] == rows["sysrq-elf"]["title"] == "sysrq triggered crash"
    # facts
    for x in (l1, l5, rows["sysrq-loop"]):
        assert x["release"] == release and x["vmlinux"] == str(next(vdir.glob("vmlinux-6*")))
        assert x["time_source"] == "kernel clock"
    assert l1["panic_task"]["comm"] == "insmod" and l1["taint"] == "OE" and "lab1_null" in l1["modules"]
    assert l1["analyze"]["trap"]["trap"] == "die" and l1["analyze"]["explanation"]["summary"]
    assert rows["sysrq-loop"]["taint"] == "" and rows["sysrq-loop"]["panic_task"]["comm"] == "sh"
    assert l5["deadlock"]["cycles"] and l5["deadlock_dot"].startswith("digraph")
    # buckets: the two sysrq dumps are one
    bs = {b["signature"]: b for b in res["buckets"]}
    assert len(bs) == 3
    sb = bs[rows["sysrq-elf"]["signature"]]
    assert sb["count"] == 2 and set(sb["dumps"]) == {str(paths["sysrq-loop"]), str(paths["sysrq-elf"])}
    assert res["buckets"][0] is not None and res["buckets"][0]["count"] == 2
    # the HTML report: tables and the deadlock graph as inline SVG
    page = html.read_text()
    for tid in ("buckets", "dumps", "errors"):
        assert f'<table id="{tid}">' in page
    assert page.count("<svg") == 1 and "lab5_" in page
    # the text form
    r = gdbkd("triage", *map(str, paths.values()), "--vmlinux-dir", str(vdir), "-j", "1")
    assert r.returncode == 3
    assert r.stdout.splitlines()[0] == "3 buckets, 4 dumps triaged, 1 error"
    assert "sysrq triggered crash" in r.stdout and "ERRORS:" in r.stdout


def test_triage_bad_input_one_line(fleet, tmp_path):
    paths, vdir, vml, release = fleet
    # a vmlinux of another program: every dump's row says so, the batch completes
    r = gdbkd("triage", str(paths["lab1"]), str(paths["junk"]), "--vmlinux", str(vdir / "vmlinux-not-a-kernel"),
              "--json")
    assert r.returncode == 3 and "Traceback" not in r.stderr
    rows = json.loads(r.stdout)["dumps"]
    assert "is not this dump's kernel" in rows[0]["error"] and not rows[1]["ok"]
    # a directory without the dump's kernel: the dump finds it by build-id in gdbkd's cache
    empty = tmp_path / "none"
    empty.mkdir()
    r = gdbkd("triage", str(paths["lab1"]), "--vmlinux-dir", str(empty), "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    row = json.loads(r.stdout)["dumps"][0]
    assert row["ok"] and os.path.realpath(row["vmlinux"]) == vml
    assert row["vmlinux_source"].startswith("build-id ") and "gdbkd's cache" in row["vmlinux_source"]
    # no vmlinux option at all: the same
    r = gdbkd("triage", str(paths["lab1"]), "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    assert os.path.realpath(json.loads(r.stdout)["dumps"][0]["vmlinux"]) == vml
    # a dump of a kernel no file here built: one line naming its build-id and release
    from test_find_vmlinux import _with_other_build_id
    other = tmp_path / "other.vmcore"
    bid = _with_other_build_id(paths["lab1"], other)
    r = gdbkd("triage", str(other), "--vmlinux-dir", str(empty), "--json")
    assert r.returncode == 3
    err = json.loads(r.stdout)["dumps"][0]["error"]
    assert err.startswith(f"no vmlinux for {release} with build-id {bid[:12]}") and str(empty) in err
    for args, want in [((str(paths["lab1"]), "--vmlinux", str(vml), "--vmlinux-dir", str(vdir)),
                        "give at most one of --vmlinux"),
                       ((str(paths["lab1"]), "--vmlinux-dir", str(tmp_path / "nope")), "is not a directory"),
                       ((str(paths["lab1"]), "--vmlinux", str(vml), "--dask", "tcp://127.0.0.1:1", "-j", "2"),
                        "--jobs is for local runs"),
                       ((str(paths["lab1"]), "--vmlinux", str(vml), "-j", "0"), "--jobs")]:
        r = gdbkd("triage", *args)
        assert r.returncode == 2 and want in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)
    # a missing dump is an error row, not a failed batch
    r = gdbkd("triage", str(tmp_path / "missing.vmcore"), str(paths["lab1"]), "--vmlinux", str(vml))
    assert r.returncode == 3 and "missing.vmcore: no such readable file" in r.stdout
    assert "1 bucket, 1 dump triaged, 1 error" in r.stdout
