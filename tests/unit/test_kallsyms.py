"""gdbkd/model/kallsyms.py and the .ko matching of gdbkd/kmods.py, without gdb, on the real
6.1 test dump (its guest loaded Debian's qemu_fw_cfg module): the module's kallsyms read
from memory equal drgn's, its build-id is the one of Debian's .ko, and a relocated copy
parks every section the module does not own now (its freed .init.text among them)."""

import json
import subprocess
import sys

from elftools.elf.elffile import ELFFile

from conftest import module_dumps

TD = MDF = None
_dumps = module_dumps(globals())

DRGN = r"""
import json, sys, drgn
from drgn.helpers.linux.module import for_each_module
from drgn.helpers.linux.kallsyms import module_kallsyms
prog = drgn.Program()
prog.set_core_dump(sys.argv[1])
prog.load_debug_info([sys.argv[2]], default=False, main=True)
print(json.dumps({m.name.string_().decode(): sorted((s.address, s.size, s.name) for s in module_kallsyms(m))
                  for m in for_each_module(prog)}))
"""


def _dump():
    from gdbkd.target import open_dump
    return open_dump(str(TD.elf), str(TD.vmlinux))


def test_module_kallsyms_equal_drgns():
    from gdbkd.model.kallsyms import module_symbols, symbolize
    d = _dump()
    try:
        ours = {name: sorted((s.addr, s.size, s.name) for s in ms.syms)
                for name, ms in module_symbols(d.kernel).items()}
        ms = module_symbols(d.kernel)["qemu_fw_cfg"]
        probe = next(s for s in ms.syms if s.name == "fw_cfg_sysfs_probe")
        hit = symbolize(d.kernel, probe.addr + 0x10)
        after_init = ms.init
    finally:
        d.close()
    ref = json.loads(subprocess.run([sys.executable, "-c", DRGN, str(TD.elf), str(TD.vmlinux)],
                                    capture_output=True, text=True, check=True, timeout=300).stdout)
    ref = {k: sorted(tuple(x) for x in v) for k, v in ref.items()}
    # drgn keeps $x mapping symbols and unnamed entries; kd drops them, nothing else
    for k in ref:
        ref[k] = [x for x in ref[k] if x[2] and not x[2].startswith(("$x", "$d", "__UNIQUE_ID"))]
    assert ours == ref
    assert "qemu_fw_cfg" in ours
    assert hit[0] == "qemu_fw_cfg" and hit[1].name == "fw_cfg_sysfs_probe" and hit[2] is False
    assert after_init == []         # init finished at boot: its memory is freed


def _debian_ko(name):
    from gdbkd.kmods import find_ko
    kdir = sorted(TD.vmlinux.parent.glob("pkg/lib/modules/*"))
    return find_ko(name, [str(p) for p in kdir])


def test_build_id_and_parked_sections(tmp_path):
    from gdbkd import kmods
    from gdbkd.model.modules import module_list
    from gdbkd.model.kallsyms import module_build_id, module_symbols
    d = _dump()
    try:
        mods, _ = module_list(d.kernel)
        m = next(x for x in mods if x.name == "qemu_fw_cfg")
        bid = module_build_id(d.kernel, m)
        ms = module_symbols(d.kernel)["qemu_fw_cfg"]
        live = ms.core + ms.init
        plans = {p.name: p for p in kmods.plan_modules(d.kernel, [])}
    finally:
        d.close()
    ko = _debian_ko("qemu_fw_cfg")
    assert ko is not None and bid and bid == kmods.ko_build_id(ko)
    # a copy relocated with the live ranges: placed sections in them, the rest parked
    copy = kmods.relocated_copy(ko, m.sections, live)
    with open(copy, "rb") as f:
        secs = {s.name: (s["sh_addr"], s["sh_flags"]) for s in ELFFile(f).iter_sections()}
    assert secs[".text"][0] == m.sections[".text"]
    assert ".init.text" in m.sections and not any(lo <= m.sections[".init.text"] < hi for lo, hi in live)
    for name, (addr, flags) in secs.items():
        if flags & 2:                                   # SHF_ALLOC: placed live or parked
            inlive = any(lo <= addr < hi for lo, hi in live)
            parked = addr >> 52 == kmods.PARK_BASE >> 52
            assert inlive or parked, (name, hex(addr))
    assert secs[".init.text"][0] >> 52 == kmods.PARK_BASE >> 52
    # with no directory given the Debian .ko is not found by name, and gdbkd's build cache
    # does not hold it: no symbol file, and the status says why
    assert plans["qemu_fw_cfg"].copy is None
    assert "no .ko found" in plans["qemu_fw_cfg"].status
    # a .ko of another build is refused, not loaded
    other = tmp_path / "qemu_fw_cfg.ko"
    raw = bytearray(ko.read_bytes())
    i = raw.find(bytes.fromhex(bid))
    raw[i] ^= 0xFF
    other.write_bytes(bytes(raw))
    copy, status = kmods.symbol_file("qemu_fw_cfg", m.base, m.sections, [str(tmp_path)],
                                     build_id=bid, live=live)
    assert copy is None and "is another build" in status, status
