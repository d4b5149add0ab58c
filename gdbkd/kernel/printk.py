"""The kernel log (printk buffer), both formats.

* 5.10+: the lockless ringbuffer, read by the gdb-free model
  (gdbkd/model/printk.py) through kd's reader.
* 3.11 – 5.9: ``log_buf`` of variable-length ``struct printk_log`` records
  (``ts_nsec, len, text_len, dict_len, facility, flags:5, level:3``, text after
  the header) from ``log_first_idx`` to ``log_next_idx``; ``len == 0`` means
  "wrap to the start". Older kernels named the struct ``struct log``.

The whole descriptor/info arrays and the data ring are read with one
``read_memory`` each.
"""

import gdb

from .types import lookup_type, field_offset
from .memory import kernel, read_bytes
from .symbols import vmlinux_symbol_address
from ..model.printk import Record, LEVELS, prb_records
from ..model.reader import MemoryFault

__all__ = ["Record", "records", "boot_wall_clock", "LEVELS"]


def _u(buf, off, size):
    return int.from_bytes(buf[off:off + size], "little")


def _prb_records():
    a = vmlinux_symbol_address("prb")      # static in printk.c: one symbol of that name
    prb_addr = None
    if a is None:
        try:
            prb = gdb.parse_and_eval("'printk.c'::prb")
        except gdb.error:
            prb = gdb.parse_and_eval("prb")
        prb_addr = int(prb) & 0xFFFFFFFFFFFFFFFF
    try:
        return prb_records(kernel(), prb_addr)
    except MemoryFault as e:
        raise gdb.MemoryError(str(e)) from None
    except ValueError as e:
        raise gdb.GdbError(str(e)) from None


def _legacy_records():
    for tname in ("struct printk_log", "struct log"):
        try:
            t = lookup_type(tname)
            break
        except gdb.error:
            t = None
    if t is None:
        raise gdb.GdbError("no printk buffer found (neither prb nor log_buf with struct printk_log)")
    buf_addr = int(gdb.parse_and_eval("(unsigned long)log_buf"))
    buf_len = int(gdb.parse_and_eval("log_buf_len"))
    first = int(gdb.parse_and_eval("log_first_idx"))
    nxt = int(gdb.parse_and_eval("log_next_idx"))
    try:
        seq = int(gdb.parse_and_eval("log_first_seq"))
        count = int(gdb.parse_and_eval("log_next_seq")) - seq
    except gdb.error:
        seq, count = 0, None
    buf = read_bytes(buf_addr, buf_len)
    hdr = t.sizeof
    o_ts = field_offset(tname, "ts_nsec")
    o_len = field_offset(tname, "len")
    o_tlen = field_offset(tname, "text_len")
    o_fac = field_offset(tname, "facility")
    out = []
    idx = first
    limit = count if count is not None else buf_len // hdr
    wraps = 0
    while len(out) < limit:
        if count is None and out and idx == nxt:
            break
        if idx + hdr > buf_len:
            idx, wraps = 0, wraps + 1
        else:
            ln = _u(buf, idx + o_len, 2)
            if ln == 0:                 # wrap marker: the next record is at the start
                idx, wraps = 0, wraps + 1
            else:
                tl = _u(buf, idx + o_tlen, 2)
                lvl = buf[idx + o_fac + 1] >> 5
                out.append(Record(seq, _u(buf, idx + o_ts, 8), lvl, buf[idx + o_fac], None,
                                  buf[idx + hdr: idx + hdr + tl]))
                seq += 1
                idx += ln
                continue
        if wraps > 1:
            break
    return out


def records() -> list:
    """Every readable log record, oldest first."""
    if vmlinux_symbol_address("prb") is not None:
        return _prb_records()
    return _legacy_records()


def boot_wall_clock():
    """Wall-clock time (seconds since the epoch) at boot, as ``tk.offs_real - tk.offs_boot``
    of the timekeeper (ktime_t ns; fields present 3.17 – 6.12), or None."""
    for expr in ("tk_core.timekeeper", "timekeeper"):
        try:
            tk = gdb.parse_and_eval(expr)
            real = int(tk["offs_real"])
            boot = int(tk["offs_boot"])
            return (real - boot) / 1e9
        except gdb.error:
            continue
    return None
