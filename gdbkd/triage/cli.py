"""`gdbkd triage DUMP...`: a title and a signature per dump, buckets by signature."""

import os
import sys

import click

from ..errors import GdbkdError

__all__ = ["triage"]

EXAMPLES = ["gdbkd triage /srv/vmcores/*/vmcore --vmlinux-dir /srv/vmlinux --html report.html",
            "gdbkd triage a.vmcore b.vmcore --vmlinux vmlinux-6.1.0-56-cloud-arm64 --json",
            "gdbkd triage /shared/vmcores/* --vmlinux-dir /shared/vmlinux --dask tcp://sched:8786"]


@click.command(epilog="\b\nExamples:\n" + "\n".join(f"  {x}" for x in EXAMPLES))
@click.argument("dumps", nargs=-1, required=True, type=click.Path())
@click.option("--vmlinux", type=click.Path(), help="the vmlinux of every dump")
@click.option("--vmlinux-dir", type=click.Path(),
              help="a directory of vmlinux files: each dump gets the one with its build-id "
                   "(searched before gdbkd's cache, Debian's debug paths and archive)")
@click.option("--modules-dir", "modules_dirs", multiple=True, type=click.Path(),
              help="where module .ko files with DWARF are (repeatable; as gdbkd core's)")
@click.option("--json", "as_json", is_flag=True, help="print every row, the buckets and the errors as JSON")
@click.option("--html", "html_out", type=click.Path(), help="also write a static HTML report here")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=None,
              help="local processes (default: the CPU count)")
@click.option("--dask", "dask_addr", metavar="tcp://HOST:PORT",
              help="run each dump as a task on this Dask scheduler's workers (the fleet extra)")
def triage(dumps, vmlinux, vmlinux_dir, modules_dirs, as_json, html_out, jobs, dask_addr):
    """Triage crash DUMPs: a title and a stable signature each, grouped in buckets.

    Without --vmlinux each dump's vmlinux is found by its build-id (or release): in
    --vmlinux-dir, gdbkd's cache, /usr/lib/debug, else Debian's archive.

    Exits 0 when every dump was triaged, 3 when some gave error rows (the report is still
    complete), 2 on bad arguments."""
    from .engine import run_local, run_dask
    from .report import result, render_text, render_json, render_html
    if vmlinux and vmlinux_dir:
        raise click.UsageError("give at most one of --vmlinux V and --vmlinux-dir DIR")
    if vmlinux and not os.path.isfile(vmlinux):
        raise GdbkdError(f"vmlinux {vmlinux} does not exist")
    if vmlinux_dir and not os.path.isdir(vmlinux_dir):
        raise GdbkdError(f"--vmlinux-dir {vmlinux_dir} is not a directory")
    if dask_addr and jobs:
        raise click.UsageError("--jobs is for local runs; the Dask cluster's workers set its parallelism")
    # paths as the user gave them, absolute: workers elsewhere see the same shared paths
    dumps = [os.path.abspath(d) for d in dumps]
    vmlinux = os.path.abspath(vmlinux) if vmlinux else None
    vmlinux_dir = os.path.abspath(vmlinux_dir) if vmlinux_dir else None
    modules_dirs = tuple(os.path.abspath(m) for m in modules_dirs)
    if dask_addr:
        rows = run_dask(dumps, dask_addr, vmlinux, vmlinux_dir, modules_dirs)
    else:
        rows = run_local(dumps, vmlinux, vmlinux_dir, jobs, modules_dirs)
    res = result(rows)
    if html_out:
        with open(html_out, "w") as f:
            f.write(render_html(res))
    click.echo(render_json(res) if as_json else render_text(res))
    sys.exit(3 if res["errors"] else 0)
