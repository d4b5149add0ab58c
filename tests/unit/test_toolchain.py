"""The private trixie gcc-14 toolchain and the Debian 6.12 module builds it enables.

- unit: unknown toolchain names are one clear error; Depends parsing on a
  field as the trixie archive records it;
- slow (an extra kernel, 6.12): the toolchain is fetched from the archive,
  every wrapped program resolves its libraries inside the toolchain only and
  reports the compiler/binutils versions the 6.12 kernel was configured with;
  all eight labs build against the 6.12 headers with the kernel's own flags
  (the gcc-14-only -fmin-function-alignment among them); lab 1 booted in the
  6.12 guest oopses in its fault function rather than in ftrace patching.
"""

import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from gdbkd.errors import GdbkdError
from gdbkd.artifacts.toolchain import TOOLCHAINS, _dep_names, apply_toolchain, ensure_toolchain

NAME = "trixie-gcc-14"


def _config(kernel) -> dict:
    out = {}
    for line in Path(kernel.config).read_text().splitlines():
        m = re.match(r"^(CONFIG_\w+)=(.*)$", line)
        if m:
            out[m.group(1)] = m.group(2).strip('"')
    return out


# --- unit ------------------------------------------------------------------------------

@pytest.mark.unit
def test_unknown_toolchain_is_one_clear_error():
    with pytest.raises(GdbkdError, match=r"unknown toolchain 'gcc-99' \(known: trixie-gcc-14\)") as e:
        ensure_toolchain("gcc-99")
    assert "\n" not in str(e.value)


@pytest.mark.unit
def test_depends_parsing_takes_first_alternative_without_versions():
    # binutils-aarch64-linux-gnu 2.44-3 (trixie), plus an alternative and an arch qualifier
    fields = {"Depends": "binutils-common (= 2.44-3), libc6 (>= 2.38), libjansson4 (>= 2.14), "
                         "libsframe1 (>= 2.41), libzstd1 (>= 1.5.5), zlib1g (>= 1:1.1.4)",
              "Pre-Depends": "dpkg (>= 1.17) | dpkg-legacy, python3:any"}
    assert list(_dep_names(fields)) == ["dpkg", "python3", "binutils-common", "libc6", "libjansson4",
                                        "libsframe1", "libzstd1", "zlib1g"]
    assert list(_dep_names({})) == []


# --- slow: the real toolchain and the 6.12 kernel ----------------------------------------

@pytest.fixture(scope="module")
def kernel612():
    from gdbkd.qemu.profiles import load_profile
    from gdbkd.artifacts.kernel import ensure_kernel
    return apply_toolchain(ensure_kernel(load_profile("debian-6.12")), NAME)


@pytest.mark.slow
def test_toolchain_is_private_and_matches_the_612_kernel(kernel612):
    tc = ensure_toolchain(NAME)
    spec = TOOLCHAINS[NAME]
    bindir = Path(tc["path"])
    top = bindir.parent
    names = [p.split()[0] for p in tc["packages"]]
    assert set(n for n, _ in spec.roots) <= set(names)
    assert not set(names) & spec.skip
    # the only arch:all package is the one with gcc's headers: no arm64 runtime libraries
    assert [p.split()[0] for p in tc["packages"] if p.endswith(" all")] == ["libgcc-14-dev-arm64-cross"]
    for var, path in tc["make_vars"].items():
        if var != "CONFIG_DEBUG_INFO_BTF_MODULES":
            assert Path(path).parent == bindir and Path(path).stat().st_mode & 0o111, var
    # the versions the kernel was configured with (the kernel Makefile compares them)
    cfg = _config(kernel612)
    gcc = subprocess.run([tc["make_vars"]["CC"], "--version"], capture_output=True, text=True, check=True)
    assert gcc.stdout.splitlines()[0] == cfg["CONFIG_CC_VERSION_TEXT"]
    ld = subprocess.run([tc["make_vars"]["LD"], "--version"], capture_output=True, text=True, check=True)
    major, minor = re.search(r"(\d+)\.(\d+)", ld.stdout.splitlines()[0]).groups()
    assert int(major) * 10000 + int(minor) * 100 == int(cfg["CONFIG_LD_VERSION"])
    # every library of cc1 (spawned by the driver) comes from the toolchain, not the host
    cc1 = top / "root" / spec.libexec["cc1"]
    listed = subprocess.run([tc["host_run"], "--list", str(cc1)], capture_output=True, text=True, check=True)
    libs = re.findall(r"=> (\S+)", listed.stdout)
    assert "libisl.so.23" in listed.stdout and len(libs) >= 8
    assert all(Path(l).resolve().is_relative_to(top.resolve()) for l in libs), listed.stdout
    # the driver spawns the wrappers, so gcc -c works end to end (through cc1 and as)
    probe = subprocess.run([str(bindir / "aarch64-linux-gnu-gcc"), "-print-prog-name=cc1"],
                           capture_output=True, text=True, check=True)
    assert Path(probe.stdout.strip()).resolve() == (top / "libexec/cc1").resolve()


