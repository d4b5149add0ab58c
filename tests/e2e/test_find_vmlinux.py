"""A dump finds its own vmlinux: `gdbkd core DUMP` and `gdbkd convert DUMP` with no VMLINUX
look it up by the dump's build-id (artifacts/debuginfo.py), say which file and why in one
line, and a dump whose vmlinux is nowhere gets one line naming the build-id, the release
and where it looked (exit 1).

Expectations come from the artifacts this run made: the release and build-id of the
fetched kernel and of the test dumps, never a literal.
"""

import json
import shutil

import pytest

from conftest import gdbkd

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def td():
    from testdumps import ensure_test_dumps
    return ensure_test_dumps()


def _ident(path):
    from gdbkd.target import open_dump
    d = open_dump(str(path))
    try:
        return d.osrelease, d.build_id
    finally:
        d.close()


def _chosen(stderr):
    lines = [l for l in stderr.splitlines() if l.startswith("gdbkd: vmlinux ")]
    assert len(lines) == 1, stderr[-2000:]
    return lines[0]


@pytest.mark.parametrize("which", ["elf", "kdump"])
def test_core_without_vmlinux_opens_the_test_dumps(td, kernel61, which):
    dump = td.elf if which == "elf" else td.kdump_flat
    release, bid = _ident(dump)
    assert release == kernel61.release and bid
    r = gdbkd("core", str(dump), "--batch", "-ex", "kd sys --json")
    assert r.returncode == 0, r.stderr[-2000:]
    line = _chosen(r.stderr)
    assert line.startswith(f"gdbkd: vmlinux {kernel61.vmlinux} (build-id {bid[:12]}")
    assert "gdbkd's cache" in line
    sysinfo = json.loads(next(l for l in r.stdout.splitlines() if l.startswith("{")))
    assert sysinfo["release"] == release


def test_vmlinux_dir_is_searched_first(td, kernel61, tmp_path):
    d = tmp_path / "syms" / "nested"
    d.mkdir(parents=True)
    (d / "my-kernel").symlink_to(kernel61.vmlinux)
    shutil.copy("/bin/ls", d.parent / "vmlinux-not-a-kernel")     # another ELF with a build-id
    r = gdbkd("core", str(td.kdump_flat), "--vmlinux-dir", str(d.parent), "--batch", "-ex", "kd ps --json")
    assert r.returncode == 0, r.stderr[-2000:]
    assert _chosen(r.stderr).startswith(f"gdbkd: vmlinux {d / 'my-kernel'} (build-id ")
    assert f"in {d.parent}" in _chosen(r.stderr)


def test_convert_without_vmlinux(td, kernel61, tmp_path):
    out = tmp_path / "core.elf"
    r = gdbkd("convert", str(td.kdump_flat), "-o", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    assert _chosen(r.stderr).startswith(f"gdbkd: vmlinux {kernel61.vmlinux} ")
    assert out.stat().st_size > 0


def _with_other_build_id(src, dst):
    """A copy of SRC whose VMCOREINFO BUILD-ID is changed (same length): a kernel that
    no file here built. Returns the new build-id. (The notes of ELF and kdump-compressed
    dumps sit in their first megabytes.)"""
    shutil.copyfile(src, dst)
    with open(dst, "r+b") as f:
        head = f.read(64 << 20)
        i = head.index(b"BUILD-ID=") + len(b"BUILD-ID=")
        old = head[i:head.index(b"\n", i)].decode()
        new = "".join("0123456789abcdef"[(int(c, 16) + 1) % 16] for c in old)
        f.seek(i)
        f.write(new.encode())
    return new


def test_vmlinux_nowhere_is_one_line(td, kernel61, tmp_path):
    bad = tmp_path / "other-kernel.kdump"
    bid = _with_other_build_id(td.kdump_flat, bad)
    release, got = _ident(bad)
    assert got == bid
    empty = tmp_path / "empty"
    empty.mkdir()
    r = gdbkd("core", str(bad), "--vmlinux-dir", str(empty), "--batch", "-ex", "kd ps")
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
    err = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(err) == 1, r.stderr
    msg = err[0]
    assert msg.startswith(f"gdbkd: no vmlinux for {release} with build-id {bid[:12]}")
    # where it looked: the directory given, the cache, Debian's paths and archive
    for where in (str(empty), "gdbkd's cache", f"/usr/lib/debug/boot/vmlinux-{release}",
                  f"/usr/lib/debug/lib/modules/{release}/vmlinux", "Debian's archive"):
        assert where in msg, msg
    # the cached kernel of that release is named as having another build-id
    assert kernel61.vmlinux in msg


def test_debian_debug_path(td, kernel61, tmp_path, monkeypatch):
    """The /usr/lib/debug layout of Debian's -dbg packages (pointed at a temporary root:
    the test does not write to /usr)."""
    from gdbkd.artifacts import debuginfo
    release, bid = _ident(td.kdump_flat)
    root = tmp_path / "usr/lib/debug/lib/modules" / release
    root.mkdir(parents=True)
    (root / "vmlinux").symlink_to(kernel61.vmlinux)
    monkeypatch.setenv("GDBKD_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(debuginfo, "DEBIAN_PATHS",
                        tuple(str(tmp_path) + p for p in debuginfo.DEBIAN_PATHS))
    found = debuginfo.find_vmlinux(release, bid, download=False)
    assert found.path == str(root / "vmlinux") and "Debian's debug path" in found.why
    with pytest.raises(Exception) as e:
        debuginfo.find_vmlinux(release, "f" * 40, download=False)
    assert "no vmlinux for" in str(e.value) and "gdbkd's cache (0 kernels)" in str(e.value)
