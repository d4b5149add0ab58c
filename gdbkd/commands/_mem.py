"""Helpers shared by the memory commands (kmem, search, vtop/ptov, struct): not a command.

Their ``run()`` keeps addresses as ints; :data:`MEMORY_ADDRESSES` names their keys, which
``--json`` shows as "0x…" strings (commands.json_data, at the edge), so ``render()`` never
parses hex back.
"""

import gdb

from . import KdError
from ..kernel.memory import kernel
from ..kernel.symbolize import eval_address
from ..textutil import escape

__all__ = ["address_arg", "kernel", "MEMORY_ADDRESSES"]

#: the memory commands' keys whose int values are addresses or raw words (their json_addresses)
MEMORY_ADDRESSES = frozenset((
    "addr", "object", "slab", "slab_base", "cache_addr", "page", "phys", "virt", "head",
    "mapping", "task", "stack", "start", "end", "caller", "base", "value", "mask", "va", "pa", "ctor",
    "entry", "table", "memory", "pgd", "pgd_pa", "descriptor", "image_va", "hit", "vm", "private", "output", "flags_raw"))


def address_arg(expr: str) -> int:
    """A user's address argument (hex, symbol or gdb expression), or a one-line KdError."""
    try:
        return eval_address(expr) & 0xFFFFFFFFFFFFFFFF
    except (gdb.error, RuntimeError, ValueError) as e:
        raise KdError(f"cannot evaluate {escape(expr)}: {e}")
