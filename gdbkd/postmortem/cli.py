"""`gdbkd core`, `gdbkd stub`, `gdbkd convert`: thin frontends over postmortem/ and stub/."""

import os
import shlex
import subprocess
import sys
from pathlib import Path

import click

from ..errors import GdbkdError
from ..procutil import die_with_parent

__all__ = ["register", "core_gdb_argv"]

from ..paths import kd_py

KD_PY = kd_py()


def core_gdb_argv(dump, vmlinux, batch, ex, modules_dirs=(), target=None, report=True):
    """The gdb-multiarch command line that opens DUMP through the stub.

    TARGET is what gdb connects to: a unix socket a server already listens on
    (see :func:`gdbkd.stub.listen.fork_unix_server`), or by default a pipe to
    ``python -m gdbkd.stub`` (slower memory reads, no server process needed)."""
    from . import open_dump
    d = open_dump(dump, vmlinux)          # one-line errors before gdb starts
    off = d.kaslr_offset or 0
    release = d.osrelease
    d.close()
    # the kernel's own modules (unpacked by gdbkd fetch) come with their symbols
    from ..cache import cache_root
    kmods = sorted((cache_root() / "kernels").glob(f"{release}-*/pkg/lib/modules/{release}")) if release else []
    modules_dirs = list(modules_dirs) + [str(p) for p in kmods[:1]]
    if target is None:
        target = f"| {shlex.quote(sys.executable)} -m gdbkd.stub {shlex.quote(os.path.abspath(dump))} " \
                 f"{shlex.quote(os.path.abspath(vmlinux))}"
    argv = ["gdb-multiarch", "-nx", "-q", "-iex", "set auto-load no", "-iex", "set pagination off",
            "-iex", "set confirm off", "-ex", "set architecture aarch64",
            "-ex", f"symbol-file -o {off:#x} {vmlinux}" if off else f"symbol-file {vmlinux}",
            "-ex", f"exec-file {vmlinux}"]
    argv += ["-ex", f"target remote {target}", "-ex", f"source {KD_PY}",
             "-ex", f"kd symbols --offset {off:#x} --no-check" + "".join(f" --modules-dir {shlex.quote(m)}" for m in modules_dirs)
             + ("" if report else " --quiet")]
    if report:
        argv += ["-ex", "kd analyze"]
    for e in ex:
        argv += ["-ex", e]
    if batch:
        argv.insert(1, "-batch")
    return argv


@click.command()
@click.argument("dump", type=click.Path())
@click.argument("vmlinux", type=click.Path())
@click.option("--batch", is_flag=True, help="run the -ex commands and exit (as gdb -batch)")
@click.option("-ex", "--ex", "ex", multiple=True, help="gdb/kd command (repeatable)")
@click.option("--modules-dir", multiple=True, type=click.Path())
@click.option("-s", "--silent", is_flag=True, help="no crash report at start (as crash -s)")
def core(dump, vmlinux, batch, ex, modules_dir, silent):
    """Open a kernel crash dump DUMP with VMLINUX in gdb (every task a thread)."""
    for p, what in ((dump, "dump"), (vmlinux, "vmlinux")):
        if not os.path.isfile(p):
            raise GdbkdError(f"{what} {p} does not exist")
    from . import open_dump
    from ..stub.listen import fork_unix_server
    d = open_dump(dump, vmlinux)          # one-line errors before anything starts
    sock, server = fork_unix_server(d)    # the child serves this already-open dump
    d.close()
    try:
        argv = core_gdb_argv(dump, vmlinux, batch, ex, modules_dir, target=sock, report=not silent)
    except BaseException:
        os.kill(server, 15)
        os.waitpid(server, 0)
        raise
    env = dict(os.environ, GDBKD_PATH=str(KD_PY.parents[1]))
    if batch:
        try:
            r = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, preexec_fn=die_with_parent)
        finally:
            try:
                os.kill(server, 15)          # normally gone already: gdb disconnected
            except ProcessLookupError:
                pass
            os.waitpid(server, 0)
        sys.exit(r.returncode)
    os.execvpe(argv[0], argv, env)        # the server dies with this process (PDEATHSIG)


@click.command()
@click.argument("dump", type=click.Path())
@click.argument("vmlinux", type=click.Path())
def stub(dump, vmlinux):
    """Serve DUMP to gdb on stdin/stdout (`target remote | gdbkd stub DUMP VMLINUX`)."""
    from ..stub.__main__ import main as stub_main
    sys.exit(stub_main([dump, vmlinux]))


@click.command()
@click.argument("dump", type=click.Path())
@click.argument("vmlinux", type=click.Path())
@click.option("-o", "--output", required=True, type=click.Path(), help="the ELF core to write")
def convert(dump, vmlinux, output):
    """Write DUMP as an ELF core that plain `gdb-multiarch VMLINUX CORE` opens."""
    from . import open_dump
    from .convert import convert as do_convert
    d = open_dump(dump, vmlinux)
    try:
        info = do_convert(d, vmlinux, output)
    finally:
        d.close()
    click.echo(f"gdbkd: wrote {output}" + (f" ({info})" if info else ""), err=True)


def register(cli):
    cli.add_command(core)
    cli.add_command(stub)
    cli.add_command(convert)
