"""The kernel log's lockless ringbuffer (5.10+), without gdb.

``prb`` points to a ``struct printk_ringbuffer`` (commit 896fbe20b4e2, "printk:
use the lockless ringbuffer", v5.10): a descriptor ring (``descs[]`` with
``state_var`` and the text block's logical positions, ``infos[]`` with seq,
ts_nsec, text_len, level, caller_id) and a text data ring whose blocks start with
the descriptor id (one unsigned long) followed by the text. Descriptor state is
the top two bits of ``state_var``: 0 reserved, 1 committed, 2 finalized, 3
reusable; only committed/finalized records whose id matches are read. A block
whose ``begin`` wrap count differs from ``next``'s wrapped around the ring: its
text starts at offset 0. Layout unchanged from 5.10 through 6.12.

The descriptor and info arrays and the data ring are read with one read each.

Before 5.10 the log is ``log_buf``, a ring of variable-length records
(:func:`log_buf_records`): commit 7ff9554bb578 ("printk: convert byte-buffer to
variable-length record buffer", v3.5) introduced it as ``struct log``, commit
62e32ac3505a ("printk: rename struct log to struct printk_log", v3.11) renamed
the struct, commit 896fbe20b4e2 replaced it with the ringbuffer above.
"""

from .layout import LAYOUTS

__all__ = ["Record", "records", "prb_records", "log_buf_records", "LEVELS"]

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


def records(k):
    """Every readable record of the kernel log, oldest first: the lockless ringbuffer when
    the kernel has ``prb`` (5.10+), else ``log_buf``."""
    if k.sym("prb") is not None:
        return prb_records(k)
    return log_buf_records(k)


def prb_records(k, prb_addr=None):
    """Every readable record of the lockless ringbuffer (5.10+) at ``prb_addr`` (default:
    the kernel's ``prb``), oldest first. Raises MemoryFault / ValueError (corrupt header)."""
    if prb_addr is None:
        prb_addr = k.reader.u64(k.need_sym("prb"))     # static in printk.c: one symbol
    field_offset = k.offset
    rb_t = "struct printk_ringbuffer"
    dr = field_offset(rb_t, "desc_ring")
    tr = field_offset(rb_t, "text_data_ring")
    dr_t = "struct prb_desc_ring"
    read_bytes = k.reader.read
    hdr = read_bytes(prb_addr, k.sizeof(rb_t))
    count_bits = _u(hdr, dr + field_offset(dr_t, "count_bits"), 4)
    descs = _u(hdr, dr + field_offset(dr_t, "descs"), 8)
    infos = _u(hdr, dr + field_offset(dr_t, "infos"), 8)
    head_id = _u(hdr, dr + field_offset(dr_t, "head_id"), 8)
    tail_id = _u(hdr, dr + field_offset(dr_t, "tail_id"), 8)
    dt_t = "struct prb_data_ring"
    size_bits = _u(hdr, tr + field_offset(dt_t, "size_bits"), 4)
    data_addr = _u(hdr, tr + field_offset(dt_t, "data"), 8)
    if count_bits > 24 or size_bits > 31:
        raise ValueError(f"printk ringbuffer header looks corrupt (count_bits={count_bits}, "
                         f"size_bits={size_bits})")
    count = 1 << count_bits
    data_size = 1 << size_bits
    dsz, isz = k.sizeof("struct prb_desc"), k.sizeof("struct printk_info")
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


def log_buf_records(k, log_buf_sym=None):
    """Every record of the kernel log before 5.10 (``log_buf``), oldest first. Raises
    MemoryFault, ValueError (no record struct in the debug info).

    The layout, as in 5.0's kernel/printk/printk.c (unchanged v3.5 – v5.9 but for the
    struct's name, see the module docstring): ``static char *log_buf`` points to
    ``log_buf_len`` (u32) bytes of ``struct printk_log`` records, each a header
    ``{u64 ts_nsec; u16 len; u16 text_len; u16 dict_len; u8 facility; u8 flags:5;
    u8 level:3;}`` (5.1+ with CONFIG_PRINTK_CALLER: ``u32 caller_id`` after it, not
    read: the records keep caller_id None) followed by the text and the dictionary,
    ``len`` bytes in all. The bit-fields are not addressable members: they share the
    byte after ``facility``, flags in its low 5 bits, level in its top 3. A header
    with ``len == 0`` (or none fitting before the end) means "wrap to the start".
    Records run from ``log_first_idx`` to ``log_next_idx``, numbered from
    ``log_first_seq`` (u64); ``log_next_seq - log_first_seq`` of them. Without
    ``log_first_seq`` (not in the debug info) seq counts from 0 and the walk stops at
    ``log_next_idx``.

    ``log_buf_sym``: the address of printk.c's ``log_buf`` variable (default: the
    kernel's ``log_buf``; v3.18 – v4.14's kernel/bpf/verifier.c has a static one too,
    drgn's helper notes commits cbd357008604 and e7bf8249e8f1). The buffer is read
    with one read."""
    tname = "struct printk_log"
    hdr = k.sizeof(tname)
    if hdr is None:
        tname = "struct log"
        hdr = k.sizeof(tname)
    if hdr is None:
        raise ValueError("no printk buffer found (neither prb nor log_buf with struct printk_log)")
    lay = k.layout(tname, LAYOUTS["struct printk_log"])      # struct log: the same members
    o_ts, o_len, o_tlen, o_fac = (lay.offset(m) for m in ("ts_nsec", "len", "text_len",
                                                           "facility"))
    u32 = k.reader.u32
    if log_buf_sym is None:
        log_buf_sym = k.need_sym("log_buf")
    buf_addr = k.reader.u64(log_buf_sym)
    buf_len = u32(k.need_sym("log_buf_len"))
    first = u32(k.need_sym("log_first_idx"))
    nxt = u32(k.need_sym("log_next_idx"))
    first_seq, next_seq = k.sym("log_first_seq"), k.sym("log_next_seq")
    if first_seq is not None and next_seq is not None:
        seq = k.reader.u64(first_seq)
        count = k.reader.u64(next_seq) - seq
    else:
        seq, count = 0, None
    buf = k.reader.read(buf_addr, buf_len)
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
