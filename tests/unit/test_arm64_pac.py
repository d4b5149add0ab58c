"""gdbkd.arm64.pac: which words the stub unsigns (values from the 6.12 -cpu max test dump)."""

import struct

from gdbkd.arm64.pac import PacStripper

MASK = 0xfff0000000000000                      # NUMBER(KERNELPACMASK) of a 52-bit VA kernel
TEXT = (0xffffa9d0c6e00000, 0xffffa9d0c8000000)
SIGNED = 0x84bfa9d0c7b9ada4                    # a saved LR in __delay's frame record
PLAIN = 0xffffa9d0c7b9ada4


def test_signed_return_address_is_stripped_others_kept():
    p = PacStripper(MASK, [TEXT])
    assert p.strip(SIGNED) == PLAIN
    assert p.strip(PLAIN) == PLAIN                       # already plain
    assert p.strip(0xfff00000025f2500) == 0xfff00000025f2500   # linear-map data pointer
    assert p.strip(0x0000fffffa40b5b0) == 0x0000fffffa40b5b0   # user address (bit 55 clear)
    assert p.strip(0x84bf000000001234) == 0x84bf000000001234   # strips to no code: left alone


def test_strip_bytes_aligned_words_only():
    p = PacStripper(MASK, [TEXT])
    data = struct.pack("<QQQ", 0xfff00000025f2500, SIGNED, 7)
    assert p.strip_bytes(0x1000, data) == struct.pack("<QQQ", 0xfff00000025f2500, PLAIN, 7)
    # the same bytes read from an address 4 bytes off: word boundaries differ, nothing matches
    assert p.strip_bytes(0x1004, data) == data
    # a read starting mid-word still strips the aligned words after it
    assert p.strip_bytes(0x1004, data[4:]) == struct.pack("<QQQ", 0xfff00000025f2500, PLAIN, 7)[4:]


def test_no_mask_no_change():
    p = PacStripper(0, [TEXT])
    assert not p.enabled
    data = struct.pack("<Q", SIGNED)
    assert p.strip_bytes(0, data) == data
