"""Serve a dump on a unix socket (``gdbkd stub --listen SOCKET``; in gdb:
``target remote SOCKET``).

Why not only ``target remote | gdbkd stub``: gdb 13 reads a pipe target's
replies one character at a time and, per character, also polls the child's
stderr pipe with a ``read`` syscall. A 4 KiB memory read then costs ~3.5 ms;
on a unix socket it costs ~0.2 ms (measured here, 16x). ``gdbkd core`` serves
its dump this way too (gdbkd/postmortem/session.py).
"""

import os
import socket

__all__ = ["serve_unix", "accept_one"]


def accept_one(path, ready=None):
    """The first client of a new unix socket at PATH (created 0600); the socket file is
    removed once the client is connected. ``ready()`` is called when it listens."""
    lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        lsock.bind(str(path))
    finally:
        os.umask(old)
    lsock.listen(1)
    if ready:
        ready()
    try:
        conn, _ = lsock.accept()
    finally:
        lsock.close()
        os.unlink(path)
    return conn


def serve_unix(dump, path, log=None):
    """Serve DUMP to the first client of a unix socket at PATH (blocking)."""
    from .server import StubServer
    with accept_one(path) as conn:
        StubServer(dump, infd=conn.fileno(), outfd=conn.fileno(), log=log).serve()
