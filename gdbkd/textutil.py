"""Text helpers shared by the CLI and the in-gdb commands (no gdb imports)."""

import os

from .errors import GdbkdError

__all__ = ["escape", "hexdump_line", "gdb_quote"]

_ESC = {0x0a: "\\n", 0x0d: "\\r", 0x09: "\\t", 0x1b: "\\e", 0x5c: "\\\\"}


def escape(s, keep_newlines=False) -> str:
    """Escape control characters (and ESC) of guest strings before they reach a terminal."""
    if isinstance(s, (bytes, bytearray)):
        s = s.decode("utf-8", "backslashreplace")
    if s.isascii() and s.isprintable() and "\\" not in s:
        return s                  # the common case (a comm, a path): nothing to escape
    out = []
    for ch in s:
        o = ord(ch)
        if keep_newlines and ch == "\n":
            out.append(ch)
        elif o in _ESC:
            out.append(_ESC[o])
        elif o < 0x20 or o == 0x7f or 0x80 <= o < 0xa0:
            out.append(f"\\x{o:02x}")
        else:
            out.append(ch)
    return "".join(out)


def hexdump_line(addr: int, data: bytes) -> str:
    hexpart = " ".join(f"{b:02x}" for b in data)
    asc = "".join(chr(b) if 0x20 <= b < 0x7f else "." for b in data)
    return f"{addr:016x}:  {hexpart:<48}  {asc}"


_GDB_PLAIN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./+,:=@%-")


def gdb_quote(arg) -> str:
    """ARG as one word of gdb's argument splitting (add-symbol-file, exec-file, kd's
    commands): every other character backslash-escaped. Not shlex.quote: buildargv
    takes backslashes even inside single quotes. A newline cannot be passed (gdb reads
    a command per line): GdbkdError."""
    arg = os.fspath(arg)
    if "\n" in arg or "\r" in arg:
        raise GdbkdError(f"{arg!r}: gdb cannot be given a path with a newline; rename it")
    return "".join(c if c in _GDB_PLAIN else "\\" + c for c in arg)
