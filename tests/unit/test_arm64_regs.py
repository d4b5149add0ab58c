"""gdbkd/arm64/regs.py, the arm64 register facts, on the real 6.1 test dump (tests/testdumps.py)
with drgn 0.3.0 reading the same memory through the vmlinux's DWARF as the reference; and
that the package decodes PSTATE's mode bits and the KASLR offset from VBAR nowhere else
(read from the source, like tests/model/test_layers.py)."""

import io
import re
import tokenize
from pathlib import Path

import pytest

from tests.conftest import module_dumps
from gdbkd.arm64 import regs as R
from gdbkd.errors import GdbkdError
from gdbkd.model import tasks as mtasks

pytestmark = pytest.mark.unit

TD = MDF = None
_dumps = module_dumps(globals())
PKG = Path(__file__).resolve().parents[2] / "gdbkd"


def _sleepers(dump):
    by_pid = {t.pid: t for t in mtasks.task_list(dump.kernel)}
    return [by_pid[pid] for pid in TD.meta["sleepers"].values()]


def test_prstatus_notes_equal_drgn(td_dump, td_drgn):
    """Every CPU note parses; the crashed CPU's registers are drgn's for the crashed thread's
    newest frame, and a note written back by encode_prstatus holds the same registers."""
    notes = td_dump.phys.prstatus_notes()
    assert len(notes) >= 2
    parsed = [R.parse_prstatus(n.desc) for n in notes]
    for n, st in zip(notes, parsed):
        assert len(st.regs) == R.NUM_REGS and st.regs[R.CPSR + 1:] == [None] * (R.NUM_REGS - R.CPSR - 1)
        assert (st.sp, st.pc) == (st.regs[31], st.regs[32])
        again = R.parse_prstatus(R.encode_prstatus(st.pid, st.regs))
        assert (again.pid, again.regs) == (st.pid, st.regs)
    frame = td_drgn.crashed_thread().stack_trace()[0]
    st = next(st for st in parsed if st.pc == frame.pc)
    want = frame.registers()
    got = dict(zip(R.PT_REGS_NAMES, st.regs))
    assert {k: got[k] for k in R.PT_REGS_NAMES if k in want} == \
        {k: v for k, v in want.items() if k in R.PT_REGS_NAMES}
    assert "pstate" in want and "x29" in want and "sp" in want
    # the CPU crashed in the kernel (sysrq-c): EL1, AArch64
    ps = st.regs[R.CPSR]
    assert R.exception_level(ps) == 1 and not R.is_aarch32(ps) and not R.from_user(ps)
    assert R.mode_name(ps) in ("EL1h", "EL1t") and R.saved_pstate_plausible(ps)
    with pytest.raises(GdbkdError, match="not arm64's"):
        R.parse_prstatus(notes[0].desc[:200])


def test_fpregset_round_trip(td_dump):
    from gdbkd.dump import NT_FPREGSET
    fp = [n for n in td_dump.phys.notes if n.name == "CORE" and n.type == NT_FPREGSET]
    assert fp
    for n in fp:
        regs = [None] * R.NUM_REGS
        R.parse_fpregset(n.desc, regs)
        assert None not in regs[34:]
        out = R.encode_fpregset(regs)
        assert len(out) == R.FPREGSET_SIZE and out[:520] == n.desc[:520]


