"""`gdbkd lab list|run`: the eight crash labs, each with one command."""

import json
import re
import sys

import click

from ..errors import GdbkdError

__all__ = ["lab"]

KERNELS = {"6.1": "debian-6.1", "5.10": "debian-5.10", "6.12": "debian-6.12",
           "5.0": "rlk-5.0"}       # the course's own kernel (docs/profiles.md)


@click.group()
def lab():
    """The eight crash labs (modules shipped with gdbkd)."""


@lab.command("list")
@click.option("--json", "as_json", is_flag=True)
def lab_list(as_json):
    """List the labs."""
    from . import list_labs
    labs = list_labs()
    if as_json:
        click.echo(json.dumps([{"number": l.number, "slug": l.slug, "title": l.title, "expect": l.expect}
                               for l in labs]))
        return
    for l in labs:
        click.echo(f"{l.number}  {l.slug:22} {l.expect:5} {l.title}")


@lab.command("run")
@click.argument("lab_id")
@click.option("--kernel", type=click.Choice(sorted(KERNELS)), default="6.1", show_default=True)
@click.option("--live", "mode", flag_value="live", default=True, help="end live in gdb at the crash/hang (default)")
@click.option("--dump", "dump", type=click.Path(), help="save a QEMU dump-guest-memory vmcore to this file")
@click.option("--dump-format", type=click.Choice(["elf", "kdump-zlib"]), default="elf", show_default=True)
@click.option("--kdump", "kdump", type=click.Path(), help="real in-guest kdump (kexec -p, makedumpfile -c -d 31) to this file")
@click.option("--batch", is_flag=True)
@click.option("--json", "as_json", is_flag=True)
@click.option("-ex", "--ex", "ex", multiple=True)
@click.option("--timeout", type=float, default=120.0, show_default=True)
@click.option("--nokaslr", is_flag=True)
def lab_run(lab_id, kernel, mode, dump, dump_format, kdump, batch, as_json, ex, timeout, nokaslr):
    """Boot, load lab LAB_ID's module, trigger it, end in gdb at the crash or hang."""
    from . import get_lab, build_lab, lab_rc
    from ..artifacts.kernel import ensure_kernel
    from ..qemu.profiles import load_profile
    from ..live import LiveOptions, run_session
    if kdump and dump:
        raise GdbkdError("--kdump and --dump are exclusive: pick one")
    the_lab = get_lab(int(lab_id) if lab_id.isdigit() else lab_id)
    profile = KERNELS[kernel]
    k = ensure_kernel(load_profile(profile))
    files = build_lab(the_lab, k)
    if kdump:
        from pathlib import Path
        from ..kdump import run_kdump
        res = run_kdump(k, load_profile(profile), files, lab_rc(the_lab), list(the_lab.trigger),
                        Path(kdump), timeout=max(timeout, 300.0))
        res.pop("console")
        mods = sorted({str(p.parent) for p in files.values() if str(p).endswith(".ko")})
        res["modules_dirs"] = mods
        if as_json:
            click.echo(json.dumps(res))
        else:
            click.echo(f"gdbkd: kdump of lab {the_lab.number} written to {res['path']} "
                       f"({res['bytes']} bytes, {res['seconds']['total']} s); open it with: "
                       f"gdbkd core {res['path']} {k.vmlinux}"
                       + "".join(f" --modules-dir {m}" for m in mods), err=True)
        sys.exit(0)
    stop_on = []
    if the_lab.expect == "hang":
        # the lab's end state: the deadlocked tasks and the ones blocked behind them all reported
        # by the hung-task detector (victims may come one detector scan after the cycle)
        stop_on = [rf"task {re.escape(c)}:\d+ blocked for more than"
                   for c in list(the_lab.hang_comms) + [v for v in the_lab.victim_comms
                                                        if v not in the_lab.hang_comms]]
    opts = LiveOptions(profile=profile, extra_files=files, rc=lab_rc(the_lab), execs=list(the_lab.trigger),
                       batch=batch or not sys.stdin.isatty(), json=as_json, ex=list(ex), timeout=timeout,
                       dump_on_crash=dump or "", dump_format=dump_format, stop_on=stop_on, nokaslr=nokaslr,
                       modules_dir=[str(p.parent) for p in files.values() if str(p).endswith(".ko")])
    if not as_json:
        click.echo(f"gdbkd: lab {the_lab.number} ({the_lab.slug}) on {profile}: {the_lab.title}", err=True)
    sys.exit(run_session(opts))
