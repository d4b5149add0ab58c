"""Progress bars for gdbkd's long one-time work (downloads, unpacking, index building,
dump writing), on a terminal only.

A bar is drawn on stderr by click's progressbar when stderr is a terminal and the
command is not under ``--batch``/``--json`` (the CLI calls ``quiet()`` then). Everywhere
else a bar is the one ``gdbkd: …`` line that cache.progress always printed, so logs and
tests see the same text as before. Work whose size is unknown (gdb building an index)
gets a ticking elapsed time instead of a bar.
"""

import os
import sys
import threading
import time

import click

__all__ = ["quiet", "shown", "Bar", "Ticker"]

_quiet = False


def quiet():
    """No bars in this process (``--batch``, ``--json``)."""
    global _quiet
    _quiet = True


def shown() -> bool:
    return not _quiet and sys.stderr.isatty() and os.environ.get("TERM") != "dumb"


def _mib(n):
    return f"{n / (1 << 20):.1f} MiB" if n < 10 << 20 else f"{int(n) >> 20} MiB"


class Bar:
    """``with Bar("downloading x", total_bytes) as b: b.update(n)`` (or ``b.moveto(done)``)."""

    def __init__(self, label, total, unit="bytes", say=True):
        self.label, self.total, self.unit, self.say = label, max(int(total or 0), 1), unit, say
        self.done, self.t0, self._bar, self._drawn = 0, time.monotonic(), None, 0.0
        self.shown = shown()

    def _show(self, _item):
        if self.unit != "bytes":
            return f"{self.done}/{self.total}"
        dt = time.monotonic() - self.t0
        rate = f" {_mib(self.done / dt)}/s" if dt > 0.5 else ""
        return f"{_mib(self.done)}/{_mib(self.total)}{rate}"

    def __enter__(self):
        if self.shown:
            self._bar = click.progressbar(length=self.total, label=f"gdbkd: {self.label}", file=sys.stderr,
                                          show_eta=True, show_percent=True, item_show_func=self._show,
                                          width=24)
            self._bar.__enter__()
        elif self.say:
            from .cache import progress
            progress(self.label)
        return self

    def update(self, n):
        self.moveto(self.done + n)

    def moveto(self, done, total=None):
        """DONE of TOTAL (TOTAL: when it is known only once the work runs)."""
        if total and int(total) != self.total:
            self.total = int(total)
            if self._bar is not None:
                self._bar.length = self.total
        self.done = min(int(done), self.total)
        now = time.monotonic()
        if self._bar is not None and (now - self._drawn >= 0.1 or self.done == self.total):
            self._drawn = now                  # redrawn at most 10 times a second
            self._bar.update(self.done - self._bar.pos)

    def __exit__(self, *exc):
        if self._bar is not None:
            if exc[0] is None:
                self.moveto(self.total)
            self._bar.__exit__(*exc)


class Ticker:
    """``with Ticker("indexing vmlinux (one time, ~30 s)"):`` — elapsed seconds on a
    terminal while work of unknown size runs elsewhere (a child process)."""

    def __init__(self, label):
        self.label = label
        self._stop = threading.Event()
        self._t = None

    def _run(self):
        t0 = time.monotonic()
        while not self._stop.wait(0.5):
            sys.stderr.write(f"\rgdbkd: {self.label} {time.monotonic() - t0:4.0f} s")
            sys.stderr.flush()
        sys.stderr.write(f"\rgdbkd: {self.label} {time.monotonic() - t0:4.0f} s\n")
        sys.stderr.flush()

    def __enter__(self):
        if shown():
            self._t = threading.Thread(target=self._run, daemon=True)
            self._t.start()
        else:
            from .cache import progress
            progress(self.label)
        return self

    def __exit__(self, *exc):
        if self._t is not None:
            self._stop.set()
            self._t.join()