@pytest.mark.slow
def test_apply_toolchain_is_idempotent(kernel612):
    before = (dict(kernel612.make_vars), list(kernel612.make_prefix))
    apply_toolchain(kernel612, NAME)
    assert (kernel612.make_vars, kernel612.make_prefix) == before
    assert kernel612.make_prefix[0] == "env"
    assert kernel612.make_prefix[1].startswith(f"PATH={ensure_toolchain(NAME)['path']}:")
    assert kernel612.make_vars["MODPOST"].split()[1].startswith(kernel612.kdir)


@pytest.mark.slow
@pytest.mark.parametrize("number", range(1, 9))
def test_lab_builds_against_612_with_the_kernels_flags(kernel612, number, tmp_path):
    from gdbkd.artifacts.modules import build_module_dir
    from gdbkd.labs import get_lab
    lab = get_lab(number)
    cfg = _config(kernel612)
    # a private copy with a unique comment: a real build, not a cached .ko
    src = tmp_path / lab.dir.name
    shutil.copytree(lab.dir, src)
    c = sorted(src.glob("*.c"))[0]
    c.write_text(c.read_text() + f"/* {tmp_path.name} */\n")
    t = time.monotonic()
    [ko] = [k for k in build_module_dir(src, kernel612) if k.stem == lab.module]
    try:
        assert time.monotonic() - t < 60
        with open(ko, "rb") as f:
            elf = ELFFile(f)
            modinfo = dict(kv.split("=", 1) for kv in
                           elf.get_section_by_name(".modinfo").data().decode().split("\0") if "=" in kv)
            producers = elf.get_section_by_name(".debug_str").data().decode(errors="replace")
            sections = {s.name for s in elf.iter_sections()}
            funcs = {s.name for s in elf.get_section_by_name(".symtab").iter_symbols()
                     if s["st_info"]["type"] == "STT_FUNC"}
        assert modinfo["vermagic"].split()[0] == kernel612.release
        assert re.search(r"GNU C\d+ 14\.\d+\.\d+ [^\0]*-fmin-function-alignment="
                         + cfg["CONFIG_FUNCTION_ALIGNMENT"], producers)
        if cfg.get("CONFIG_DYNAMIC_FTRACE_WITH_CALL_OPS") == "y":
            assert "__patchable_function_entries" in sections
        if lab.fault_function:
            assert lab.fault_function in funcs, sorted(funcs)
    finally:
        shutil.rmtree(ko.parent, ignore_errors=True)   # the cache copy of this one-off build


@pytest.mark.slow
@pytest.mark.e2e
def test_lab1_oopses_in_its_function_in_the_612_guest(kernel612, tmp_path, no_leftover_qemu):
    from gdbkd.labs import get_lab
    from gdbkd.qemu.profiles import load_profile
    from test_labs_build import _boot_lab     # one way to boot a lab by hand
    lab = get_lab(1)
    log = _boot_lab(lab, kernel612, load_profile("debian-6.12"), tmp_path, 60)
    assert "GDBKD-READY" in log, log[-2000:]
    assert "patching.c" not in log and "kernel BUG" not in log, log[-3000:]
    m_addr = re.search(r"Unable to handle kernel NULL pointer dereference at virtual address ([0-9a-f]+)", log)
    assert m_addr and int(m_addr.group(1), 16) == int(lab.fault_address, 16), log[-3000:]
    pc = re.search(r"pc : (\S+)\+0x\w+/0x\w+ \[(\w+)\]", log)
    assert pc and pc.groups() == (lab.fault_function, lab.module), log[-3000:]
