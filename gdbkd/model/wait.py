"""Wait queues without gdb (crash's ``waitq``).

``struct wait_queue_head`` {``lock``, ``head``} holds ``struct
wait_queue_entry`` {``flags``, ``private`` (the task for the default wake
functions), ``func``, ``entry``} on the list ``head`` (renamed from
``task_list`` in 4.13, commit 2055da97389a; 5.10, 6.1 and 6.12 all have
``head``/``entry``). ``private`` is a task only when ``func`` is one of the
task wake functions (``default_wake_function``, ``autoremove_wake_function``,
``woken_wake_function``, ``wake_bit_function``...): callers that queue
something else (epoll, io_uring) put their own data there.
"""

from .lists import Entries, list_entries
from .reader import MemoryFault

__all__ = ["waitqueue_entries"]


def waitqueue_entries(k, wq: int):
    """([{entry, flags, private, func}], stop reason) of the wait_queue_head at ``wq``; the
    list is an :class:`gdbkd.model.lists.Entries` whose ``damage`` says what is wrong
    with the queue (walked back from its head past a break, each entry once)."""
    head = wq + k.offset("struct wait_queue_head", "head")
    first = k.reader.u64(head)
    if k.reader.try_read(first + 8, 8) != head.to_bytes(8, "little"):
        raise MemoryFault(wq, f"{wq:#x} is not a struct wait_queue_head: its head.next "
                              f"({first:#x}) does not point back to it")
    el = k.layout("struct wait_queue_entry", ["flags", "private", "func", "entry"])
    ents, stop = list_entries(k.reader, head, el.offset("entry"),
                              name=f"wait queue {wq:#x} (wait_queue_head.head)")
    out = Entries(damage=ents.damage)
    for e in ents:
        f = el.read(k.reader, e)
        out.append({"entry": e, "flags": f["flags"], "private": f["private"], "func": f["func"]})
    return out, stop
