"""gdbkd.elfsyms over a real Debian vmlinux, checked against pyelftools' full parse."""

import pytest
from elftools.elf.elffile import ELFFile

from gdbkd.elfsyms import symbol_values, file_bytes_at
from gdbkd.errors import GdbkdError

# names that are also tails of longer strings in .strtab ("panic" of "nmi_panic", ...)
NAMES = ["_text", "_stext", "_end", "linux_banner", "init_task", "vectors", "panic", "schedule",
         "swapper_pg_dir", "no_such_symbol_here"]


@pytest.fixture(scope="module")
def vmlinux(kernel61):
    return kernel61.vmlinux


def test_matches_pyelftools(vmlinux):
    got = symbol_values(vmlinux, NAMES)
    with open(vmlinux, "rb") as f:
        st = ELFFile(f).get_section_by_name(".symtab")
        for name in NAMES:
            syms = [s for s in (st.get_symbol_by_name(name) or []) if s["st_shndx"] != "SHN_UNDEF"]
            if syms:
                assert got[name] == syms[0]["st_value"], name
            else:
                assert name not in got
    assert "no_such_symbol_here" not in got and got["_stext"] > got["_text"]


def test_banner_bytes(vmlinux):
    addr = symbol_values(vmlinux, ["linux_banner"])["linux_banner"]
    assert file_bytes_at(vmlinux, addr, 14) == b"Linux version "
    assert file_bytes_at(vmlinux, 8, 4) is None


def test_bad_file_is_one_line(tmp_path):
    bad = tmp_path / "x"
    bad.write_bytes(b"not an elf")
    with pytest.raises(GdbkdError, match="cannot read symbols"):
        symbol_values(bad, ["_text"])


def test_sections_match_pyelftools(vmlinux):
    from gdbkd.elfsyms import sections
    with open(vmlinux, "rb") as f:
        ours = sections(f, vmlinux)
        theirs = list(ELFFile(f).iter_sections())
    assert [(s.name, s.flags, s.addr, s.offset, s.size, s.link) for s in ours] == \
        [(t.name, t["sh_flags"], t["sh_addr"], t["sh_offset"], t["sh_size"], t["sh_link"]) for t in theirs]


def test_truncated_vmlinux_is_one_line(vmlinux, tmp_path):
    cut = tmp_path / "vmlinux-cut"
    with open(vmlinux, "rb") as f:
        cut.write_bytes(f.read(1 << 20))          # the ELF header, no section table
    with pytest.raises(GdbkdError, match="cannot read symbols of .*(past the end|bad section)"):
        symbol_values(cut, ["_text"])


def test_build_id_matches_pyelftools(vmlinux, tmp_path):
    from gdbkd.target.offsets import vmlinux_build_id
    with open(vmlinux, "rb") as f:
        want = next(n["n_desc"] for s in ELFFile(f).iter_sections() if s.header.sh_type == "SHT_NOTE"
                    for n in s.iter_notes() if n["n_type"] == "NT_GNU_BUILD_ID")
    assert vmlinux_build_id(vmlinux) == want and len(want) == 40
    junk = tmp_path / "junk"
    junk.write_bytes(b"\x7fELF" + b"\0" * 100)
    with pytest.raises(GdbkdError, match="is not a readable ELF vmlinux|not a 64-bit"):
        vmlinux_build_id(junk)


def test_containing_agrees_with_gdbs_info_symbol(vmlinux, tmp_path, monkeypatch):
    """SymbolTable.containing names an address only where the table settles gdb's answer:
    every name it gives equals gdb's own ``info symbol`` for 4,000 addresses of the kernel
    image (seeded, each section in proportion) and a few chosen ones; and it answers for
    most of them (a table that always said "ask gdb" would pass the first check)."""
    import json
    import random
    import subprocess
    from gdbkd.elfsyms import SymbolTable
    monkeypatch.setenv("GDBKD_CACHE", str(tmp_path))          # the index sorted, then read back
    st = SymbolTable(vmlinux)
    lo, hi = st.value("_text"), st.value("_end")
    rnd = random.Random(61)
    addrs = sorted({rnd.randrange(lo, hi) for _ in range(4000)})
    addrs += [st.value("init_task") + 0x558, st.value("schedule"), st.value("schedule") + 4,
              st.value("_text"), st.value("vectors") + 0x80, st.value("linux_banner") + 3]
    ours = {a: st.containing(a) for a in addrs}
    again = SymbolTable(vmlinux)                                # from the cached index
    assert all(again.containing(a) == ours[a] for a in addrs[:200])
    script = tmp_path / "q.py"
    script.write_text(
        "import gdb, json\n"
        f"out = {{}}\nfor a in {addrs!r}:\n"
        "    out[a] = gdb.execute('info symbol %#x' % a, to_string=True).strip()\n"
        "print('INFO ' + json.dumps(out))\n")
    from gdbkd.paths import GDB_INIT          # as every gdb gdbkd starts (demangling off)
    r = subprocess.run(["gdb-multiarch", "-nx", "-batch", *GDB_INIT, vmlinux,
                        "-ex", f"source {script}"], capture_output=True, text=True, timeout=600)
    line = next(l for l in r.stdout.splitlines() if l.startswith("INFO "))
    gdbs = {int(k): v for k, v in json.loads(line[5:]).items()}
    answered = 0
    for a in addrs:
        if ours[a] is None:
            continue
        answered += 1
        name, off, sec = ours[a]
        want = f"{name} + {off} in section {sec}" if off else f"{name} in section {sec}"
        assert gdbs[a] == want, (hex(a), ours[a], gdbs[a])
    assert answered > 0.6 * len(addrs), answered
    assert ours[addrs[-6]] == ("init_task", 0x558, ".data")
