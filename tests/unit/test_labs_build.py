"""The eight crash labs: scenario files, builds against the real 6.1 headers, and
(slow tier) each lab's behaviour in a booted guest.

- unit: lab.toml parsing and lookups, the rc lines, and the freestanding arm64
  user program (built with the real cross compiler, inspected with pyelftools);
- e2e: every module builds against the Debian 6.1 kernel headers (fetched on
  first use), and each lab.toml's fault_function is a function of the built
  .ko under that exact name (no .isra/.constprop clone);
- slow: each lab is booted (QEMU, the overlay initramfs, lab_rc + trigger in
  /etc/gdbkd.rc) and the serial log must show what lab.toml promises: the oops
  with pc in fault_function (and the fault address), or hung-task reports for
  exactly hang_comms + victim_comms.
"""

import re
import time
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from gdbkd.errors import GdbkdError
from gdbkd.labs import (LABS_DIR, build_lab, build_user_program, get_lab, lab_rc,
                        list_labs)


def _functions(path) -> set:
    with open(path, "rb") as f:
        elf = ELFFile(f)
        symtab = elf.get_section_by_name(".symtab")
        return {s.name for s in symtab.iter_symbols() if s["st_info"]["type"] == "STT_FUNC"}


def _modinfo(path) -> dict:
    with open(path, "rb") as f:
        data = ELFFile(f).get_section_by_name(".modinfo").data()
    return dict(kv.split("=", 1) for kv in data.decode().split("\0") if "=" in kv)


# --- unit ----------------------------------------------------------------------------

@pytest.mark.unit
def test_eight_labs_with_consistent_scenarios():
    labs = list_labs()
    assert [lab.number for lab in labs] == list(range(1, 9))
    assert len({lab.slug for lab in labs}) == 8
    for lab in labs:
        assert lab.dir.parent == LABS_DIR
        kbuild = (lab.dir / "Kbuild").read_text()
        assert re.search(rf"obj-m\s*[:+]?=\s*{re.escape(lab.module)}\.o\b", kbuild), lab.dir
        assert any(lab.module in t for t in lab.trigger), "the trigger loads the module"
        assert any(t.startswith("insmod /" + lab.ko_guest_path) for t in lab.trigger)
        if lab.expect == "oops":
            assert lab.fault_function and not lab.hang_comms
            src = "".join(p.read_text() for p in lab.dir.glob("*.c"))
            assert re.search(rf"\b{lab.fault_function}\(", src)
        else:
            assert lab.hang_comms and not lab.fault_function
            assert "kernel.hung_task_timeout_secs" in lab.sysctl
            comms = set(lab.hang_comms) | set(lab.victim_comms)
            assert all(len(c) <= 15 for c in comms), "comm is TASK_COMM_LEN-1 at most"
    # the list-poison lab must fault on a LIST_POISON value
    assert int(get_lab(2).fault_address, 16) in (0xdead000000000100, 0xdead000000000122)
    assert len(get_lab(7).hang_comms) + len(get_lab(7).victim_comms) >= 5


@pytest.mark.unit
def test_get_lab_by_number_slug_or_dir_and_unknown():
    assert get_lab(2) == get_lab("2") == get_lab("list-poison") == get_lab("lab2_list_poison")
    for bad in (0, 9, "nope", ""):
        with pytest.raises(GdbkdError, match="unknown lab"):
            get_lab(bad)


@pytest.mark.unit
@pytest.mark.parametrize("change, message", [
    ("number = \"1\"", "number must be an integer"),
    ("colour = \"red\"", "unknown key colour"),
    ("expect = \"panic\"", "expect must be one of"),
    ("fault_function = \"\"", "needs fault_function"),
    ("trigger = [1]", "trigger must be a list of strings"),
    ("user_programs = [\"missing.c\"]", "user program missing.c not found"),
])
def test_bad_lab_file_is_one_clear_error(tmp_path, change, message):
    from gdbkd.labs import _load
    text = (get_lab(1).dir / "lab.toml").read_text()
    key = change.split(" =")[0]
    lines = [l for l in text.splitlines() if not l.startswith(key + " =")] + [change]
    (tmp_path / "lab.toml").write_text("\n".join(lines) + "\n")
    with pytest.raises(GdbkdError, match=message) as e:
        _load(tmp_path / "lab.toml")
    assert "\n" not in str(e.value)


