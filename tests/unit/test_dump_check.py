"""gdbkd/postmortem/check.py: the dump agrees with itself and with its vmlinux
(`gdbkd core --check`, the warnings of every `gdbkd core` open).

The real 6.1 test dumps (every format) must come out consistent; copies with
one VMCOREINFO value or one CPU note edited must give the one warning that
names it, found through the other source (the banner in memory, the page
tables, init_uts_ns). The edits are made byte for byte in copies of the real
zlib kdump (its pages are compressed, so only the headers' VMCOREINFO text and
notes carry the edited strings).
"""

import struct
import subprocess

import pytest

from gdbkd.errors import GdbkdError
from gdbkd.target import open_dump
from gdbkd.postmortem.check import run_check, open_warnings, check_dump, debug_info_problem
from conftest import module_dumps, gdbkd
from hostile import patched_copy

pytestmark = pytest.mark.unit

TD = MDF = None
_dumps = module_dumps(globals())

REAL = ["elf", "kdump_flat", "mdf-zlib-d31.kdump", "mdf-elf-d31.elf", "mdf-flat-d31.kdump",
        "mdf-split-d31"]


def _real(name):
    return getattr(TD, name) if name in ("elf", "kdump_flat") else MDF[name]


def _statuses(findings):
    out = {}
    for f in findings:
        out.setdefault(f.check, set()).add(f.status)
    return out


@pytest.mark.parametrize("name", REAL)
def test_real_dumps_are_consistent(name):
    text, findings = run_check(_real(name), TD.vmlinux)
    st = _statuses(findings)
    for check in ("OSRELEASE", "BUILD-ID", "KERNELOFFSET", "VA_BITS", "PHYS_OFFSET", "PRSTATUS",
                  "DWARF"):
        assert st.get(check) == {"ok"}, text
    assert "warn" not in {f.status for f in findings}, text
    assert text.splitlines()[-1] == "consistent"
    with open_dump(_real(name), TD.vmlinux) as d:
        assert open_warnings(d, TD.vmlinux) == []


def _edited(tmp_path, old: bytes, new: bytes):
    """A copy of the zlib kdump with every occurrence of OLD (VMCOREINFO text) made NEW."""
    assert len(old) == len(new)
    src = MDF["mdf-zlib-d31.kdump"]
    data = open(src, "rb").read()
    offs, i = [], data.find(old)
    while i >= 0:
        offs.append(i)
        i = data.find(old, i + 1)
    assert offs, old
    return patched_copy(src, tmp_path / "edited.kdump", [(o, new) for o in offs])


def _vmci(key):
    with open_dump(MDF["mdf-zlib-d31.kdump"]) as d:
        return f"{key}={d.vmcoreinfo[key]}".encode()


def _shifted(tmp_path, key, delta, fmt):
    """(copy with the hex VMCOREINFO value KEY moved by DELTA, written with FMT; the old value)."""
    real = _vmci(key)
    old = int(real.split(b"=")[1], 16)
    return _edited(tmp_path, real, key.encode() + b"=" + fmt % (old + delta)), old


def _one_warning(findings, check):
    w = [f for f in findings if f.status == "warn"]
    assert [f.check for f in w if f.check == check], [f.json() for f in findings]
    return next(f for f in w if f.check == check)


def test_kerneloffset_that_misses_the_image(tmp_path):
    bad, off = _shifted(tmp_path, "KERNELOFFSET", 0x200000, b"%x")
    f = _one_warning(run_check(bad, TD.vmlinux)[1], "KERNELOFFSET")
    assert f.text.startswith(f"{off + 0x200000:#x} disagrees: the dump has ")
    assert "not the vmlinux's banner" in f.text
    # SYMBOL(_stext) says where the image is, and the banner is found there
    assert f"the banner is at offset {off:#x} (from SYMBOL(_stext))" in f.text
    assert "\n" not in f.text
    with open_dump(bad, TD.vmlinux) as d:             # opens (same build-id): said, not silent
        assert any(w.startswith("KERNELOFFSET: ") for w in open_warnings(d, TD.vmlinux))


def test_phys_offset_that_misses_the_memory_map(tmp_path):
    bad, po = _shifted(tmp_path, "NUMBER(PHYS_OFFSET)", 0x40000000, b"%#x")
    _, findings = run_check(bad, TD.vmlinux)
    f = _one_warning(findings, "PHYS_OFFSET")
    assert "disagrees with the page tables" in f.text
    assert f"the tables imply PHYS_OFFSET {po:#x}" in f.text
    assert _statuses(findings)["KERNELOFFSET"] == {"ok"}
    with open_dump(bad, TD.vmlinux) as d:
        assert d.mmu.linear_range is None            # the fast path was refused, reads still right
        assert d.read(d.sym("linux_banner"), 13) == b"Linux version"
        assert [w for w in open_warnings(d, TD.vmlinux) if w.startswith("PHYS_OFFSET: ")]


def test_va_bits_that_disagree_with_the_tables(tmp_path):
    bad = _edited(tmp_path, b"NUMBER(VA_BITS)=48", b"NUMBER(VA_BITS)=39")
    _, findings = run_check(bad, TD.vmlinux)
    f = _one_warning(findings, "VA_BITS")
    assert f.text.startswith("39 disagrees: TCR_EL1_T1SZ 0x10 means the kernel ran with 48-bit VAs")
    assert "walked as 39-bit the tables do not map _stext" in f.text
    # the width the tables really use (TCR_EL1_T1SZ) edited instead
    bad = _edited(tmp_path, b"NUMBER(TCR_EL1_T1SZ)=0x10", b"NUMBER(TCR_EL1_T1SZ)=0x19")
    _, findings = run_check(bad, TD.vmlinux)
    f = _one_warning(findings, "VA_BITS")
    assert "swapper_pg_dir walked as 39-bit does not map _stext" in f.text
    assert "walked as 48-bit it does" in f.text


