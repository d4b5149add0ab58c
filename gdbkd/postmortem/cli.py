"""`gdbkd core`, `gdbkd stub`, `gdbkd convert`: thin frontends over target/, postmortem/ and stub/."""

import os
import sys

import click

from ..errors import GdbkdError

__all__ = ["core", "stub", "convert"]


def _is_vmlinux(path) -> bool:
    """An ELF executable or shared object (a vmlinux), not a core or a dump."""
    try:
        with open(path, "rb") as f:
            head = f.read(18)
    except OSError:
        return False
    return head[:4] == b"\x7fELF" and len(head) == 18 and int.from_bytes(head[16:18], "little") in (2, 3)


def _split_files(files, vmlinux_dirs=()):
    """(dump, vmlinux) from the positionals DUMP... [VMLINUX]: the last is the vmlinux
    when it is an ELF executable; several dumps are the parts of a makedumpfile --split
    dump (returned as a list). Without a vmlinux it is found by the dump's build-id
    (artifacts/debuginfo.py), and one line on stderr says which file and why."""
    files = list(files)
    if len(files) >= 2 and _is_vmlinux(files[-1]):
        dumps, vmlinux = files[:-1], files[-1]
    elif len(files) >= 2 and not os.path.exists(files[-1]):
        dumps, vmlinux = files[:-1], files[-1]          # reported as a missing vmlinux
    else:
        dumps, vmlinux = files, None
    for p in dumps:
        if not os.path.isfile(p):
            raise GdbkdError(f"dump {p} does not exist")
    dump = dumps[0] if len(dumps) == 1 else dumps
    if vmlinux is None:
        vmlinux = _find_vmlinux(dump, vmlinux_dirs)
    return dump, vmlinux


def _find_vmlinux(dump, vmlinux_dirs):
    from ..target import open_dump
    from ..artifacts.debuginfo import find_vmlinux
    d = open_dump(dump)
    try:
        release, build_id = d.osrelease, d.build_id
    finally:
        d.close()
    found = find_vmlinux(release, build_id, vmlinux_dirs)
    click.echo(f"gdbkd: vmlinux {found.path} ({found.why})", err=True)
    return found.path


def _dump_list(dump):
    return list(dump) if isinstance(dump, (list, tuple)) else [dump]


_FILES = click.argument("files", nargs=-1, required=True, type=click.Path(),
                        metavar="DUMP... [VMLINUX]")
_VMLINUX_DIRS = click.option("--vmlinux-dir", "vmlinux_dirs", multiple=True, type=click.Path(),
                             help="where to look for the dump's vmlinux by build-id when VMLINUX "
                                  "is not given (repeatable; before gdbkd's cache, "
                                  "/usr/lib/debug and Debian's archive)")


@click.command()
@_FILES
@_VMLINUX_DIRS
@click.option("--batch", is_flag=True, help="run the -ex commands and exit (as gdb -batch)")
@click.option("-ex", "--ex", "ex", multiple=True, help="gdb/kd command (repeatable)")
@click.option("--modules-dir", multiple=True, type=click.Path())
@click.option("-s", "--silent", is_flag=True, help="no crash report at start (as crash -s)")
@click.option("--check", is_flag=True,
              help="only check that the dump and the vmlinux agree (OSRELEASE, BUILD-ID, "
                   "KERNELOFFSET, VA_BITS, PHYS_OFFSET, the CPU notes, DWARF) and print the "
                   "report; exit 1 if anything disagrees")
def core(files, vmlinux_dirs, batch, ex, modules_dir, silent, check):
    """Open a kernel crash dump DUMP with VMLINUX in gdb (every task a thread).

    Without VMLINUX the dump's own vmlinux is found by its build-id (--vmlinux-dir,
    gdbkd's cache, /usr/lib/debug, Debian's archive). For a makedumpfile --split dump
    give all its parts: PART1 PART2 ... [VMLINUX]."""
    dump, vmlinux = _split_files(files, vmlinux_dirs)
    if not os.path.isfile(vmlinux):
        raise GdbkdError(f"vmlinux {vmlinux} does not exist")
    if check:
        from .check import run_check
        text, findings = run_check(dump, vmlinux)
        click.echo(text)
        sys.exit(1 if any(f.status == "warn" for f in findings) else 0)
    from .session import run_core
    rc = run_core(dump, vmlinux, batch=batch, ex=ex, modules_dirs=modules_dir, report=not silent)
    # gdb has ended and run_core has cleaned up after it: end without Python's teardown
    # of click and the dump modules (10-25 ms of every gdbkd core)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)


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
@_VMLINUX_DIRS
@click.option("-o", "--output", required=True, type=click.Path(), help="the ELF core to write")
def convert(files, vmlinux_dirs, output):
    """Write DUMP as an ELF core that plain `gdb-multiarch VMLINUX CORE` opens.

    For a makedumpfile --split dump give all its parts: PART1 PART2 ... VMLINUX."""
    from ..target import open_dump
    from .convert import convert as do_convert
    dump, vmlinux = _split_files(files, vmlinux_dirs)
    from ..progress import Bar
    d = open_dump(dump, vmlinux)
    try:
        with Bar(f"writing {output}", 0, say=False) as bar:
            info = do_convert(d, vmlinux, output, written=bar.moveto)
    finally:
        d.close()
    click.echo(f"gdbkd: wrote {output}" + (f" ({info})" if info else ""), err=True)