@pytest.mark.unit
def test_lab_rc_sets_each_sysctl_through_proc():
    lab = get_lab(5)
    rc = lab_rc(lab)
    lines = rc.splitlines()
    assert len(lines) == len(lab.sysctl)
    for key, value in lab.sysctl.items():
        assert f"echo {value} > /proc/sys/{key.replace('.', '/')}" in lines
    assert lab_rc(get_lab(1)) == ""
    assert not any(t in rc for t in lab.trigger), "triggers are run by the caller"


@pytest.mark.unit
def test_user_program_is_static_freestanding_arm64(tmp_path):
    lab = get_lab(4)
    [prog] = lab.user_programs
    out = build_user_program(lab.dir / prog, tmp_path)
    assert out == tmp_path / "lab4_client" and out.stat().st_mode & 0o111
    with open(out, "rb") as f:
        elf = ELFFile(f)
        assert elf["e_machine"] == "EM_AARCH64" and elf["e_type"] == "ET_EXEC"
        assert not any(s["p_type"] in ("PT_INTERP", "PT_DYNAMIC") for s in elf.iter_segments())
        syms = {s.name: s["st_value"] for s in elf.get_section_by_name(".symtab").iter_symbols()}
        assert syms["_start"] == elf["e_entry"]
        text = elf.get_section_by_name(".text").data()
    assert (0xd4000001).to_bytes(4, "little") in text, "makes system calls with svc #0"
    with pytest.raises(GdbkdError, match="does not build"):
        bad = tmp_path / "bad.c"
        bad.write_text("int f(void) { return undefined_thing; }\n")
        build_user_program(bad, tmp_path)


# --- e2e: real builds against the 6.1 headers ------------------------------------------

@pytest.mark.e2e
@pytest.mark.parametrize("number", range(1, 9))
def test_lab_builds_against_61_and_names_its_functions(kernel61, number):
    lab = get_lab(number)
    files = build_lab(lab, kernel61)
    ko = Path(files[lab.ko_guest_path])
    assert ko.name == f"{lab.module}.ko"
    assert _modinfo(ko)["vermagic"].split()[0] == kernel61.release
    funcs = _functions(ko)
    if lab.fault_function:
        assert lab.fault_function in funcs, sorted(funcs)
    for prog in lab.user_programs:
        binary = Path(files[f"bin/{Path(prog).stem}"])
        with open(binary, "rb") as f:
            assert ELFFile(f)["e_machine"] == "EM_AARCH64"


# --- slow: boot each lab and read the serial console -------------------------------------

def _boot_lab(lab, kernel, profile, tmp_path, seconds):
    from gdbkd.artifacts.initramfs import ensure_base_initramfs, write_overlay
    from gdbkd.qemu.machine import Machine
    base = ensure_base_initramfs(kernel, profile.guest.get("boot_modules", []))
    rc = lab_rc(lab) + "".join(t + "\n" for t in lab.trigger)
    initrd = write_overlay(base, build_lab(lab, kernel), tmp_path / "initrd.img", rc=rc)
    m = Machine(profile, kernel, initrd=initrd)
    try:
        m.start()
        # /init prints the ready marker after the rc (sysctls + trigger) has run
        wants = ["GDBKD-READY", "end trace" if lab.expect == "oops" else "blocked for more than"]
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not all(w in m.console.text() for w in wants):
            m.console.wait_for(wants[1], timeout=1)
        if lab.expect == "hang":
            m.console.wait_for("__never__", timeout=2)   # let one scan finish printing
        return m.console.text().replace("\r", "")
    finally:
        m.stop()
        assert m.proc is None or m.proc.poll() is not None, "QEMU left running"


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.parametrize("number", range(1, 9))
def test_lab_behaves_in_the_61_guest(kernel61, number, tmp_path):
    from gdbkd.qemu.profiles import load_profile
    lab = get_lab(number)
    log = _boot_lab(lab, kernel61, load_profile("debian-6.1"), tmp_path,
                    40 if lab.expect == "oops" else 60)
    assert "GDBKD-READY" in log, log[-2000:]
    if lab.expect == "oops":
        m = re.search(r"Unable to handle kernel .* at virtual address ([0-9a-f]+)", log)
        assert m, log[-3000:]
        if lab.fault_address:
            assert int(m.group(1), 16) == int(lab.fault_address, 16)
        pc = re.search(r"pc : (\S+)\+0x", log)
        assert pc and pc.group(1) == lab.fault_function, log[-3000:]
    else:
        blocked = set(re.findall(r"INFO: task (\S+):\d+ blocked for more than", log))
        assert blocked == set(lab.hang_comms) | set(lab.victim_comms), log[-3000:]
