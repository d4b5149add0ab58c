"""Progress bars (gdbkd/progress.py) on the real long steps: drawn on a terminal (a pty),
one `gdbkd: …` line on a pipe, as before. Byte counts come from the real work: apt-get
writing a .deb, dpkg-deb's data stream, gdbkd convert's writes."""

import glob
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import GDBKD, ROOT, on_pty, real_dumps

BAR = "gdbkd: {label}  ["


def _py(code, tmp_path):
    script = tmp_path / "step.py"
    script.write_text(code)
    return [sys.executable, str(script)]


def test_convert_bar_on_a_terminal_only(tmp_path):
    td, _ = real_dumps()
    out = tmp_path / "core"
    rc, text = on_pty([*GDBKD, "convert", str(td.elf), str(td.vmlinux), "-o", str(out)])
    assert rc == 0, text[-2000:]
    assert BAR.format(label=f"writing {out}") in text and "100%" in text and "MiB/" in text, text[-2000:]
    out.unlink()
    r = subprocess.run([*GDBKD, "convert", str(td.elf), str(td.vmlinux), "-o", str(out)],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0 and "\r" not in r.stderr and "[" not in r.stderr, r.stderr
    assert r.stderr.startswith("gdbkd: wrote ") and len(r.stderr.splitlines()) == 1, r.stderr


def test_unpack_bar(tmp_path, kernel61):
    debs = sorted(glob.glob(str(Path.home() / ".cache/gdbkd/debs/linux-image-6.1.0-*-cloud-arm64-unsigned_*.deb")))
    if not debs:
        from gdbkd.cache import cache_root
        debs = sorted(glob.glob(str(cache_root() / "debs/linux-image-6.1.0-*-cloud-arm64-unsigned_*.deb")))
    code = (f"from pathlib import Path\nfrom gdbkd.artifacts.kernel import _extract\n"
            f"_extract(Path({debs[-1]!r}), Path({str(tmp_path / 'x')!r}), './boot/*', label='unpacking test')\n")
    rc, text = on_pty(_py(code, tmp_path))
    assert rc == 0 and BAR.format(label="unpacking test") in text and "100%" in text, text[-2000:]
    assert list((tmp_path / "x" / "boot").glob("vmlinuz-*"))
    r = subprocess.run(_py(code, tmp_path), capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0 and r.stderr == "gdbkd: unpacking test\n", r.stderr


def test_download_bar(tmp_path):
    """A small real package through Apt.download (the private apt state gdbkd's fetch uses)."""
    code = (f"from pathlib import Path\nfrom gdbkd.artifacts.apt import Apt\n"
            f"a = Apt(['bookworm'])\na.update()\nf = a.show('busybox-static:arm64')\n"
            f"print(a.download('busybox-static', 'arm64', f['Version'], Path({str(tmp_path / 'd')!r}), size=f['Size']))\n")
    rc, text = on_pty(_py(code, tmp_path))
    if rc != 0 and "cannot reach the Debian archive" in text:
        pytest.skip("no Debian archive reachable")
    assert rc == 0, text[-2000:]
    assert "gdbkd: downloading busybox-static " in text and "(arm64)  [" in text and "100%" in text, text[-2000:]
    assert "MiB/" in text and list((tmp_path / "d").glob("busybox-static_*_arm64.deb"))

