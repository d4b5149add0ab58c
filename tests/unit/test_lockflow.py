"""gdbkd/analysis/lockflow.py on real code: vprintk_emit of the course's 5.0 kernel
(profile rlk-5.0, built -O0: every inline function keeps its locals in stack slots), the
bytes of its vmlinux at 0xffff0000102946a0. It takes ``logbuf_lock`` through the
inlined ``logbuf_lock_irqsave`` (``__raw_spin_lock``: DWARF says its block spans
[+0xec, +0x334), the slow-path call inside) and releases it with the inlined
``queued_spin_unlock``: ``strb wzr, [sp, #311]; add x0, sp, #0x137; ldrb w1, [x0];
ldr x0, [sp, #184]; stlrb w1, [x0]`` (``smp_store_release`` of a byte local holding 0)."""

from gdbkd.analysis import fault as F
from gdbkd.analysis import lockflow

BASE = 0xffff0000102946a0
LOGBUF_LOCK = 0xffff0000121af178
VPRINTK_EMIT = bytes.fromhex(
    "fd7baca9fd030091f30b00f9e05f00b9e15b00b9e22b00f9e32700f9e42300f9f30305aa004138d500a01391"
    "010040f9e19f00f9010080d2ff830139e05b40b91f080031a100005400008012e05b00b920008052e0830139"
    "e05b40b974f0ff97e0ef00b000703e91000040b91f000071e0079f1a001c0012001c40921f0000f120020054"
    "e0ef00b000703e91000040b9e08700b907000014002b91d22008a0f2d40857941f2003d5de0605941f2003d5"
    "e08740b901040051e18700b91f000071c1feff541f2003d520423bd5df4203d5e09700f9e09740f9e04b00f9"
    "98160094c0f800f000e00591e06300f9e06340f9e06700f9e06740f9e06b00f9ff8b00b9e0230291e06f00f9"
    "e06f40f9000040b9e06f00b9e16b40f9e06f40b9e17300f9e07700f9200080d2e07b00f980008052e07300b9"
    "e07340b91f200071a0090054e07340b91f2000712c0b0054e07340b91f100071a0060054e07340b91f100071"
    "6c0a0054e07340b91f040071a0000054e07340b91f080071e00200544c000014e07740f9021c0012e07b40f9"
    "011c0012e07340f9e07f00f9e003022ae08b0139e003012ae08f0139e07f40f9e18b4139e28f4139e47f40f9"
    "e37f40f9cd0457941f2003d51f2003d5001c0012001c409237000014e07740f9023c0012e07b40f9013c0012"
    "e07340f9e08300f9e003022ae0cb0079e003012ae0cf0079e08340f9e1cb4079e2cf4079e48340f9e38340f9"
    "d20457941f2003d51f2003d5003c0012003c409222000014e07740f9e203002ae07b40f9e103002ae07340f9"
    "e08700f9e27700b9e17b00b9e08740f9e17740b9e27b40b9e48740f9e38740f9d90457941f2003d51f2003d5"
    "e003002a10000014e07340f9e08b00f9e07740f9e08f00f9e07b40f9e09300f9e08b40f9e18f40f9e29340f9"
    "e48b40f9e38b40f9df0457941f2003d51f2003d501000014e07f00b9e07f40b9e08300b9e16f40b9e08340b9"
    "3f00006be0079f1a001c0012001c40921f0000f180000054e06f40f9e18340b9010000b9e16f40b9e08340b9"
    "3f00006be0179f1a001c0012001c40921f0000f1e0079f1a001c0012001c40921f0000f1600000541f2003d5"
    "05000014e08b40b9e103002ae06b40f9493aff971f2003d51f2003d5c0f800f000400b91000040f9e04f00f9"
    "e2830091e30313aa600440a9400400a9600441a9400401a9e0830091e50300aae42340f9e32740f9e22b40f9"
    "e15b40b9e05f40b994feff97e06b00b9c0f800f000400b91000040f9e14f40f93f0000ebe0079f1ae0870139"
    "c0f800f000e00591e05700f9e05740f9e05b00f9e05b40f9e05f00f9ffdf0439e0df049101004039e05f40f9"
    "01fc9f081f2003d51f2003d51f2003d5f9150094e04b40f9e05300f9e05340f920421bd51f2003d5e0834139"
    "00000052001c00121f00007100010054e08741391f000071a000005418faff971f0000714000005475010094"
    "e08741391f00007140000054f3070094e06b40b9e103002a004138d500a01391e39f40f9020040f9630002eb"
    "020080d24000005499d6f997e003012af30b40f9fd7bd4a8c0035fd61f2003d51f2003d5")
