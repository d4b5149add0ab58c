"""gdbkd as a pip user gets it: the wheel (`python -m build`) and an editable install, each
in a fresh venv outside the checkout, run from another directory with no GDBKD_*
variables. gdb's Python finds the installed gdbkd and its dependencies through the boot
command (gdbkd/gdbpython.py), in the gdbs gdbkd starts and in a plain gdb-multiarch given
`gdbkd gdbinit`'s line."""

import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import ROOT

pytestmark = pytest.mark.e2e


def _venv(path: Path, *install):
    """A fresh venv of gdb-multiarch's Python (Debian's python3) with INSTALL pip-installed."""
    subprocess.run(["/usr/bin/python3", "-m", "venv", str(path)], check=True, capture_output=True)
    r = subprocess.run([str(path / "bin" / "pip"), "install", "-q", *install],
                       capture_output=True, text=True, cwd=path, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    return path


def _user_env(venv: Path):
    """The environment of a user who activated VENV: no GDBKD_*, no PYTHONPATH, not the checkout's .venv."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("GDBKD_") and k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    path = [p for p in env.get("PATH", "/usr/bin:/bin").split(os.pathsep) if str(ROOT) not in p]
    env["PATH"] = os.pathsep.join([str(venv / "bin"), *path])
    env["VIRTUAL_ENV"] = str(venv)
    return env


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    r = subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    return next(out.glob("gdbkd-*.whl"))


def test_wheel_carries_what_a_user_needs(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "gdbkd/kd_bootstrap.py" in names and "gdbkd/gdbpython.py" in names
    assert "gdbkd/qemu/profiles_data/debian-6.1.toml" in names
    assert not [n for n in names if "testdumps" in n or n.startswith("tests/")]   # test machinery stays out
    for lab in range(1, 9):
        assert any(re.match(rf"gdbkd/labs/lab{lab}_\w+/lab.toml$", n) for n in names), lab
        assert any(re.match(rf"gdbkd/labs/lab{lab}_\w+/Kbuild$", n) for n in names), lab
    meta = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("/METADATA"))).decode()
    assert "Requires-Dist: capstone" in meta


def _user_session(venv: Path, cwd: Path, expect_package_dir: str):
    """What a user does after `pip install`: run, catch sysrq-c with a dump, open it with
    core, and load kd into a plain gdb-multiarch with gdbkd gdbinit's line."""
    env = _user_env(venv)
    gdbkd = str(venv / "bin" / "gdbkd")

    def run(*args, timeout=600):
        return subprocess.run(args, capture_output=True, text=True, cwd=cwd, env=env,
                              stdin=subprocess.DEVNULL, timeout=timeout)

    r = run(gdbkd, "--version")
    assert r.returncode == 0 and r.stdout.startswith("gdbkd 0."), r.stdout + r.stderr
    r = run(gdbkd, "fetch", "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    vmlinux = json.loads(r.stdout)["vmlinux"]

    dump = cwd / "vmcore"
    r = run(gdbkd, "run", "--batch", "--json", "--exec", "echo c > /proc/sysrq-trigger",
            "--dump-on-crash", "vmcore")
    assert r.returncode == 0, r.stderr[-3000:]
    live = json.loads(r.stdout.strip().splitlines()[-1])
    assert "sysrq_handle_crash" in json.dumps(live["report"]), r.stdout[-3000:]
    assert live["dump"] == str(dump) and dump.stat().st_size > 0

    r = run(gdbkd, "core", "vmcore", vmlinux, "--batch", "-ex", "kd bt")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "sysrq_handle_crash" in r.stdout and "cannot load" not in r.stdout + r.stderr, r.stdout[-3000:]
    offset = re.search(r"KASLR offset: (0x[0-9a-f]+)", r.stdout).group(1)

    r = run(gdbkd, "gdbinit")
    assert r.returncode == 0, r.stderr
    line = r.stdout.strip()
    assert len(line.splitlines()) == 1 and line.startswith("python ")
    assert repr(expect_package_dir) in line and str(venv) in line, line
    (cwd / "kd.gdb").write_text(line + "\n")
    r = run("gdb-multiarch", "-nx", "-batch", "-x", "kd.gdb", vmlinux,
            "-ex", f"target remote | {gdbkd} stub vmcore {vmlinux}",
            "-ex", f"kd symbols --offset {offset}", "-ex", "kd bt")
    assert "sysrq_handle_crash" in r.stdout, (r.stdout + r.stderr)[-3000:]
    assert "cannot load" not in r.stdout + r.stderr


def test_wheel_in_a_fresh_venv(wheel, tmp_path, kernel61, no_leftover_qemu):
    venv = _venv(tmp_path / "venv", str(wheel))
    site = subprocess.run([str(venv / "bin" / "python"), "-c", "import gdbkd, os; print(os.path.dirname(os.path.dirname(gdbkd.__file__)))"],
                          capture_output=True, text=True, cwd=tmp_path).stdout.strip()
    assert site.startswith(str(venv)), site          # the installed copy, not the checkout
    work = tmp_path / "elsewhere"
    work.mkdir()
    _user_session(venv, work, site)


def test_editable_install_in_a_fresh_venv(tmp_path, kernel61, no_leftover_qemu):
    venv = _venv(tmp_path / "venv", "-e", str(ROOT))
    assert not (venv / "gdbkd-site-packages").exists()
    work = tmp_path / "elsewhere"
    work.mkdir()
    _user_session(venv, work, str(ROOT))
