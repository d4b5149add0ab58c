"""The one select-and-restore helper (pwndbg's ``selection()``): run a body with another
gdb thread (and its newest frame) selected, then give the user back exactly the thread
and frame they had, even when the body fails."""

import contextlib

import gdb

__all__ = ["selection"]


@contextlib.contextmanager
def selection(thread=None):
    """Select ``thread`` (None: keep the current one) for the body; restore after."""
    sel = gdb.selected_thread()
    try:
        frame = gdb.selected_frame() if sel is not None else None
    except gdb.error:
        frame = None
    switched = thread is not None and thread != sel
    try:
        if switched:
            thread.switch()
        yield thread if thread is not None else sel
    finally:
        if sel is not None and sel.is_valid() and gdb.selected_thread() != sel:
            sel.switch()
        if frame is not None and frame.is_valid():
            try:
                frame.select()
            except gdb.error:
                pass
