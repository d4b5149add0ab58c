"""``python -m gdbkd.stub DUMP... VMLINUX``: serve a dump to gdb on stdin/stdout.

DUMP is one file, or every part of a ``makedumpfile --split`` dump.

Use from gdb-multiarch::

    (gdb) file VMLINUX
    (gdb) target remote | /path/to/.venv/bin/python -m gdbkd.stub DUMP VMLINUX

(with KASLR, load the symbols at the dump's offset: ``symbol-file -o OFFSET
VMLINUX``; ``monitor info`` prints it). Errors go to stderr as one line
``gdbkd stub: ...`` and the exit status is non-zero.
"""

import argparse
import sys

__all__ = ["main"]


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m gdbkd.stub",
                                 description="GDB remote-protocol server for an arm64 kernel dump "
                                             "(talks on stdin/stdout)")
    ap.add_argument("dump", nargs="+",
                    help="the dump file, or every part of a makedumpfile --split dump")
    ap.add_argument("vmlinux")
    ap.add_argument("--log", help="write the packets exchanged to this file")
    ap.add_argument("--listen", metavar="SOCKET",
                    help="serve one gdb on a new unix socket (`target remote SOCKET`: much faster "
                         "memory reads than a pipe) instead of stdin/stdout")
    args = ap.parse_intermixed_args(argv)
    from ..errors import GdbkdError
    try:
        from ..target import open_dump
        from .server import StubServer
        dump = open_dump(args.dump if len(args.dump) > 1 else args.dump[0], args.vmlinux)
    except GdbkdError as e:
        print(f"gdbkd stub: {e}", file=sys.stderr, flush=True)
        return e.exit_code or 2
    log = open(args.log, "ab") if args.log else None
    try:
        if args.listen:
            from .listen import serve_unix
            try:
                serve_unix(dump, args.listen, log=log)
            except OSError as e:
                raise GdbkdError(f"cannot listen on {args.listen}: {e.strerror or e}")
        else:
            StubServer(dump, log=log).serve()
    except GdbkdError as e:
        print(f"gdbkd stub: {e}", file=sys.stderr, flush=True)
        return e.exit_code or 2
    except KeyboardInterrupt:
        return 130
    finally:
        dump.close()
        if log:
            log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
