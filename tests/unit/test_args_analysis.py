"""gdbkd/analysis/args.py on real code: lab 6's lab6_fib_lookup and lab6_route as gcc 12
built them for Debian's 6.1 (bytes of the .ko's .text at 0x84 and 0x120, unrelocated:
the bl targets are the relocation placeholders)."""

from gdbkd.analysis import args as A
from gdbkd.analysis import fault as F

FIB_LOOKUP = bytes.fromhex(
    "1f2003d51f2003d53f2303d5fd7bbda9fd030091f35301a9f30300aaf403012af51300f9551c0012e003012a"
    "e103152ad3ffff97620a40b9610a40f90300020a63f07dd32200038b206863b81f00146b01010054400440b9"
    "f35341a9a002000bf51340f9fd7bc3a8bf2303d5c0035fd6e103142ae00313aacdffff97f35341a900008052"
    "f51340f9fd7bc3a8bf2303d5c0035fd6")
ROUTE = bytes.fromhex(
    "1f2003d51f2003d53f2303d5fd7bbda90400009084000091fd030091250c409284200091f35301a9f40300aa"
    "f55b02a9351c00125300034a807865f8e203152a810a40b9b502030b6142014ac6ffff971300134a930e00b9"
    "a002000bf35341a9f55b42a9fd7bc3a8bf2303d5c0035fd6")


def test_prologue_saves_relative_to_x29():
    ins = F.decode(FIB_LOOKUP, 0x84)
    p = A.prologue(ins, 0x84, 0xb8)            # the return address of `bl lab6_fib_hash`
    assert p.record_insn == "stp x29, x30, [sp, #-0x30]!" and p.frame_size == 0x30
    assert p.x29_off == -0x30 and p.x29_insn == "mov x29, sp"
    assert {r: (s.base, s.off) for r, s in p.saves.items()} == \
        {"x19": ("x29", 16), "x20": ("x29", 24), "x21": ("x29", 32)}
    # x19 is saved before `mov x19, x0` overwrites it; a save after a write would not count
    assert p.written["x19"].text == "mov x19, x0"
    assert p.why_end.startswith("`bl ")


def test_prologue_stops_before_the_pc():
    ins = F.decode(FIB_LOOKUP, 0x84)
    p = A.prologue(ins, 0x84, 0x9c)            # interrupted before `str x21`
    assert set(p.saves) == {"x19", "x20"} and p.why_end == "the pc"


def test_last_write_and_moves():
    ins = F.decode(ROUTE, 0x120)
    kind, d = A.last_write(ins, 0x170, "x20", 0x120, arrived_by_call=True)
    assert kind == "def" and A.mov_source(d) == ("x0", 64)
    kind, d = A.last_write(ins, d.addr, "x0", 0x120)
    assert kind == "entry"                     # x20 holds lab6_route's pkt as passed
    kind, d = A.last_write(ins, 0x170, "x21", 0x120, arrived_by_call=True)
    assert kind == "def" and d.text == "add w21, w21, w3" and A.mov_source(d) is None
    kind, why = A.last_write(ins, 0x170, "x1", 0x120, arrived_by_call=True)
    assert kind == "unknown" and "caller-saved" in why
    kind, d = A.last_write(ins, 0x16c, "x2", 0x120)      # at the bl: x2 = proto & 0xff
    assert kind == "def" and A.mov_source(d) == ("x21", 32)
    and_ = next(i for i in ins if i.text == "and w21, w1, #0xff")
    assert A.mov_source(and_) == ("x1", 8)


def test_writes_err_towards_more():
    ins = {i.text: i for i in F.decode(FIB_LOOKUP + ROUTE, 0)}
    assert A.writes(ins["ldp x19, x20, [sp, #0x10]"]) >= {"x19", "x20"}
    assert "sp" in A.writes(ins["ldp x29, x30, [sp], #0x30"])
    assert A.writes(next(i for t, i in ins.items() if t.startswith("bl "))) >= A.CALLER_SAVED
    assert A.add_imm(next(i for t, i in ins.items() if t.startswith("stp x29"))) is None


def test_last_write_is_the_one_walk_for_args_and_the_fault_explanation():
    """kd analyze's fault explanation (kernel/explain.py) and kd bt --args share last_write:
    a conditional branch falls through (``b.ne`` at 0xd4 does not hide ``add x2`` from the
    ``ldr w0, [x2, #4]`` after it), a branch target or an instruction after ``ret`` ends
    the proof, and so does any indirect branch in the function."""
    ins = F.decode(FIB_LOOKUP, 0x84)
    kind, d = A.last_write(ins, 0xd8, "x2")
    assert kind == "def" and d.text == "add x2, x1, x3"
    assert A.last_write(ins, 0xd8, "x2", 0x84, False, A.branch_targets(ins)) == (kind, d)
    kind, why = A.last_write(ins, 0xf8, "x19")
    assert kind == "unknown" and "0xf4 is a branch target" in why
    kind, why = A.last_write(ins, 0xf4, "x19", arrived_by_call=True)
    assert kind == "unknown" and "follows `ret`" in why
    assert A.last_write(ins, 0x9c, "x0") == ("entry", None)
    with_br = F.decode(FIB_LOOKUP + bytes.fromhex("20001fd6"), 0x84)       # + br x1
    assert A.branch_targets(with_br).indirect.text == "br x1"
    kind, why = A.last_write(with_br, 0xd8, "x2")
    assert kind == "unknown" and "indirect branch (`br x1` at 0x118)" in why


def test_last_write_sees_writes_capstone_omits():
    """``ldclrl x1, x1, [x19]`` (6.1's node_reclaim: clear_bit's LSE atomic) writes x1, which
    capstone's register list leaves out: the walk finds it, not the ``mov x1, #4`` before."""
    ins = F.decode(bytes.fromhex("810080d2611261f8"), 0x1000)
    assert "x1" not in ins[1].writes
    kind, d = A.last_write(ins, 0x1008, "x1")
    assert kind == "def" and d.text == "ldclrl x1, x1, [x19]"
