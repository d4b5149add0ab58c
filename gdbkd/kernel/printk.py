"""The kernel log (printk buffer), both formats, read by the gdb-free model
(gdbkd/model/printk.py) through kd's reader:

* 5.10+: the lockless ringbuffer ``prb`` (``prb_records``);
* 3.5 – 5.9: ``log_buf`` of variable-length ``struct printk_log`` records
  (``struct log`` before 3.11; ``log_buf_records``).

This module only finds the one variable of each that gdb must name by its file
(printk.c's static ``prb`` / ``log_buf`` when the vmlinux has several of that name)
and turns the model's errors into gdb's.
"""

import gdb

from .memory import kernel
from .symbols import symbol_table, vmlinux_symbol_address
from ..errors import GdbkdError
from ..model.printk import Record, LEVELS, prb_records, log_buf_records
from ..model.reader import MemoryFault

__all__ = ["Record", "records", "LEVELS"]


def _model(fn, *args):
    try:
        return fn(kernel(), *args)
    except MemoryFault as e:
        raise gdb.MemoryError(str(e)) from None
    except ValueError as e:
        raise gdb.GdbError(str(e)) from None


def _prb_records():
    a = vmlinux_symbol_address("prb")      # static in printk.c: one symbol of that name
    prb_addr = None
    if a is None:
        try:
            prb = gdb.parse_and_eval("'printk.c'::prb")
        except gdb.error:
            prb = gdb.parse_and_eval("prb")
        prb_addr = int(prb) & 0xFFFFFFFFFFFFFFFF
    return _model(prb_records, prb_addr)


def _legacy_records():
    log_buf = None
    try:
        several = len(set(symbol_table().values("log_buf"))) > 1
    except (gdb.error, GdbkdError):
        several = False
    if several:        # v3.18 - v4.14: kernel/bpf/verifier.c has a static log_buf too
        try:
            log_buf = int(gdb.parse_and_eval("(unsigned long)&'printk.c'::log_buf"))
        except gdb.error:
            pass
    return _model(log_buf_records, log_buf)


def records() -> list:
    """Every readable log record, oldest first."""
    if vmlinux_symbol_address("prb") is not None:
        return _prb_records()
    return _legacy_records()
