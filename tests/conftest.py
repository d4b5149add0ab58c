import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GDBKD = [sys.executable, "-m", "gdbkd"]


def pytest_collection_modifyitems(config, items):
    for item in items:
        p = str(item.fspath)
        if "/e2e/" in p and not any(m.name in ("e2e", "slow") for m in item.iter_markers()):
            item.add_marker(pytest.mark.e2e)
        if "/unit/" in p and not any(m.name in ("e2e", "slow", "unit") for m in item.iter_markers()):
            item.add_marker(pytest.mark.unit)
        if "/model/" in p and not any(m.name == "model" for m in item.iter_markers()):
            item.add_marker(pytest.mark.model)


def pids_where(match):
    """Pids of the processes whose command line (NUL-separated bytes) satisfies MATCH."""
    out = set()
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes()
            except OSError:
                continue
            if match(cmd):
                out.add(int(d.name))
    return out


def qemu_pids():
    return pids_where(lambda cmd: cmd.startswith(b"qemu-system-aarch64") and b"gdbkd-run-" in cmd)


def gdbkd(*args, timeout=300, input=None):
    """Run the gdbkd CLI as a user would; returns CompletedProcess (text)."""
    return subprocess.run([*GDBKD, *args], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT, input=input, stdin=None if input is not None else subprocess.DEVNULL)


def on_pty(argv, cwd=ROOT):
    """Run ARGV with stdin/stdout/stderr on a new pty (a terminal, as a user's);
    returns (exit status, everything it wrote)."""
    import os
    import pty
    pid, fd = pty.fork()
    if pid == 0:
        os.chdir(cwd)
        os.execv(argv[0], argv)
    out = []
    while True:
        try:
            d = os.read(fd, 65536)
        except OSError:           # EIO: the child closed the pty
            break
        if not d:
            break
        out.append(d)
    _, st = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(st), b"".join(out).decode("utf-8", "replace")


@pytest.fixture(scope="session")
def kernel61():
    from gdbkd.qemu.profiles import load_profile
    from gdbkd.artifacts.kernel import ensure_kernel
    return ensure_kernel(load_profile("debian-6.1"))


def _orphaned(pid):
    """A gdbkd QEMU whose parent is gone (reparented to init)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError):
        return False
    return ppid == 1 or not Path(f"/proc/{ppid}").exists()


@pytest.fixture
def no_leftover_qemu():
    """Fail if a QEMU started during the test outlives its gdbkd (QEMUs of other
    gdbkd processes running concurrently on the machine are not counted)."""
    before = qemu_pids()
    yield
    import time
    for _ in range(50):
        left = {p for p in qemu_pids() - before if _orphaned(p)}
        if not left:
            return
        time.sleep(0.1)
    pytest.fail(f"QEMU processes left running: {sorted(left)}")


_HEX = re.compile(r"0x[0-9a-f]+")


def json_ints(data):
    """kd --json data with every "0x…" string (an address: docs/commands.md "JSON
    convention") an int again, to compare with drgn's ints."""
    if isinstance(data, dict):
        return {k: json_ints(v) for k, v in data.items()}
    if isinstance(data, list):
        return [json_ints(v) for v in data]
    if isinstance(data, str) and _HEX.fullmatch(data):
        return int(data, 16)
    return data


def real_dumps():
    """(TestDumps, {makedumpfile variant: path}) of the 6.1 guest, made when not cached
    (a QEMU boot and makedumpfile runs, ~1 min once) so the tests over them never skip."""
    from testdumps import ensure_test_dumps, ensure_makedumpfile_dumps
    td = ensure_test_dumps()
    return td, ensure_makedumpfile_dumps(td)


@pytest.fixture(scope="module")
def td_dump():
    """The real test dump (tests/testdumps.py) opened with its vmlinux, for one module."""
    from gdbkd.target import open_dump
    td, _ = real_dumps()
    d = open_dump(td.elf, td.vmlinux)
    yield d
    d.close()


@pytest.fixture(scope="module")
def td_drgn():
    """drgn (the reference) on the real test dump with its vmlinux, for one module."""
    drgn = pytest.importorskip("drgn")
    td, _ = real_dumps()
    prog = drgn.Program()
    prog.set_core_dump(str(td.elf))
    prog.load_debug_info([str(td.vmlinux)])
    return prog


def module_dumps(module_globals):
    """An autouse module fixture setting the test module's TD and MDF to real_dumps():
    ``TD = MDF = None; _dumps = module_dumps(globals())``."""
    @pytest.fixture(autouse=True, scope="module")
    def _dumps():
        module_globals["TD"], module_globals["MDF"] = real_dumps()
    return _dumps
