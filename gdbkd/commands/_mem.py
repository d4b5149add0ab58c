"""Helpers shared by the memory commands (kmem, search, vtop/ptov, struct): not a command.

Their ``run()`` keeps addresses as ints; :func:`emit` formats them as "0x…" strings
only for ``--json`` (the edge), so ``render()`` never parses hex back.
"""

import gdb

from . import KdError
from ..kernel.memory import kernel
from ..kernel.symbolize import eval_address
from ..textutil import escape

__all__ = ["emit", "hexify", "address_arg", "kernel", "ADDR_KEYS"]

#: keys whose int values are addresses (shown as "0x…" in JSON)
ADDR_KEYS = frozenset((
    "addr", "object", "slab", "slab_base", "cache_addr", "page", "phys", "virt", "head",
    "mapping", "task", "stack", "start", "end", "caller", "base", "value", "mask", "va", "pa",
    "entry", "table", "memory", "pgd", "pgd_pa", "descriptor", "image_va", "hit", "vm", "private", "output", "flags_raw"))


def hexify(data, key=None):
    """``data`` with the ints under :data:`ADDR_KEYS` (at any depth) as "0x…" strings."""
    if isinstance(data, dict):
        return {k: hexify(v, k) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [hexify(v, key) for v in data]
    if key in ADDR_KEYS and isinstance(data, int) and not isinstance(data, bool):
        return f"{data:#x}"
    return data


def emit(data, args):
    """What ``run()`` returns: the data itself for render(), hexified for --json."""
    return hexify(data) if args.json else data


def address_arg(expr: str) -> int:
    """A user's address argument (hex, symbol or gdb expression), or a one-line KdError."""
    try:
        return eval_address(expr) & 0xFFFFFFFFFFFFFFFF
    except (gdb.error, RuntimeError, ValueError) as e:
        raise KdError(f"cannot evaluate {escape(expr)}: {e}")