CALLEES = {
    0xffff00001010a558: "__stack_chk_fail",
    0xffff0000102632ec: "queued_spin_lock_slowpath",
    0xffff0000102908cc: "boot_delay_msec",
    0xffff000010293310: "console_trylock_spinning",
    0xffff000010294468: "vprintk_store",
    0xffff000010295090: "console_unlock",
    0xffff000010296a98: "wake_up_klogd",
    0xffff00001029a1dc: "__printk_safe_enter",
    0xffff00001029a25c: "__printk_safe_exit",
    0xffff0000103d62c0: "touch_softlockup_watchdog",
    0xffff000011855b90: "__ll_sc___cmpxchg_case_acq_8",
    0xffff000011855bf8: "__ll_sc___cmpxchg_case_acq_16",
    0xffff000011855c60: "__ll_sc___cmpxchg_case_acq_32",
    0xffff000011855cb8: "__ll_sc___cmpxchg_case_acq_64",
    0xffff000011856a90: "__const_udelay",
}
#: the inlined __raw_spin_lock (DWARF): leaving it takes logbuf_lock
INLINE = [(BASE + 0xec, BASE + 0x334, LOGBUF_LOCK, "spinlock", BASE + 0xec)]


def _flow():
    return lockflow.Flow(F.decode(VPRINTK_EMIT, BASE), CALLEES.get, INLINE)


def test_logbuf_lock_held_around_vprintk_store():
    fl = _flow()
    assert fl.call_x0(BASE + 0x328) == ("queued_spin_lock_slowpath", LOGBUF_LOCK)
    assert fl.held_before(BASE + 0x328) == {}          # the slow path's lock: not yet held
    assert fl.held_before(BASE + 0x378) == {LOGBUF_LOCK: ("spinlock", BASE + 0xec)}   # bl vprintk_store


def test_byte_local_unlock_releases_it():
    """The release through a byte stack slot: from the stlrb on, and at console_unlock's
    call (where 5.0's soft-lockup report printing spins), logbuf_lock is not held."""
    fl = _flow()
    assert LOGBUF_LOCK in fl.held_before(BASE + 0x3c8)   # the stlrb itself: not yet run
    for off in (0x3cc, 0x3d8, 0x41c):                     # after it; bl __printk_safe_exit; bl console_unlock
        assert fl.held_before(BASE + off) == {}, hex(off)
    assert CALLEES[int(F.decode(VPRINTK_EMIT[0x41c:0x420], BASE + 0x41c)[0].op_str.lstrip("#"), 0)] == "console_unlock"


def test_narrow_slots_do_not_alias_wide_ones():
    """A byte slot is read back by a load of its size only; a wider load of the same
    address finds nothing (its other bytes are unknown); a narrow load of a known 64-bit
    slot reads its low bytes; a store over part of a slot forgets it. (as: strb wzr,
    [sp, #311]; ldr x1, [sp, #304]; ldrb w2, [sp, #311]; mov x3, #0x105; str x3, [sp, #8];
    ldrb w4, [sp, #8]; ldrh w6, [sp, #8]; strh w3, [sp, #9]; ldrb w5, [sp, #8]; ret)"""
    code = bytes.fromhex("ffdf0439e19b40f9e2df4439a32080d2e30700f9e4234039e6134079e3930078e5234039c0035fd6")
    fl = lockflow.Flow(F.decode(code, 0x1000), {}.get)
    ret = fl.states[0x1024].consts
    assert "x1" not in ret and ret["x2"] == 0 and ret["x4"] == 5 and ret["x6"] == 0x105
    assert "x5" not in ret and ("sp", 8) not in ret and ret[("sp", 311, 1)] == 0
