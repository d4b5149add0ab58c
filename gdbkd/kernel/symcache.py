"""Caches of what gdb's symbol files define, emptied when they change.

A new objfile (a module's symbols, a KASLR reload) may define or move the types,
offsets and addresses kd keeps; every such cache registers here. The lowest of
kd's gdb modules: it imports nothing of gdbkd.
"""

import gdb

__all__ = ["cache_per_symbols"]


def cache_per_symbols(*caches):
    """Empty these dicts whenever symbol files change (a new objfile — a module's
    symbols, a KASLR reload — may define or move what they cache)."""
    def _clear(_event=None):
        for c in caches:
            c.clear()
    gdb.events.new_objfile.connect(_clear)
    try:
        gdb.events.clear_objfiles.connect(_clear)
    except AttributeError:
        pass
    return _clear
