"""Walking ``struct list_head`` lists with the checks a debugger needs.

A list in a crashed kernel is often the bug itself, so the walk stops with a
reason instead of wandering off: a NULL pointer, ``LIST_POISON1`` /
``LIST_POISON2`` (``0x100`` / ``0x122`` + ``POISON_POINTER_DELTA``, which is
``CONFIG_ILLEGAL_POINTER_VALUE`` = ``0xdead000000000000`` on arm64 and x86-64,
include/linux/poison.h — the values ``list_del()`` leaves in a removed entry),
an unreadable entry, or a cycle that never returns to the head.

With ``check_prev`` the walk also checks every back link against the way it
came, as drgn's ``validate_list`` and scripts/gdb's ``lx-list-check`` do: the
``prev`` of each entry it reaches (``next`` when walking backwards), and the
head's once the walk is back at it. The forward chain is still followed; the
first disagreement is kept (``ListWalk.link_error``): the trace of a
``list_add``/``list_del`` that raced, or of a write through a stale pointer.

The one list walker: kd commands, the task and module lists of the model, and
the dump server all walk with it. No gdb import.
"""

from .reader import MemoryFault

__all__ = ["ListWalk", "walk_list", "poison_name", "LIST_POISON1", "LIST_POISON2"]

POISON_POINTER_DELTA = 0xdead000000000000
LIST_POISON1 = 0x100 + POISON_POINTER_DELTA
LIST_POISON2 = 0x122 + POISON_POINTER_DELTA


def poison_name(v: int):
    if v in (LIST_POISON1, 0x100):
        return "LIST_POISON1"
    if v in (LIST_POISON2, 0x122):
        return "LIST_POISON2"
    return None


class ListWalk:
    """Result of a walk: ``nodes`` (list_head addresses, head excluded) and ``stop``
    (None when the walk came back to the head; else a one-line reason).

    With ``check_prev``: ``link_error`` is the first back link that disagrees with
    the walk (one line, else None) and ``bad_link`` the same as a dict: ``node``
    (the list_head), ``field`` ("prev", or "next" for a backward walk), ``value``
    (what it holds), ``expected`` (the node the walk came from)."""

    def __init__(self):
        self.nodes = []
        self.stop = None
        self.bad_value = None
        self.recovered = 0
        self.link_error = None
        self.bad_link = None


def walk_list(reader, head: int, include_head=False, limit=1000000, direction="next",
              entry_offset=0, recover=False, check_prev=False, read_head=None) -> ListWalk:
    """Follow ``->next`` (or ``->prev``) from the list_head at ``head`` until it returns
    (reading through ``reader``, a :class:`gdbkd.model.reader.Reader`).

    ``include_head``: ``head`` is itself an entry (crash's ``list ADDR`` without -H).
    ``entry_offset``: offset of the list_head in its container, for messages.
    ``recover``: when the walk breaks (an unreadable or corrupt entry), walk the other
    way from the head too and add the entries found there (after the others, in list
    order); ``stop`` still says where it broke, ``recovered`` how many came back.
    ``check_prev``: check each back link against the walk (module docstring); the
    list_heads are then read 16 bytes at a time, so it costs no extra read.
    ``read_head``: a function giving the 16 bytes (next, prev) of the list_head at an
    address, for a caller that reads each container whole anyway (the task list reads
    every task_struct it walks: one read per entry instead of two); it raises
    MemoryFault like the reader. The walk back of ``recover`` reads through ``reader``."""
    w = _walk(reader, head, include_head, limit, direction, entry_offset, check_prev, read_head)
    w.recovered = 0
    if recover and w.stop and not w.stop.startswith("stopped after"):
        back = _walk(reader, head, False, limit, "prev" if direction == "next" else "next",
                     entry_offset)
        known = set(w.nodes)
        tail = []
        for n in back.nodes:
            if n in known:
                break
            tail.append(n)
        tail.reverse()
        # the node the forward walk could not read past may itself be unreadable
        w.nodes.extend(tail)
        w.recovered = len(tail)
    return w


def _name(node, entry_offset):
    return f"{node:#x}" if not entry_offset else f"{node - entry_offset:#x} (list_head {node:#x})"


def _link_mismatch(w, node, back, came_from, direction, entry_offset):
    """Record the first back link of NODE that is not CAME_FROM."""
    if w.bad_link is not None or back == came_from:
        return
    field = "prev" if direction == "next" else "next"
    w.bad_link = {"node": node, "field": field, "value": back, "expected": came_from}
    w.link_error = (f"entry {_name(node, entry_offset)}: ->{field} is {back:#x}, but the walk "
                    f"reached it from {came_from:#x} (a racy list_add/list_del, or a stale write)")


def _walk(reader, head, include_head, limit, direction, entry_offset, check_prev=False,
          read_head=None) -> ListWalk:
    off = 0 if direction == "next" else 8
    w = ListWalk()
    seen = {head: -1}
    if include_head:
        w.nodes.append(head)
        seen[head] = 0
    cur = head
    came_from = None          # the node before cur in the walk (None: cur is the head)
    head_back = None          # the head's own back link, checked when the walk returns
    while True:
        back = None
        try:
            if read_head is not None:
                raw = read_head(cur)
                nxt = int.from_bytes(raw[off:off + 8], "little")
                if check_prev:
                    back = int.from_bytes(raw[8 - off:16 - off], "little")
            elif check_prev:
                try:
                    raw = reader.read(cur, 16)
                    nxt = int.from_bytes(raw[off:off + 8], "little")
                    back = int.from_bytes(raw[8 - off:16 - off], "little")
                except MemoryFault:      # the back link alone unreadable: follow what can be
                    nxt = reader.u64(cur + off)
            else:
                nxt = reader.u64(cur + off)
        except MemoryFault:
            w.stop = f"cannot read the list_head at {cur:#x}"
            break
        if back is not None:
            if came_from is None:
                head_back = back
            else:
                _link_mismatch(w, cur, back, came_from, direction, entry_offset)
        ptr = f"{cur:#x}->{direction}"
        what = _name(cur, entry_offset)
        pname = poison_name(nxt)
        if pname:
            w.stop = (f"{ptr} is {pname} ({nxt:#x}): entry {what} was removed with "
                      f"list_del() but is still reachable")
            w.bad_value = nxt
            break
        if nxt == 0:
            w.stop = f"{ptr} is NULL"
            w.bad_value = 0
            break
        if nxt == head:
            if head_back is not None:
                _link_mismatch(w, head, head_back, cur, direction, entry_offset)
            break
        if nxt in seen:
            w.stop = (f"cycle: {ptr} = {nxt:#x}, entry #{seen[nxt] + 1} again, without "
                      f"returning to the head {head:#x}")
            w.bad_value = nxt
            break
        if len(w.nodes) >= limit:
            w.stop = f"stopped after {limit} entries"
            break
        seen[nxt] = len(w.nodes)
        w.nodes.append(nxt)
        came_from, cur = cur, nxt
    return w


def list_entries(reader, head: int, link_offset: int, limit=1 << 20):
    """(container addresses, stop reason or None) of the list at ``head`` whose entries
    link through the list_head at ``link_offset`` in their container."""
    w = walk_list(reader, head, limit=limit, entry_offset=link_offset)
    return [n - link_offset for n in w.nodes], w.stop
