"""``gdbkd proxy``: gdb ⇄ gdbkd ⇄ QEMU's gdbstub, every task a gdb thread (gdbkd/stub/proxy.py)."""

import os
import sys

import click

from ..errors import GdbkdError

__all__ = ["proxy", "serve_proxy"]


def serve_proxy(target, vmlinux, listen=None, ready=None, ram=None):
    """Connect to the gdbstub at TARGET and serve one gdb on stdin/stdout, or on the unix
    socket LISTEN (created 0600; removed once gdb is connected). ``ready()`` is called
    when the socket listens."""
    from .proxy import connect_qemu, LiveProxy
    link = connect_qemu(target)
    try:
        # everything slow (QEMU's target description, the vmlinux's layouts) before gdb
        # connects: gdb resends a packet it gets no answer to within 2 s, and a second
        # answer to one packet would put every later reply one packet behind
        proxy = LiveProxy(link, vmlinux, ram=ram)
        proxy.wait_for_kernel()
        if listen is None:
            proxy.serve()
            return
        from .listen import accept_one
        conn = accept_one(listen, ready)
        with conn:
            proxy.infd = proxy.outfd = conn.fileno()
            proxy.serve()
    finally:
        link.sock.close()


@click.command()
@click.argument("target")
@click.argument("vmlinux", type=click.Path())
@click.option("--listen", metavar="SOCKET", help="serve gdb on a new unix socket "
              "(`target remote SOCKET`, faster than a pipe) instead of stdin/stdout")
@click.option("--ram", metavar="FILE[@BASE]", help="the guest's RAM shared with QEMU "
              "(memory-backend-file,share=on; BASE: its guest physical address, 0x40000000 on virt): "
              "kernel memory is then read at memory speed instead of through the gdbstub")
def proxy(target, vmlinux, listen, ram):
    """Show every task of a live guest as a gdb thread: sit between gdb and QEMU's gdbstub
    at TARGET (HOST:PORT on this machine, or a unix socket).

    \b
    Example, in gdb-multiarch:
      (gdb) file vmlinux
      (gdb) target remote | gdbkd proxy 127.0.0.1:1234 vmlinux
      (gdb) info threads
    """
    if not os.path.isfile(vmlinux):
        raise GdbkdError(f"vmlinux {vmlinux} does not exist")
    try:
        serve_proxy(target, vmlinux, listen, ram=ram)
    except KeyboardInterrupt:
        sys.exit(130)
