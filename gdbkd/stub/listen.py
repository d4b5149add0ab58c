"""Serve a dump on a unix socket (``target remote /path/to/socket``).

Why not only ``target remote | gdbkd stub``: gdb 13 reads a pipe target's
replies one character at a time and, per character, also polls the child's
stderr pipe with a ``read`` syscall. A 4 KiB memory read then costs ~3.5 ms;
on a unix socket it costs ~0.2 ms (measured here, 16x). ``gdbkd core`` forks
the server from the process that already opened the dump, so gdb connects to a
ready server and the dump is opened once.

The socket lives in a fresh 0700 directory; the server takes one connection,
removes the socket and directory as soon as gdb is connected, and exits when
gdb disconnects. It is started with PR_SET_PDEATHSIG, so it also ends when its
parent (gdbkd, or the gdb that gdbkd exec'd into) ends.
"""

import os
import shutil
import signal
import socket
import sys
import tempfile

from ..procutil import die_with_parent

__all__ = ["fork_unix_server", "serve_unix"]


def _listen(path) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    s.listen(1)
    return s


def serve_unix(dump, path, log=None):
    """Serve DUMP to the first client of a unix socket at PATH (blocking); the
    socket file is removed once the client is connected."""
    from .server import StubServer
    lsock = _listen(path)
    try:
        conn, _ = lsock.accept()
    finally:
        lsock.close()
        os.unlink(path)
    with conn:
        StubServer(dump, infd=conn.fileno(), outfd=conn.fileno(), log=log).serve()


def fork_unix_server(dump):
    """Fork a child serving DUMP on a new unix socket; return (socket path, child pid).

    The socket is listening before this returns, so gdb can connect at once."""
    d = tempfile.mkdtemp(prefix="gdbkd-core-")          # mode 0700
    path = os.path.join(d, "stub.sock")
    lsock = _listen(path)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        lsock.close()
        return path, pid
    # child: serve, clean up, never return into the caller's code
    code = 0
    try:
        def _term(*_):
            shutil.rmtree(d, ignore_errors=True)
            os._exit(0)
        signal.signal(signal.SIGTERM, _term)
        signal.signal(signal.SIGINT, signal.SIG_IGN)       # Ctrl-C is gdb's
        die_with_parent(signal.SIGTERM)
        if os.getppid() == 1:                               # parent already gone
            _term()
        try:
            conn, _ = lsock.accept()
        finally:
            lsock.close()
        shutil.rmtree(d, ignore_errors=True)
        from .server import StubServer
        with conn:
            StubServer(dump, infd=conn.fileno(), outfd=conn.fileno()).serve()
    except BaseException as e:            # noqa: BLE001 - a forked child must not unwind
        if not isinstance(e, (SystemExit, KeyboardInterrupt, BrokenPipeError)):
            print(f"gdbkd stub: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
            code = 1
    finally:
        shutil.rmtree(d, ignore_errors=True)
        try:
            dump.close()
        except Exception:                 # noqa: BLE001
            pass
        os._exit(code)