def test_osrelease_and_build_id_reported_not_just_refused(tmp_path):
    rel = _vmci("OSRELEASE")
    bad = _edited(tmp_path, rel, rel[:-1] + b"X")
    with pytest.raises(GdbkdError, match="wrong vmlinux: the dump is of kernel"):
        open_dump(bad, TD.vmlinux).close()
    _, findings = run_check(bad, TD.vmlinux)      # the full report still comes
    f = _one_warning(findings, "OSRELEASE")
    good = rel.split(b"=")[1].decode()
    assert f"the vmlinux's banner says 'Linux version {good}'" in f.text
    assert f"init_uts_ns in the dump says '{good}'" in f.text
    assert f"the dump header's utsname says '{good}'" in f.text
    assert _one_warning(findings, "vmlinux").text.startswith("gdbkd core would refuse it")
    assert _statuses(findings)["KERNELOFFSET"] == {"ok"}

    bid = _vmci("BUILD-ID")
    flipped = bid[:-1] + (b"0" if bid[-1:] != b"0" else b"1")
    bad = _edited(tmp_path, bid, flipped)
    _, findings = run_check(bad, TD.vmlinux)
    f = _one_warning(findings, "BUILD-ID")
    assert "not the kernel that crashed" in f.text
    assert _statuses(findings)["OSRELEASE"] == {"ok"}


def _prstatus_pc_patch(pc):
    """(file offset, bytes) making the second CPU note's pc PC in the zlib kdump."""
    src = MDF["mdf-zlib-d31.kdump"]
    with open_dump(src) as d:
        desc = [n.desc for n in d.phys.notes if n.name == "CORE" and n.type == 1][1]
    data = open(src, "rb").read()
    at = data.find(desc)
    assert at > 0 and data.find(desc, at + 1) < 0
    return at + 112 + 32 * 8, struct.pack("<Q", pc)


def test_prstatus_pc_outside_kernel_text(tmp_path):
    with open_dump(MDF["mdf-zlib-d31.kdump"], TD.vmlinux) as d:
        not_text = d.sym("init_task")                 # kernel data, EL1
    bad = patched_copy(MDF["mdf-zlib-d31.kdump"], tmp_path / "pc.kdump",
                       [_prstatus_pc_patch(not_text)])
    text, findings = run_check(bad, TD.vmlinux)
    pr = [f for f in findings if f.check == "PRSTATUS"]
    assert [f.status for f in pr] == ["ok", "warn"], text
    assert f"pc {not_text:#x} (EL1) is not in kernel or module text" in pr[1].text
    with open_dump(bad, TD.vmlinux) as d:
        assert [w for w in open_warnings(d, TD.vmlinux) if w.startswith("PRSTATUS: CPU note 1")]


def test_debug_info_problem(tmp_path):
    (tmp_path / "a.c").write_text("int f(int x) { return x + 1; }\n")
    subprocess.run(["gcc", "-c", "-o", tmp_path / "plain.o", tmp_path / "a.c"], check=True)
    subprocess.run(["gcc", "-g", "-c", "-o", tmp_path / "dwarf.o", tmp_path / "a.c"], check=True)
    why = debug_info_problem(tmp_path / "plain.o")
    assert why.endswith("has no debug info (no .debug_info section): kd needs the vmlinux with "
                        "DWARF (Debian: linux-image-…-dbg)")
    assert debug_info_problem(tmp_path / "dwarf.o") is None
    assert debug_info_problem(TD.vmlinux) is None
    assert "cannot read the sections" in debug_info_problem(tmp_path / "a.c")


def test_check_without_vmlinux_skips_what_needs_it():
    with open_dump(MDF["mdf-zlib-d31.kdump"]) as d:
        st = _statuses(check_dump(d, None))
    assert st["BUILD-ID"] == {"skip"} and st["KERNELOFFSET"] == {"skip"}
    assert st["PHYS_OFFSET"] == {"ok"} and st["OSRELEASE"] == {"ok"}


# -- the command ---------------------------------------------------------------------------
def test_core_check_command(tmp_path):
    r = gdbkd("core", "--check", str(MDF["mdf-zlib-d31.kdump"]), str(TD.vmlinux), timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1] == "consistent" and "  OK    KERNELOFFSET" in r.stdout
    bad, _ = _shifted(tmp_path, "KERNELOFFSET", 0x200000, b"%x")
    r = gdbkd("core", "--check", str(bad), str(TD.vmlinux), timeout=120)
    assert r.returncode == 1 and "  WARN  KERNELOFFSET" in r.stdout, r.stdout
    assert r.stdout.splitlines()[-1].endswith("disagreements") and r.stderr == ""
    (tmp_path / "junk").write_bytes(b"\0" * 8192)
    r = gdbkd("core", "--check", str(tmp_path / "junk"), str(TD.vmlinux), timeout=120)
    assert r.returncode not in (0, 1) and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "Traceback" not in r.stderr and str(tmp_path / "junk") in r.stderr
