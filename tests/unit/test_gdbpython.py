"""gdb's embedded Python and gdbkd's packages (gdbkd/gdbpython.py, gdbkd/kd_bootstrap.py),
with a real gdb-multiarch.

There is one Python on this machine (3.11, gdb's own), so the version mismatch is made at
the gdb boundary with real packages of another Python: zstandard's CPython 3.12 wheel
(compiled extension modules gdb's 3.11 cannot load), pip-installed into a directory that
plays the site-packages of a 3.12 venv."""

import os
import subprocess
import sys

import pytest

from conftest import GDBKD, ROOT
from gdbkd import gdbpython
from gdbkd.errors import KD_LOAD_FAILURE as FAIL


@pytest.fixture(scope="module")
def py312_site(tmp_path_factory):
    d = tmp_path_factory.mktemp("py312-site")
    r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--target", str(d),
                        "--python-version", "3.12", "--only-binary=:all:", "--no-deps", "zstandard"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert list((d / "zstandard").glob("*cpython-312*.so"))
    return d


def test_boot_command_names_this_install():
    cmd = gdbpython.boot_command()
    assert cmd.startswith("python ") and "\n" not in cmd
    assert repr(str(ROOT)) in cmd                      # the package's directory (an editable checkout here)
    site = [p for p in sys.path if p.endswith("site-packages")][0]
    assert os.path.realpath(site) in cmd
    assert os.path.realpath(os.path.dirname(os.__file__)) not in gdbpython.dependency_path()


def test_plain_gdb_loads_kd_with_the_gdbinit_line(tmp_path):
    r = subprocess.run([*GDBKD, "gdbinit"], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    line = r.stdout.strip()
    site = os.path.realpath([p for p in sys.path if p.endswith("site-packages")][0])
    assert repr(str(ROOT)) in line and repr(site) in line and str(tmp_path) not in line, line
    (tmp_path / "kd.gdb").write_text(r.stdout)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GDBKD_")}
    g = subprocess.run(["gdb-multiarch", "-nx", "-batch", "-x", "kd.gdb", "-ex", "help kd"],
                       capture_output=True, text=True, cwd=tmp_path, env=env)
    assert "kd bt" in g.stdout and FAIL not in g.stdout, g.stdout + g.stderr


def test_version_mismatch_is_one_line_naming_both_versions(py312_site):
    cmd = gdbpython.boot_command(installed_for="3.12", deps=[str(py312_site), *gdbpython.dependency_path()])
    err = gdbpython.check(use_cache=False, command=cmd)
    gdb_py = "%d.%d" % sys.version_info[:2]        # install.sh makes the venv with gdb's Python
    assert err and "\n" not in err and err.startswith(FAIL), err
    assert f"gdb's Python is {gdb_py}" in err and "installed for Python 3.12" in err, err
    assert "zstandard" in err and f"python{gdb_py} -m venv" in err, err


def _env_with(site):
    return dict(os.environ, PYTHONPATH=str(site))


def test_gdbkd_stops_before_booting_when_gdb_cannot_load_it(py312_site, tmp_path, no_leftover_qemu):
    """The 3.12 zstandard first on gdbkd's path: gdbkd run stops with one line and boots nothing."""
    r = subprocess.run([*GDBKD, "run", "--batch", "--exec", "echo c > /proc/sysrq-trigger"],
                       capture_output=True, text=True, cwd=ROOT, env=_env_with(py312_site),
                       stdin=subprocess.DEVNULL, timeout=300)
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"gdbkd: {FAIL}") and "zstandard" in lines[0], r.stderr
    assert "booting" not in r.stderr and r.stdout == ""


def test_doctor_reports_it(py312_site):
    r = subprocess.run([*GDBKD, "doctor"], capture_output=True, text=True, env=_env_with(py312_site))
    assert r.returncode == 1
    line = next(l for l in r.stdout.splitlines() if "gdb python loads kd" in l)
    assert line.startswith("MISSING") and "zstandard" in line, r.stdout
    r = subprocess.run([*GDBKD, "doctor"], capture_output=True, text=True)
    line = next(l for l in r.stdout.splitlines() if "gdb python loads kd" in l)
    assert line.startswith("ok"), r.stdout
