"""gdbkd triage over the whole fleet of real dumps: locally, on a real Dask cluster, and its
HTML report in a real browser (slow tier: 10 QEMU boots when the dumps are not cached, then
~1 min).

The fleet (tests/triage_dumps.py): sysrq-c twice (gdbkd run's dump at the panic breakpoint, and
the test dump taken while panic() spins: another boot), labs 1, 2, 3, 4, 6, 8 (oopses: NULL
dereferences, LIST_POISON, a smashed pointer), labs 5 and 7 (an ABBA mutex deadlock and a
mutex/rwsem/semaphore cycle), lab 1 again in a separate boot (another KASLR offset), and a junk
file. Expected titles come from each lab's own lab.toml (its faulting function, module and
fault address).

The browser check needs Debian's ``chromium`` (``apt-get install chromium``; not installed by
install.sh because this tier does not run in CI).
"""

import json
import shutil
import subprocess
import zlib
from pathlib import Path

import pytest

from conftest import gdbkd

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    from triage_dumps import fleet_dir, vmlinux_dir
    d = tmp_path_factory.mktemp("fleet")
    return fleet_dir(d), vmlinux_dir(d)


def _argv(fleet):
    paths, vdir = fleet
    return [*map(str, paths.values()), "--vmlinux-dir", str(vdir), "--json"]


@pytest.fixture(scope="module")
def local(fleet, tmp_path_factory):
    html = tmp_path_factory.mktemp("html") / "report.html"
    r = gdbkd("triage", *_argv(fleet), "-j", "2", "--html", str(html), timeout=1200)
    assert r.returncode == 3, r.stderr[-2000:]
    return r.stdout, html


def _rows(res):
    return {Path(x["dump"]).name.removesuffix(".vmcore"): x for x in res["dumps"]}


def _expected_title(lab):
    va = int(lab.fault_address, 0)
    if va == 0xdead000000000100:
        what = "list corruption: LIST_POISON1"
    elif va < 4096:
        what = "Oops: NULL pointer dereference"
    else:
        what = "Oops: paging request"
    return f"{what} in {lab.fault_function} [{lab.module}]"


def test_fleet_titles_and_signatures(local):
    from gdbkd.labs import get_lab
    res = json.loads(local[0])
    rows = _rows(res)
    assert not rows["junk"]["ok"] and [e["dump"] for e in res["errors"]] == [rows["junk"]["dump"]]
    for n in (1, 2, 3, 4, 6, 8):
        assert rows[f"lab{n}"]["title"] == _expected_title(get_lab(n)), rows[f"lab{n}"]
    for n, shape in ((5, "mutex cycle of 2 tasks"), (7, "mutex/rwsem/semaphore cycle of 3 tasks")):
        lab = get_lab(n)
        t = rows[f"lab{n}"]["title"]
        assert t.startswith(f"deadlock: {shape} in lab{n}_") and t.endswith(f"[{lab.module}]"), t
        comms = {rows[f"lab{n}"]["deadlock"]["tasks"][a]["comm"]
                 for a in rows[f"lab{n}"]["deadlock"]["cycles"][0]["tasks"]}
        assert comms == set(lab.hang_comms)
    assert rows["sysrq"]["title"] == rows["sysrq-loop"]["title"] == "sysrq triggered crash"
    # same crash, separate boots: one signature although KASLR moved every address
    a, b = rows["lab1"], rows["lab1-boot2"]
    assert a["analyze"]["trap"]["fault_pc"] != b["analyze"]["trap"]["fault_pc"]
    assert a["signature"] == b["signature"] and a["title"] == b["title"]
    assert rows["sysrq"]["signature"] == rows["sysrq-loop"]["signature"]
    assert rows["sysrq"]["analyze"]["backtrace"][0]["function"] != rows["sysrq-loop"]["analyze"]["backtrace"][0]["function"]
    # different crashes: different signatures (the two deadlocks too)
    sigs = {n: r["signature"] for n, r in rows.items() if r["ok"]}
    assert len(set(sigs.values())) == len(sigs) - 2
    bs = res["buckets"]
    assert [b["count"] for b in bs] == [2, 2] + [1] * 7
    for b in bs:
        assert b["first"] <= b["last"] and b["title"] == rows[Path(b["dumps"][0]).name.removesuffix(".vmcore")]["title"]


@pytest.fixture
def dask_cluster(tmp_path):
    """A real `dask scheduler` and 2 `dask worker` processes on 127.0.0.1 (one thread each)."""
    from triage_dumps import dask_cluster
    with dask_cluster(tmp_path, 2) as addr:
        yield addr


def test_fleet_on_dask_equals_local(fleet, local, dask_cluster):
    r = gdbkd("triage", *_argv(fleet), "--dask", dask_cluster, timeout=1200)
    assert r.returncode == 3, r.stderr[-2000:]
    assert json.loads(r.stdout) == json.loads(local[0])
    # both workers ran triage tasks (each worker's own state-machine log names the task keys)
    from distributed import Client
    with Client(dask_cluster, timeout=30) as c:
        ran = c.run(lambda dask_worker: len({e[0] for e in dask_worker.state.log
                                             if str(e[0]).startswith("gdbkd-triage-")}))
    assert len(ran) == 2 and all(n > 0 for n in ran.values()) and sum(ran.values()) >= 11, ran


def _png_pixels_vary(png: bytes) -> bool:
    """Whether a PNG's decompressed scanlines hold more than one byte value (not a blank page)."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    i, idat = 8, b""
    while i < len(png):
        n = int.from_bytes(png[i:i + 4], "big")
        if png[i + 4:i + 8] == b"IDAT":
            idat += png[i + 8:i + 8 + n]
        i += 12 + n
    raw = zlib.decompress(idat)
    return len(set(raw[:2_000_000])) > 8


def test_html_report_in_headless_chromium(local, tmp_path):
    chromium = shutil.which("chromium")
    assert chromium, "the browser check needs Debian's chromium: apt-get install chromium"
    html = local[1]
    base = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--user-data-dir=" + str(tmp_path / "profile")]
    shot = tmp_path / "report.png"
    r = subprocess.run(base + [f"--screenshot={shot}", "--window-size=1400,2400", html.as_uri()],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and shot.is_file(), r.stderr[-2000:]
    png = shot.read_bytes()
    assert len(png) > 10_000 and _png_pixels_vary(png)
    # the DOM the browser built: the tables with one row per bucket / dump, the graphs as SVG
    r = subprocess.run(base + ["--dump-dom", html.as_uri()], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    dom = r.stdout
    res = json.loads(local[0])
    for tid, rows in (("buckets", len(res["buckets"])), ("dumps", len(res["dumps"])), ("errors", 1)):
        body = dom.split(f'<table id="{tid}">', 1)[1].split("</table>", 1)[0]
        assert body.count("<tr") == rows + 1, tid          # + the header row
    assert dom.count("<svg") == 2 and "lab7_" in dom