def test_user_pt_regs_equal_drgn(td_dump, td_drgn):
    """The user registers at the top of the sleepers' kernel stacks (task_pt_regs), decoded
    with this kernel's pt_regs layout, are drgn's ``struct pt_regs`` there, member by member."""
    import drgn
    k = td_dump.kernel
    size = k.sizeof("struct pt_regs")
    layout = {"size": size, **{m: k.offset("struct pt_regs", m)
                               for m in ("stackframe", "orig_x0", "syscallno")}}
    top = k.sizeof("init_stack")                    # THREAD_SIZE
    for t in _sleepers(td_dump):
        addr = t.stack + top - size
        regs = R.decode_pt_regs(k.reader.read(addr, size), layout, addr)
        o = drgn.Object(td_drgn, "struct pt_regs", address=addr)
        want = {f"x{i}": o.regs[i].value_() for i in range(31)}
        want.update(sp=o.sp.value_(), pc=o.pc.value_(), pstate=o.pstate.value_(), addr=addr,
                    orig_x0=o.orig_x0.value_(), syscallno=o.syscallno.value_(),
                    stackframe=[o.stackframe[i].value_() for i in range(2)])
        regs["stackframe"] = regs["stackframe"][:2]
        assert regs == want, t.comm
        # a task asleep in a system call came from user space, AArch64 (busybox is arm64)
        ps = regs["pstate"]
        assert R.from_user(ps) and R.exception_level(ps) == 0 and R.mode_name(ps) == "EL0t"
        assert R.saved_pstate_plausible(ps) and regs["pc"] < 1 << 48
        assert R.pt_regs_dict(R.USER_PT_REGS.unpack_from(k.reader.read(addr, size))) == \
            {n: regs[n] for n in R.PT_REGS_NAMES}
    # the 6.1 fallback the gdb layer uses without the type is this kernel's layout
    assert layout == R.PT_REGS_6_1


def test_cpu_context_equals_drgn(td_dump, td_drgn):
    """A sleeping task's cpu_context (model Task.cpu_context and the register set the dump
    server serves) is drgn's ``task->thread.cpu_context``."""
    import drgn
    assert td_dump.kernel.sizeof("struct cpu_context") == R.CPU_CONTEXT_SIZE
    for t in _sleepers(td_dump):
        o = drgn.Object(td_drgn, "struct task_struct", address=t.addr).thread.cpu_context
        want = {n: getattr(o, n).value_() for n in R.CPU_CONTEXT_NAMES}
        raw = t.fields["thread.cpu_context"]
        assert R.decode_cpu_context(raw) == want == t.cpu_context
        regs = R.regs_from_cpu_context(raw)
        assert [regs[i] for i in range(19, 29)] == [want[f"x{i}"] for i in range(19, 29)]
        assert (regs[29], regs[R.SP], regs[R.PC]) == (want["fp"], want["sp"], want["pc"])
        assert regs[:19] == [None] * 19 and regs[R.CPSR:] == [None] * (R.NUM_REGS - R.CPSR)
        assert R.regs_from_cpu_context(raw[:R.CPU_CONTEXT_SIZE - 8]) == [None] * R.NUM_REGS
        assert R.decode_cpu_context(b"") == {}


def test_kaslr_from_vbar(td_dump):
    """VBAR_EL1 at the kernel's own vectors gives the dump's KERNELOFFSET; a VBAR that is not
    2 MiB away from the vectors' link address (the KPTI trampoline's), 0 or unknown proves
    nothing."""
    link = td_dump.sym("vectors") - td_dump.kaslr_offset
    assert td_dump.kaslr_offset % R.KASLR_ALIGN == 0
    assert R.kaslr_from_vbar(td_dump.sym("vectors"), link) == td_dump.kaslr_offset
    assert R.kaslr_from_vbar(link - R.KASLR_ALIGN, link) == -R.KASLR_ALIGN
    assert R.kaslr_from_vbar(td_dump.sym("vectors") + 0x800, link) is None
    assert R.kaslr_from_vbar(0, link) is None and R.kaslr_from_vbar(None, link) is None
    assert R.kaslr_from_vbar(td_dump.sym("vectors"), None) is None


