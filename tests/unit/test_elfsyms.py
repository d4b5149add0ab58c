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
    from gdbkd.postmortem.offsets import vmlinux_build_id
    with open(vmlinux, "rb") as f:
        want = next(n["n_desc"] for s in ELFFile(f).iter_sections() if s.header.sh_type == "SHT_NOTE"
                    for n in s.iter_notes() if n["n_type"] == "NT_GNU_BUILD_ID")
    assert vmlinux_build_id(vmlinux) == want and len(want) == 40
    junk = tmp_path / "junk"
    junk.write_bytes(b"\x7fELF" + b"\0" * 100)
    with pytest.raises(GdbkdError, match="is not a readable ELF vmlinux|not a 64-bit"):
        vmlinux_build_id(junk)
