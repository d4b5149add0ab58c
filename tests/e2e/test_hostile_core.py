"""`gdbkd core` on hostile command lines and files (issue 14): paths gdb must get
quoted, a vmlinux without DWARF, a dump whose crashed task is unreadable."""

import subprocess

import pytest

from conftest import gdbkd

pytestmark = pytest.mark.e2e

WEIRD = "d i r'x\"y\\z"


def _dumps():
    from testdumps import ensure_test_dumps, ensure_makedumpfile_dumps
    td = ensure_test_dumps()
    return td, ensure_makedumpfile_dumps(td)


def test_paths_with_spaces_and_quotes_reach_gdb(tmp_path):
    """A vmlinux and a dump under a directory named with a space, both quotes and a
    backslash: gdb loads the symbols (add-symbol-file, exec-file) and kd reads the dump."""
    td, _ = _dumps()
    d = tmp_path / WEIRD
    d.mkdir()
    (d / "vm linux'1").symlink_to(td.vmlinux)
    (d / "core \"1\"").symlink_to(td.elf)
    sleeper = td.meta["sleepers"]["busybox-sleeper"]
    r = gdbkd("core", str(d / "core \"1\""), str(d / "vm linux'1"), "-s", "--batch",
              "-ex", "info address init_task", "-ex", "info files", "-ex", "kd ps")
    assert r.returncode == 0, r.stderr[-2000:]
    assert 'Symbol "init_task" is static storage at address' in r.stdout, r.stdout[-2000:]
    assert "file type elf64-littleaarch64" in r.stdout         # exec-file opened it (gdb names the symlink's target)
    assert any(l.split()[:1] == [str(sleeper)] and "busybox-sleeper" in l
               for l in r.stdout.splitlines()), r.stdout[-3000:]
    assert "Traceback" not in r.stderr


def test_newline_in_path_is_one_line_error(tmp_path):
    td, _ = _dumps()
    (tmp_path / "vm\nlinux").symlink_to(td.vmlinux)
    r = gdbkd("core", str(td.elf), str(tmp_path / "vm\nlinux"), "-s", "--batch")
    assert r.returncode != 0 and "newline" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_vmlinux_without_dwarf_is_refused(tmp_path):
    """Same build-id, so the offsets come from the cache; gdb would have no types."""
    td, _ = _dumps()
    stripped = tmp_path / "vmlinux-stripped"
    subprocess.run(["aarch64-linux-gnu-objcopy", "--strip-debug", str(td.vmlinux), str(stripped)],
                   check=True)
    r = gdbkd("core", str(td.elf), str(stripped), "--batch")
    assert r.returncode != 0, r.stdout[-2000:]
    assert "has no debug info (no .debug_info section)" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr


def test_unreadable_crashed_task_page(tmp_path):
    """The crashed task's task_struct page unreadable: gdb still gets every thread, kd
    log still works, no live (KPTI) advice; the crashed CPU's thread has its registers."""
    from hostile import unreadable_task_copy
    td, mdf = _dumps()
    bad = tmp_path / "bad.kdump"
    unreadable_task_copy(mdf["mdf-zlib-d31.kdump"], bad, td.vmlinux, lambda d: d.crashed_thread.task)
    r = gdbkd("core", str(bad), str(td.vmlinux), "-s", "--batch", "-ex", "info threads",
              "-ex", "bt 3", "-ex", "kd log")
    out = r.stdout + r.stderr
    assert "Could not read registers" not in out and "hbreak schedule" not in out, out[-3000:]
    assert "warning: CPU" in r.stderr and "could not be read" in r.stderr, r.stderr[-2000:]
    assert "<unreadable>" in r.stdout and "sysrq: Trigger a crash" in r.stdout, r.stdout[-3000:]
    assert "Traceback" not in out


def test_failed_report_is_recorded(tmp_path):
    """The start-up script gdbkd core feeds gdb writes the report's failure to the status
    file (run_core then exits 3 under --batch); other commands' failures do not count."""
    from gdbkd.postmortem.session import _script, REPORT
    status = tmp_path / "status"
    status.write_text("")
    script = tmp_path / "init.py"
    script.write_text(_script(["no-such-command", "echo still running\\n", REPORT], str(status)))
    r = subprocess.run(["gdb-multiarch", "-nx", "-batch", "-ex", f"source {script}"],
                       capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert "still running" in r.stdout
    assert status.read_text() == 'Undefined command: "kd".  Try "help".'
