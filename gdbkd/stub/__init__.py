"""GDB remote-serial-protocol server presenting a kernel dump (memory + tasks as threads)."""

from .server import StubServer, target_xml

__all__ = ["StubServer", "target_xml", "main"]


def main(argv=None):
    from .__main__ import main as _main
    return _main(argv)
