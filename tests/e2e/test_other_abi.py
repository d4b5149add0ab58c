"""The default tier's kernel-dependent checks hold on another day's kernel, unedited.

Debian replaces the 6.1 ABI on its mirrors every few weeks. This runs a set of the
default tier's tests that depend on the kernel (its release in triage rows, the dump's
byte layout, vmlinux lookup by build-id, the crash report) in a fresh, empty cache whose
debian-6.1 profile is pinned (GDBKD_ABI) to an ABI other than the one the main cache
holds: whatever older ABI Debian's archive still serves today. Nothing in those tests
names an ABI; they read it from what the run fetched and made.
"""

import os
import subprocess
import sys

import pytest

from conftest import ROOT

pytestmark = pytest.mark.slow

CHECKS = ["tests/e2e/test_find_vmlinux.py",
          "tests/e2e/test_triage.py",
          "tests/unit/test_hostile_dumps.py::test_elf_segment_lies",
          "tests/unit/test_kernel_cache.py",
          "tests/e2e/test_core_cli.py::test_core_bad_input"]


def _other_abis(current_release):
    from gdbkd.qemu.profiles import load_profile
    from gdbkd.artifacts.apt import Apt
    from gdbkd.artifacts.kernel import _debian_candidates
    kcfg = load_profile("debian-6.1").kernel
    apt = Apt(kcfg["suites"])
    apt.update()
    for rel, _ in _debian_candidates(apt, kcfg):
        if rel != current_release:
            yield rel.removesuffix("-" + kcfg.get("flavour", "cloud-arm64"))


def test_default_checks_on_another_abi(kernel61, tmp_path):
    env = dict(os.environ, GDBKD_CACHE=str(tmp_path / "cache"))
    env.pop("GDBKD_REFRESH", None)
    chosen = None
    for abi in list(_other_abis(kernel61.release))[:4]:
        env["GDBKD_ABI"] = f"debian-6.1={abi}"
        r = subprocess.run([sys.executable, "-m", "gdbkd", "fetch", "--json"], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=1800, stdin=subprocess.DEVNULL)
        if r.returncode == 0:
            chosen = abi
            break
    if chosen is None:
        pytest.skip("Debian's archive serves no other 6.1 ABI today")
    assert chosen not in kernel61.release
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *CHECKS],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stdout[-4000:]
    assert " passed" in r.stdout.splitlines()[-1] and "skipped" not in r.stdout.splitlines()[-1]
