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

Where a walk broke is kept as data (:attr:`ListWalk.broken`) and turned into
:class:`ListProblem` (:meth:`ListWalk.problems`): one per damaged list, naming
the list, the entry whose link is wrong (and its owner where the caller knows
it), what was wrong and how many entries the walk back from the head
recovered. kd prints each as one line and puts them in ``problems`` in
``--json``: a damaged list is evidence (a use-after-free, a double
``list_del``, a racy ``list_add``), never repaired silently.

The one list walker: kd commands, the task and module lists of the model, and
the dump server all walk with it. The ``list_head`` layout (``next`` then
``prev``, 16 bytes) is unchanged from 2.6 through 6.12. No gdb import.
"""

from dataclasses import dataclass

from .reader import MemoryFault

__all__ = ["ListWalk", "ListProblem", "Entries", "tree_problem", "stop_problem",
           "walk_list", "list_entries", "walk_entries", "poison_name",
           "LIST_POISON1", "LIST_POISON2", "DAMAGE_KINDS"]

#: what ``ListProblem.kind`` can be: the words kd prints and --json carries
DAMAGE_KINDS = ("loop", "null", "poison", "unreadable", "prev", "bound")

POISON_POINTER_DELTA = 0xdead000000000000
LIST_POISON1 = 0x100 + POISON_POINTER_DELTA
LIST_POISON2 = 0x122 + POISON_POINTER_DELTA


def poison_name(v: int):
    if v in (LIST_POISON1, 0x100):
        return "LIST_POISON1"
    if v in (LIST_POISON2, 0x122):
        return "LIST_POISON2"
    return None


@dataclass
class ListProblem:
    """One damaged list, as kd reports it.

    ``list``: which list ("task list (init_task.tasks)"); ``kind``: one of
    :data:`DAMAGE_KINDS`; ``entry``: the container whose link is wrong (None: the
    head's own); ``node``: its list_head; ``owner``: the entry's name where the
    caller knows it ("pid 5 (kworker/0:1)", "module ext4"), already escaped;
    ``value``: what the link holds; ``detail``: the walker's one-line reason;
    ``recovered``: entries found by walking back from the head (after the break);
    ``entries``: entries the walk kept in all (each once)."""

    list: str
    kind: str
    node: int
    entry: int = None
    owner: str = None
    value: int = None
    detail: str = ""
    recovered: int = 0
    entries: int = 0

    def where(self) -> str:
        if self.entry is None:
            return f"at its head {self.node:#x}"
        return f"at {self.entry:#x}" + (f" ({self.owner})" if self.owner else "")

    def line(self) -> str:
        """One line: which list, where, what was wrong, what the recovery found."""
        out = f"{self.list} damaged {self.where()}: {self.detail}"
        if self.kind == "bound":
            return out + f" (a bound: {self.entries} entries shown)"
        if self.kind == "prev":
            return out
        n = f"{self.entries} {'entry' if self.entries == 1 else 'entries'}"
        if self.recovered:
            return out + (f"; {self.recovered} {'entry' if self.recovered == 1 else 'entries'} "
                          f"recovered by walking back from the head ({n} in all, each once)")
        return out + f"; nothing recovered by walking back ({n} in all)"

    def to_json(self) -> dict:
        return {"list": self.list, "kind": self.kind, "node": f"{self.node:#x}",
                "entry": f"{self.entry:#x}" if self.entry is not None else None,
                "owner": self.owner,
                "value": f"{self.value:#x}" if self.value is not None else None,
                "detail": self.detail, "recovered": self.recovered, "entries": self.entries,
                "line": self.line()}

    __str__ = line


class Entries(list):
    """What a walk of a kernel list found (each entry once), with ``damage``: the
    list's :class:`ListProblem` (none when it is whole)."""

    def __init__(self, items=(), damage=()):
        super().__init__(items)
        self.damage = list(damage)


class ListWalk:
    """Result of a walk: ``nodes`` (list_head addresses, head excluded) and ``stop``
    (None when the walk came back to the head; else a one-line reason).

    ``broken``: where the walk broke, as data (None when it did not): ``kind`` (one of
    :data:`DAMAGE_KINDS` but "prev"), ``node`` (the list_head whose link is wrong:
    for "unreadable", the one whose link leads to the unreadable address), ``value``
    (what that link holds).

    With ``check_prev``: ``link_error`` is the first back link that disagrees with
    the walk (one line, else None) and ``bad_link`` the same as a dict: ``node``
    (the list_head), ``field`` ("prev", or "next" for a backward walk), ``value``
    (what it holds), ``expected`` (the node the walk came from)."""

    def __init__(self):
        self.nodes = []
        self.stop = None
        self.bad_value = None
        self.broken = None
        self.recovered = 0
        self.link_error = None
        self.bad_link = None
        self.head = None
        self.entry_offset = 0

    def entries(self) -> list:
        """The containers of the nodes (``node - entry_offset``), each once. An entry
        the walk could not read (the target of a wild pointer) is left out."""
        bad = self.broken["value"] if self.broken and self.broken["kind"] == "unreadable" \
            else None
        return [n - self.entry_offset for n in self.nodes if n != bad]

    def problems(self, name: str, describe=None) -> list:
        """The :class:`ListProblem` of this walk (none when the list is whole) for the
        list called ``name``; ``describe(entry address)`` names an entry's owner (an
        escaped string or None; it may raise MemoryFault)."""
        out = []
        off = self.entry_offset

        def problem(kind, node, value, detail):
            entry = None if node == self.head else node - off
            owner = None
            if entry is not None and describe is not None:
                try:
                    owner = describe(entry)
                except MemoryFault:
                    owner = None
            return ListProblem(list=name, kind=kind, node=node, entry=entry, owner=owner,
                               value=value, detail=detail, recovered=self.recovered,
                               entries=len(self.entries()))
        if self.broken is not None:
            b = self.broken
            out.append(problem(b["kind"], b["node"], b["value"], self.stop))
        if self.bad_link is not None:
            b = self.bad_link
            out.append(problem("prev", b["node"], b["value"], self.link_error))
        return out


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
    if recover and w.broken is not None and w.broken["kind"] != "bound":
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
    w.head, w.entry_offset = head, entry_offset
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
        except MemoryFault as e:
            w.stop = f"cannot read the list_head at {cur:#x}"
            if came_from is not None:
                w.stop += f" ({came_from:#x}->{direction} points there: {e.reason})"
                w.broken = {"kind": "unreadable", "node": came_from, "value": cur}
            else:
                w.stop += f": {e.reason}"
                w.broken = {"kind": "unreadable", "node": cur, "value": None}
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
            w.broken = {"kind": "poison", "node": cur, "value": nxt}
            break
        if nxt == 0:
            w.stop = f"{ptr} is NULL"
            w.bad_value = 0
            w.broken = {"kind": "null", "node": cur, "value": 0}
            break
        if nxt == head:
            if head_back is not None:
                _link_mismatch(w, head, head_back, cur, direction, entry_offset)
            break
        if nxt in seen:
            again = "itself" if nxt == cur else f"entry #{seen[nxt] + 1} again"
            w.stop = (f"cycle: {ptr} = {nxt:#x}, {again}, without "
                      f"returning to the head {head:#x}")
            w.bad_value = nxt
            w.broken = {"kind": "loop", "node": cur, "value": nxt}
            break
        if len(w.nodes) >= limit:
            w.stop = f"stopped after {limit} entries"
            w.broken = {"kind": "bound", "node": cur, "value": nxt}
            break
        seen[nxt] = len(w.nodes)
        w.nodes.append(nxt)
        came_from, cur = cur, nxt
    return w


def tree_problem(name: str, root: int, walk) -> ListProblem:
    """The ListProblem of a tree walk that stopped early (a
    :class:`gdbkd.model.trees.TreeWalk` whose ``stop`` is set): a tree has no way back,
    so nothing is recovered; ``kind`` from the walk's reason."""
    return stop_problem(name, root, walk.stop, len(walk.entries))


def stop_problem(name: str, root: int, stop: str, entries: int = 0) -> ListProblem:
    """The ListProblem of a walk without a way back (a tree, a NULL-terminated chain)
    that stopped early with the reason STOP, at the structure rooted at ROOT."""
    kind = "loop" if stop.startswith(("loop", "cycle")) else \
        "bound" if stop.startswith("stopped after") else \
        "poison" if "poison" in stop.lower() else "unreadable"
    return ListProblem(list=name, kind=kind, node=root, detail=stop, entries=entries)


def walk_entries(reader, head: int, link_offset: int, limit=1 << 20, read_head=None) -> ListWalk:
    """The walk of the list at ``head`` whose entries link through the list_head at
    ``link_offset`` in their container, as the model's lists are walked: with the back
    links checked and, when it breaks, the entries recovered from the head backwards
    (each once). ``entries()`` gives the containers, ``problems(name)`` what is wrong."""
    return walk_list(reader, head, limit=limit, entry_offset=link_offset, recover=True,
                     check_prev=True, read_head=read_head)


def list_entries(reader, head: int, link_offset: int, limit=1 << 20, name="list", describe=None):
    """(container addresses, stop reason or None) of the list at ``head`` whose entries
    link through the list_head at ``link_offset`` in their container (:func:`walk_entries`).
    The addresses are an :class:`Entries`: its ``damage`` names the list ``name`` and its
    entries with ``describe`` (see :meth:`ListWalk.problems`)."""
    w = walk_entries(reader, head, link_offset, limit)
    return Entries(w.entries(), w.problems(name, describe)), w.stop