def test_pstate_modes():
    """The architecture's encodings (arch/arm64/include/uapi/asm/ptrace.h PSR_MODE_*)."""
    for m, el in ((0x0, 0), (0x4, 1), (0x5, 1), (0x8, 2), (0x9, 2), (0xc, 3), (0xd, 3)):
        ps = 0x600003c0 | m
        assert R.exception_level(ps) == el and not R.is_aarch32(ps)
        assert R.from_user(ps) == (el == 0)
    assert [R.mode_name(m) for m in (0x0, 0x4, 0x5, 0x8, 0x9)] == ["EL0t", "EL1t", "EL1h", "EL2t", "EL2h"]
    assert R.mode_name(0x10) == "AArch32" and R.mode_name(0x2) == "mode 0x2"
    assert R.is_aarch32(0x10) and R.from_user(0x10) and R.exception_level(0x10) == 0
    assert not R.saved_pstate_plausible(0x9) and not R.saved_pstate_plausible(1 << 36 | 5)
    assert R.saved_pstate_plausible(0x10) and R.saved_pstate_plausible(0x80000005)


# -- the facts exist once ------------------------------------------------------------------------
#: (what, regex over a module's code with comments and strings removed)
ONCE = [
    ("an exception-level test of PSTATE", re.compile(r">>\s*2\s*\)\s*&\s*3\b")),
    ("a PSTATE mode-bit test", re.compile(r"\b(pstate|cpsr|ps|spsr)\b[^\n]*&\s*0x1[0fF]\b", re.I)),
    ("PSTATE mode names", re.compile(r"\bEL[0-3][th]\b")),
    ("the modes of a saved context", re.compile(r"\(\s*0x0\s*,\s*0x4\s*,\s*0x5\s*\)")),
    ("a KASLR offset from VBAR", re.compile(r"\bvbar\b[^\n]*-\s*\w*vectors\b", re.I)),
    ("KASLR's 2 MiB alignment", re.compile(r"%\s*(KASLR_ALIGN|\(?\s*2\s*<<\s*20)")),
    ("a word offset into user_pt_regs or cpu_context", re.compile(r"\b(3[234]|1[23])\s*\*\s*8\b")),
]


_NAME_LITERAL = re.compile(r"""^[rbuRBU]?(['"])(\w+)\1$""")


def _code(text):
    """TEXT without comments and string literals, one logical line per line; a literal that
    is one word (``regs["pstate"]``, ``"EL1h"``) is kept as the bare word."""
    out, line = [], []
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type == tokenize.COMMENT:
            continue
        if tok.type == tokenize.STRING:
            word = _NAME_LITERAL.match(tok.string)
            if word:
                line.append(word.group(2))
            continue
        if tok.type in (tokenize.NEWLINE, tokenize.NL):
            out.append(" ".join(line))
            line = []
        elif tok.string.strip():
            line.append(tok.string)
    out.append(" ".join(line))
    return "\n".join(out)


def _offences(text):
    code = _code(text)
    return [(what, m.group(0)) for what, rx in ONCE for m in rx.finditer(code)]


def test_once_detector_finds_each_copy():
    """The guard below can fail: each way the facts used to be written elsewhere is found,
    and not in comments or strings."""
    bad = {"el": "el = (pstate >> 2) & 3\n",
           "mode": "if regs['pstate'] & 0x1F not in (0, 4, 5): pass\n",
           "a32": "if not cpsr & 0x10: pass\n",
           "names": "MODES = {0x5: 'EL1h'}\n",
           "saved": "ok = mode in (0x0, 0x4, 0x5)\n",
           "vbar": "delta = (vbar - vectors) & M64\n",
           "align": "ok = delta % KASLR_ALIGN == 0\n",
           "words": "pstate = data[off + 33 * 8]\n"}
    for name, text in bad.items():
        assert _offences(text), name
    assert not _offences("# (pstate >> 2) & 3, vbar - vectors\nx = 'EL1h & 0x10'\n")


def test_arm64_facts_decoded_only_in_arm64_regs():
    """PSTATE's exception level and mode, the KASLR offset from VBAR_EL1 and the saved
    register layouts are decoded in gdbkd/arm64/ alone (arm64/regs.py)."""
    found = []
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG)
        if rel.parts[0] == "arm64":
            continue
        found += [f"{rel}: {what}: {text}" for what, text in _offences(path.read_text())]
    assert not found, "\n".join(found)
    assert _offences((PKG / "arm64" / "regs.py").read_text())      # the one place
