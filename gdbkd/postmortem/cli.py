"""`gdbkd core`, `gdbkd stub`, `gdbkd convert`: thin frontends over postmortem/ and stub/."""

import os
import shlex
import subprocess
import sys
from pathlib import Path

import click

from ..errors import GdbkdError
from ..textutil import escape
from ..procutil import die_with_parent

__all__ = ["register", "core_gdb_argv"]

from ..paths import kd_py, GDB_INIT

KD_PY = kd_py()


def _split_files(files):
    """(dump, vmlinux) from the positionals DUMP... VMLINUX: the last is the vmlinux;
    several dumps are the parts of a makedumpfile --split dump (returned as a list)."""
    files = list(files)
    if len(files) < 2:
        raise click.UsageError("give the dump and the vmlinux: DUMP VMLINUX, or for a "
                               "makedumpfile --split dump PART1 PART2 ... VMLINUX")
    dumps, vmlinux = files[:-1], files[-1]
    return (dumps[0] if len(dumps) == 1 else dumps), vmlinux


def _dump_list(dump):
    return list(dump) if isinstance(dump, (list, tuple)) else [dump]


def _quiet(cmd: str):
    """A gdb -ex that runs CMD without its chatter ("add symbol table from file …")."""
    return ["-ex", "python gdb.execute(" + repr(cmd) + ", to_string=True)"]


def _module_symbols(d, modules_dirs, say):
    """-ex arguments loading the symbols of every module loaded in the dump, planned
    here from the dump (gdbkd/kmods.py) so gdb needs no type lookup for them."""
    from .. import kmods
    args = []
    try:
        mods = kmods.modules_in_dump(d)
    except Exception as e:                       # corrupt module list: gdb still opens
        say(f"modules: cannot read the module list ({e})")
        return args
    for name, base, secs in mods:
        shown = escape(name)
        ko = kmods.find_ko(name, modules_dirs)
        if ko is None:
            say(f"module {shown}: no .ko found (give --modules-dir)")
            continue
        if not secs:
            say(f"module {shown}: no section addresses (sect_attrs empty)")
            continue
        try:
            copy = kmods.relocated_copy(ko, secs)
        except GdbkdError as e:
            say(f"module {shown}: {e}")
            continue
        args += _quiet(f"add-symbol-file {copy}")
        say(f"module {shown}: symbols loaded from {ko} at {base:#x}")
    return args


def core_gdb_argv(dump, vmlinux, batch, ex, modules_dirs=(), target=None, report=True, opened=None):
    """The gdb-multiarch command line that opens DUMP through the stub.

    DUMP is a path, or the list of parts of a makedumpfile --split dump.
    TARGET is what gdb connects to: a unix socket a server already listens on
    (see :func:`gdbkd.stub.listen.fork_unix_server`), or by default a pipe to
    ``python -m gdbkd.stub`` (slower memory reads, no server process needed).
    OPENED: the dump already opened by the caller (else it is opened here).

    What gdb does at start, and why in that way (docs/design.md, "Speed"):
    ``add-symbol-file`` for the vmlinux (``symbol-file`` also guesses the language
    from a lookup of "main", which sorts all 135,000 index names first), module
    symbols planned here, and kd sourced only when something will use it (the
    report, a prompt, a ``kd`` command)."""
    from . import open_dump
    d = opened or open_dump(dump, vmlinux)          # one-line errors before gdb starts
    try:
        off = d.kaslr_offset or 0
        release = d.osrelease
        # the kernel's own modules (unpacked by gdbkd fetch) come with their symbols
        from ..cache import cache_root
        kdirs = sorted((cache_root() / "kernels").glob(f"{release}-*/pkg/lib/modules/{release}")) \
            if release else []
        modules_dirs = list(modules_dirs) + [str(p) for p in kdirs[:1]]
        lines = [f"KASLR offset: {off:#x}"]
        mod_args = _module_symbols(d, modules_dirs, lines.append)
    finally:
        if opened is None:
            d.close()
    if report:
        for line in lines:
            print(line, flush=True)
    if target is None:
        target = f"| {shlex.quote(sys.executable)} -m gdbkd.stub " \
                 + "".join(f"{shlex.quote(os.path.abspath(p))} " for p in _dump_list(dump)) \
                 + shlex.quote(os.path.abspath(vmlinux))
    argv = ["gdb-multiarch", "-nx", "-q", *GDB_INIT, "-iex", "set pagination off",
            "-iex", "set confirm off", "-ex", "set architecture aarch64",
            *_quiet(f"add-symbol-file -o {off:#x} {vmlinux}"),
            "-ex", f"exec-file {vmlinux}", *mod_args,
            "-ex", f"target remote {target}"]
    if report or not batch or any(e.split()[:1] == ["kd"] for e in ex):
        argv += ["-ex", f"source {KD_PY}",
                 "-ex", f"kd symbols --offset {off:#x} --no-check --no-modules --quiet"]
    if report:
        argv += ["-ex", "kd analyze"]
    for e in ex:
        argv += ["-ex", e]
    if batch:
        argv.insert(1, "-batch")
    return argv


_FILES = click.argument("files", nargs=-1, required=True, type=click.Path(),
                        metavar="DUMP... VMLINUX")


@click.command()
@_FILES
@click.option("--batch", is_flag=True, help="run the -ex commands and exit (as gdb -batch)")
@click.option("-ex", "--ex", "ex", multiple=True, help="gdb/kd command (repeatable)")
@click.option("--modules-dir", multiple=True, type=click.Path())
@click.option("-s", "--silent", is_flag=True, help="no crash report at start (as crash -s)")
def core(files, batch, ex, modules_dir, silent):
    """Open a kernel crash dump DUMP with VMLINUX in gdb (every task a thread).

    For a makedumpfile --split dump give all its parts: PART1 PART2 ... VMLINUX."""
    dump, vmlinux = _split_files(files)
    for p, what in [(p, "dump") for p in _dump_list(dump)] + [(vmlinux, "vmlinux")]:
        if not os.path.isfile(p):
            raise GdbkdError(f"{what} {p} does not exist")
    from . import open_dump
    from ..stub.listen import fork_unix_server
    d = open_dump(dump, vmlinux)          # one-line errors before anything starts
    sock, server = fork_unix_server(d)    # the child serves this already-open dump
    try:
        argv = core_gdb_argv(dump, vmlinux, batch, ex, modules_dir, target=sock, report=not silent,
                             opened=d)
        d.close()
    except BaseException:
        d.close()
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
@_FILES
def stub(files):
    """Serve DUMP to gdb on stdin/stdout (`target remote | gdbkd stub DUMP VMLINUX`).

    For a makedumpfile --split dump give all its parts: PART1 PART2 ... VMLINUX."""
    from ..stub.__main__ import main as stub_main
    dump, vmlinux = _split_files(files)
    sys.exit(stub_main([*_dump_list(dump), vmlinux]))


@click.command()
@_FILES
@click.option("-o", "--output", required=True, type=click.Path(), help="the ELF core to write")
def convert(files, output):
    """Write DUMP as an ELF core that plain `gdb-multiarch VMLINUX CORE` opens.

    For a makedumpfile --split dump give all its parts: PART1 PART2 ... VMLINUX."""
    from . import open_dump
    from .convert import convert as do_convert
    dump, vmlinux = _split_files(files)
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
