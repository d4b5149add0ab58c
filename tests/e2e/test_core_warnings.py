"""`gdbkd core` says what is wrong instead of staying silent (issue 14): a dump whose
VMCOREINFO disagrees with the vmlinux opens with a warning naming the value; a
backtrace cut short by an unreadable stack page is marked in kd bt and kd analyze."""

import json
import types

import pytest

from conftest import gdbkd
from hostile import patched_copy, unreadable_task_copy

pytestmark = pytest.mark.e2e


def _dumps():
    from testdumps import ensure_test_dumps, ensure_makedumpfile_dumps
    td = ensure_test_dumps()
    return td, ensure_makedumpfile_dumps(td)


def test_open_warns_when_kerneloffset_misses_the_image(tmp_path):
    td, mdf = _dumps()
    src = mdf["mdf-zlib-d31.kdump"]
    r = gdbkd("core", str(src), str(td.vmlinux), "-s", "--batch")
    assert r.returncode == 0 and "warning" not in r.stderr, r.stderr[-2000:]
    data = open(src, "rb").read()
    at = data.find(b"KERNELOFFSET=")
    real = data[at:data.index(b"\n", at)]
    off = int(real.split(b"=")[1], 16)
    new = b"KERNELOFFSET=%x" % (off + 0x200000)
    offs, i = [], at
    while i >= 0:
        offs.append(i)
        i = data.find(real, i + 1)
    bad = patched_copy(src, tmp_path / "koff.kdump", [(o, new) for o in offs])
    r = gdbkd("core", str(bad), str(td.vmlinux), "-s", "--batch")
    warn = [l for l in r.stderr.splitlines() if l.startswith("gdbkd core: warning: KERNELOFFSET: ")]
    assert warn, r.stderr[-2000:]
    assert f"{off + 0x200000:#x} disagrees" in warn[0] and f"the banner is at offset {off:#x}" in warn[0]
    assert "Traceback" not in r.stderr


def _bt_json(stdout):
    return next(json.loads(l) for l in stdout.splitlines() if l.startswith('[{') and '"frames": ' in l)


def test_backtrace_cut_by_a_corrupt_stack_page_is_marked(tmp_path):
    td, mdf = _dumps()
    src = mdf["mdf-zlib-d31.kdump"]
    r = gdbkd("core", str(src), str(td.vmlinux), "--batch", "-ex", "kd bt --json")
    assert r.returncode == 0, r.stderr[-2000:]
    whole = _bt_json(r.stdout)[0]
    assert "cut short" not in (whole["stop"] or "") and len(whole["frames"]) > 10
    assert "cut short" not in r.stdout

    bad = tmp_path / "stack.kdump"      # the page of the crashed CPU's first frame record
    fp = unreadable_task_copy(src, bad, td.vmlinux,
                              lambda d: types.SimpleNamespace(addr=d.crashed_thread.regs[29]))
    r = gdbkd("core", str(bad), str(td.vmlinux), "--batch", "-ex", "kd bt --json")
    assert r.returncode == 0, r.stderr[-2000:]
    cut = _bt_json(r.stdout)[0]
    assert cut["pid"] == whole["pid"] and len(cut["frames"]) < len(whole["frames"])
    assert cut["stop"].startswith(f"backtrace cut short: frame record at {fp:#x}: ")
    assert "corrupt page descriptor" in cut["stop"]
    report = r.stdout.split("BACKTRACE:", 1)[1].split("LOG (last lines):", 1)[0]
    assert f"    (backtrace cut short: frame record at {fp:#x}: " in report, r.stdout[-3000:]
    assert "Traceback" not in r.stdout + r.stderr and "Python Exception" not in r.stderr
