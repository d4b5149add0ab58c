"""Makers of hostile inputs from the real test dumps (shared by the unit, fuzz and bench code).

Nothing here reads a dump through gdbkd: these write files byte by byte, so a
test that opens them exercises the parsers on input they did not make.
"""

import os
import random
import shutil
import struct

__all__ = ["flatten", "patched_copy", "unreadable_task_copy", "FLAT_HEADER"]

FLAT_HEADER = (b"makedumpfile".ljust(16, b"\0") + struct.pack(">qq", 1, 1)).ljust(4096, b"\0")


def flatten(src, dst, records=1000, seed=1, shuffle=True, overlap=False):
    """Write ``src`` (a plain kdump file) to ``dst`` as makedumpfile's flattened format in
    about ``records`` records of random sizes, in random order when ``shuffle``. With
    ``overlap`` every record is preceded by a garbage record over the same bytes and a
    later one spanning two neighbours, so only a last-writer-wins index reads ``src``.
    Returns the number of records written."""
    data = open(src, "rb").read() if not isinstance(src, (bytes, bytearray)) else bytes(src)
    rnd = random.Random(seed)
    avg = max(1, len(data) // records)
    cuts, pos = [], 0
    while pos < len(data):
        n = min(len(data) - pos, rnd.randint(1, 2 * avg))
        cuts.append((pos, n))
        pos += n
    if shuffle:
        rnd.shuffle(cuts)
    out = [FLAT_HEADER]
    count = 0
    for off, n in cuts:
        if overlap:
            junk = rnd.randbytes(min(n + 32, len(data) - off))
            out.append(struct.pack(">qq", off, len(junk)) + junk)
            count += 1
        out.append(struct.pack(">qq", off, n) + data[off:off + n])
        count += 1
    if overlap:      # the real bytes last, for every garbage record above
        for off, n in cuts:
            end = min(off + n + 32, len(data))
            out.append(struct.pack(">qq", off, end - off) + data[off:end])
            count += 1
    out.append(struct.pack(">qq", -1, -1))
    with open(dst, "wb") as f:
        f.write(b"".join(out))
    return count


def patched_copy(src, dst, patches):
    """Copy ``src`` to ``dst`` and write each ``(offset, bytes)`` of ``patches`` over it."""
    shutil.copyfile(src, dst)
    os.chmod(dst, 0o600)
    with open(dst, "r+b") as f:
        for off, b in patches:
            f.seek(off)
            f.write(b)
    return dst


def unreadable_task_copy(src, dst, vmlinux, pick):
    """Copy the plain kdump file ``src`` to ``dst`` with the page holding the task_struct
    that ``pick(dump)`` returns made unreadable (its page descriptor's size set to 0);
    returns the task's address."""
    from gdbkd.target import open_dump
    from gdbkd.dump import open_physical
    with open_dump(src, vmlinux) as d:
        addr = pick(d).addr
        pfn = d.mmu.translate(addr) // d.phys.block_size
    with open_physical(src) as p:
        pos = p._pd_off + p._desc_index(pfn) * 24
    patched_copy(src, dst, [(pos + 8, struct.pack("<I", 0))])
    return addr
