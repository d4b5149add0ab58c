"""Text helpers shared by the CLI and the in-gdb commands (no gdb imports)."""

__all__ = ["escape", "hexdump_line"]

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
