"""The kernel cache keeps working when Debian moves: `gdbkd fetch --list` shows what the
cache holds, and a pinned ABI that the cache holds is used without asking the archive.

The cache here is a temporary GDBKD_CACHE whose kernels/ holds the real kernel the test
run fetched (a link to its unpacked directory); its release and build-id are read from
that kernel, never written down.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

pytestmark = pytest.mark.unit


def _gdbkd(env, *args):
    return subprocess.run([sys.executable, "-m", "gdbkd", *args], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=300, stdin=subprocess.DEVNULL)


@pytest.fixture
def one_kernel_cache(kernel61, tmp_path):
    cache = tmp_path / "cache"
    (cache / "kernels").mkdir(parents=True)
    real = Path(kernel61.vmlinux).parent
    (cache / "kernels" / real.name).symlink_to(real)
    env = dict(os.environ, GDBKD_CACHE=str(cache))
    env.pop("GDBKD_ABI", None)
    return cache, env


def test_fetch_list_shows_release_and_build_id(kernel61, one_kernel_cache):
    from gdbkd.target.offsets import vmlinux_build_id
    cache, env = one_kernel_cache
    r = _gdbkd(env, "fetch", "--list", "--json")
    assert r.returncode == 0, r.stderr
    ks = json.loads(r.stdout)
    assert [(k["release"], k["build_id"]) for k in ks] == [(kernel61.release, vmlinux_build_id(kernel61.vmlinux))]
    r = _gdbkd(env, "fetch", "--list")
    assert kernel61.release in r.stdout and ks[0]["build_id"] in r.stdout


def test_pinned_abi_in_the_cache_needs_no_archive(kernel61, one_kernel_cache):
    cache, env = one_kernel_cache
    abi = kernel61.release.removesuffix("-cloud-arm64")
    env["GDBKD_ABI"] = f"debian-6.1={abi}"
    code = ("import json; from gdbkd.qemu.profiles import load_profile; "
            "from gdbkd.artifacts.kernel import ensure_kernel; "
            "print(json.dumps(ensure_kernel(load_profile('debian-6.1')).to_json()))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                       env=env, timeout=300, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert got["release"] == kernel61.release
    assert os.path.realpath(got["vmlinux"]) == os.path.realpath(kernel61.vmlinux)
    assert not (cache / "apt").exists()          # the archive was never asked


def test_pin_outside_the_series_is_refused(one_kernel_cache):
    cache, env = one_kernel_cache
    env["GDBKD_ABI"] = "debian-6.1=5.10.0-1"
    r = _gdbkd(env, "fetch")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == ["gdbkd: profile debian-6.1: ABI '5.10.0-1' is not of its series "
                                              "(abi_regex 6\\.1\\.0-\\d+)"]
