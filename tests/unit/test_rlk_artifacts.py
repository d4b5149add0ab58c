"""The rlk-5.0 profile's kernel and root, on the course's real prebuilt files.

Where the kernel comes from (the user's paths, one variable naming the course
tree, the prebuilt directory beside the repo) and gdbkd's own ext4 root (read
back with debugfs). Needs ``../shared/kernels/rlk-5.0``; no QEMU.
"""

import os
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT

PREBUILT = ROOT.parent / "shared" / "kernels" / "rlk-5.0"
pytestmark = pytest.mark.skipif(not (PREBUILT / "SHA256SUMS").is_file(),
                                reason=f"the course's prebuilt 5.0 kernel is not at {PREBUILT}")


@pytest.fixture
def no_rlk_vars(monkeypatch):
    for k in list(os.environ):
        if k.startswith("RLK_"):
            monkeypatch.delenv(k)
    return monkeypatch


def _profile():
    from gdbkd.qemu.profiles import load_profile
    return load_profile("rlk-5.0")


def _kernel():
    from gdbkd.artifacts.kernel import ensure_kernel
    return ensure_kernel(_profile())


def test_prebuilt_unpacked_into_the_cache_matches_its_sums(no_rlk_vars):
    from gdbkd.artifacts.prebuilt import read_sums
    from gdbkd.cache import cache_root
    import hashlib
    k = _kernel()
    sums = read_sums(PREBUILT)
    assert Path(k.image).is_relative_to(cache_root())
    assert hashlib.sha256(Path(k.image).read_bytes()).hexdigest() == sums["arch/arm64/boot/Image"]
    assert (Path(k.kdir) / "Module.symvers").is_file()
    assert (Path(k.modules_dir) / "modules.order").is_file()
    assert _kernel() == k                                  # the second call unpacks nothing


def test_one_variable_naming_the_course_tree(no_rlk_vars, tmp_path):
    k0 = _kernel()
    (tmp_path / "arch/arm64/boot").mkdir(parents=True)
    (tmp_path / "arch/arm64/boot/Image").symlink_to(k0.image)
    (tmp_path / "vmlinux").symlink_to(k0.vmlinux)
    (tmp_path / "include/config").mkdir(parents=True)
    (tmp_path / "include/config/kernel.release").write_text("5.0.0-rlk+\n")
    no_rlk_vars.setenv("RLK_TREE", str(tmp_path))
    k = _kernel()
    assert (k.image, k.vmlinux, k.kdir) == (str(tmp_path / "arch/arm64/boot/Image"),
                                            str(tmp_path / "vmlinux"), str(tmp_path))
    assert k.release == "5.0.0-rlk+"


def test_user_paths_win_and_a_missing_one_is_named(no_rlk_vars):
    from gdbkd.errors import GdbkdError
    k0 = _kernel()
    no_rlk_vars.setenv("RLK_IMAGE", k0.image)
    with pytest.raises(GdbkdError, match=r"needs \$RLK_VMLINUX"):
        _kernel()
    no_rlk_vars.setenv("RLK_VMLINUX", k0.vmlinux)
    k = _kernel()
    assert (k.image, k.vmlinux, k.kdir) == (k0.image, k0.vmlinux, "")
    no_rlk_vars.setenv("RLK_VMLINUX", "/nonexistent/vmlinux")
    with pytest.raises(GdbkdError, match="vmlinux /nonexistent/vmlinux does not exist"):
        _kernel()


def _debugfs_cat(image, path):
    r = subprocess.run(["/usr/sbin/debugfs", "-R", f"cat {path}", str(image)],
                       capture_output=True)
    return r.stdout


def test_own_root_has_the_initramfs_init_and_the_runs_files(no_rlk_vars, tmp_path):
    from gdbkd.artifacts.rootfs import guest_root
    from gdbkd.artifacts.initramfs import INIT_SCRIPT, READY_MARKER
    k = _kernel()
    payload = os.urandom(3000)
    args, ready = guest_root(_profile(), k, {"lib/modules/gdbkd/x.ko": payload}, "echo hi\n", tmp_path)
    assert ready == READY_MARKER
    image = Path(args[args.index("-drive") + 1].split("file=")[1].split(",")[0])
    assert image.parent == tmp_path
    assert _debugfs_cat(image, "/sbin/init") == INIT_SCRIPT.encode()
    assert _debugfs_cat(image, "/lib/modules/gdbkd/x.ko") == payload
    assert _debugfs_cat(image, "/etc/gdbkd.rc") == b"echo hi\n"
    r = subprocess.run(["/usr/sbin/debugfs", "-R", "stat /dev/console", str(image)],
                       capture_output=True, text=True)
    assert "Type: character special" in r.stdout and "Device major/minor number: 05:01" in r.stdout


def test_course_rootfs_is_booted_as_given(no_rlk_vars, tmp_path):
    from gdbkd.artifacts.rootfs import guest_root
    from gdbkd.errors import GdbkdError
    own = tmp_path / "rootfs.ext4"
    own.write_bytes(b"\0" * 4096)
    no_rlk_vars.setenv("RLK_ROOTFS", str(own))
    args, ready = guest_root(_profile(), _kernel(), {}, "", tmp_path)
    assert f"file={own}," in args[args.index("-drive") + 1] and ready == "login:"
    with pytest.raises(GdbkdError, match="gdbkd's own root only"):
        guest_root(_profile(), _kernel(), {"x": b"1"}, "", tmp_path)
