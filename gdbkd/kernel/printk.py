"""The kernel log (printk buffer), both formats.

* 5.10+: the lockless ringbuffer (commit 896fbe20b4e2, "printk: use the lockless
  ringbuffer"). ``prb`` points to a ``struct printk_ringbuffer``: a descriptor
  ring (``descs[]`` with ``state_var`` and the text block's logical positions,
  ``infos[]`` with seq, ts_nsec, text_len, level, caller_id) and a text data ring
  whose blocks start with the descriptor id (one unsigned long) followed by the
  text. Descriptor state is the top two bits of ``state_var``: 0 reserved,
  1 committed, 2 finalized, 3 reusable; only committed/finalized records whose id
  matches are read. A block whose ``begin`` wrap count differs from ``next``'s
  wrapped around the ring: its text starts at offset 0.
* 3.11 – 5.9: ``log_buf`` of variable-length ``struct printk_log`` records
  (``ts_nsec, len, text_len, dict_len, facility, flags:5, level:3``, text after
  the header) from ``log_first_idx`` to ``log_next_idx``; ``len == 0`` means
  "wrap to the start". Older kernels named the struct ``struct log``.

The whole descriptor/info arrays and the data ring are read with one
``read_memory`` each.
"""

import gdb

from .types import lookup_type, read_bytes, vmlinux_symbol_address, field_offset

__all__ = ["Record", "records", "boot_wall_clock", "LEVELS"]

LEVELS = ["emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"]


class Record:
    __slots__ = ("seq", "ts_nsec", "level", "facility", "caller_id", "text")

    def __init__(self, seq, ts_nsec, level, facility, caller_id, text):
        self.seq = seq
        self.ts_nsec = ts_nsec
        self.level = level
        self.facility = facility
        self.caller_id = caller_id
        self.text = text          # bytes, unescaped

    def caller(self) -> str:
        """``T<pid>`` or ``C<cpu>`` (printk's caller_id: bit 31 set = CPU)."""
        if self.caller_id is None:
            return ""
        if self.caller_id & 0x80000000:
            return f"C{self.caller_id & 0x7FFFFFFF}"
        return f"T{self.caller_id}"


def _u(buf, off, size):
    return int.from_bytes(buf[off:off + size], "little")


def _prb_records():
    a = vmlinux_symbol_address("prb")      # static in printk.c: one symbol of that name
    if a is not None:
        prb_addr = int.from_bytes(read_bytes(a, 8), "little")
    else:
        try:
            prb = gdb.parse_and_eval("'printk.c'::prb")
        except gdb.error:
            prb = gdb.parse_and_eval("prb")
        prb_addr = int(prb) & 0xFFFFFFFFFFFFFFFF
    rb_t = "struct printk_ringbuffer"
    dr = field_offset(rb_t, "desc_ring")
    tr = field_offset(rb_t, "text_data_ring")
    dr_t = "struct prb_desc_ring"
    hdr = read_bytes(prb_addr, lookup_type(rb_t).sizeof)
    count_bits = _u(hdr, dr + field_offset(dr_t, "count_bits"), 4)
    descs = _u(hdr, dr + field_offset(dr_t, "descs"), 8)
    infos = _u(hdr, dr + field_offset(dr_t, "infos"), 8)
    head_id = _u(hdr, dr + field_offset(dr_t, "head_id"), 8)
    tail_id = _u(hdr, dr + field_offset(dr_t, "tail_id"), 8)
    dt_t = "struct prb_data_ring"
    size_bits = _u(hdr, tr + field_offset(dt_t, "size_bits"), 4)
    data_addr = _u(hdr, tr + field_offset(dt_t, "data"), 8)
    if count_bits > 24 or size_bits > 31:
        raise gdb.GdbError(f"printk ringbuffer header looks corrupt (count_bits={count_bits}, "
                           f"size_bits={size_bits})")
    count = 1 << count_bits
    data_size = 1 << size_bits
    desc_t = lookup_type("struct prb_desc")
    info_t = lookup_type("struct printk_info")
    dsz, isz = desc_t.sizeof, info_t.sizeof
    sv_off = field_offset("struct prb_desc", "state_var")
    lp_off = field_offset("struct prb_desc", "text_blk_lpos")
    descs_raw = read_bytes(descs, count * dsz)
    infos_raw = read_bytes(infos, count * isz)
    data = read_bytes(data_addr, data_size)
    i_seq = field_offset("struct printk_info", "seq")
    i_ts = field_offset("struct printk_info", "ts_nsec")
    i_len = field_offset("struct printk_info", "text_len")
    i_fac = field_offset("struct printk_info", "facility")
    i_cid = field_offset("struct printk_info", "caller_id")
    # flags:5 level:3 share the byte after facility
    i_lvl = i_fac + 1
    flags_shift = 62
    id_mask = (1 << flags_shift) - 1
    out = []
    did = tail_id & id_mask
    head = head_id & id_mask
    n = 0
    while n <= count:
        idx = did % count
        d = idx * dsz
        sv = _u(descs_raw, d + sv_off, 8)
        state = sv >> flags_shift
        if (sv & id_mask) == did and state in (1, 2):
            begin = _u(descs_raw, d + lp_off, 8)
            nxt = _u(descs_raw, d + lp_off + 8, 8)
            ib = idx * isz
            text_len = _u(infos_raw, ib + i_len, 2)
            if begin & 1 and nxt & 1:          # data-less record
                text = b""
            else:
                if (begin >> size_bits) == (nxt >> size_bits) and begin < nxt:
                    start, end = begin % data_size, begin % data_size + (nxt - begin)
                else:                           # wrapped: the block starts at 0
                    start, end = 0, nxt % data_size
                start += 8                      # block id
                text = data[start:min(end, start + text_len)]
            lvl_byte = infos_raw[ib + i_lvl]
            out.append(Record(_u(infos_raw, ib + i_seq, 8), _u(infos_raw, ib + i_ts, 8),
                              lvl_byte >> 5, infos_raw[ib + i_fac],
                              _u(infos_raw, ib + i_cid, 4), text))
        if did == head:
            break
        did = (did + 1) & id_mask
        n += 1
    return out


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
