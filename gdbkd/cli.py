"""gdbkd command line: thin click frontends over live/, artifacts/, postmortem/, labs/."""

import functools
import json
import os
import sys

import click

from .errors import GdbkdError

__all__ = ["main"]


def _opts(**kw):
    from .live import LiveOptions
    return LiveOptions(**{k: v for k, v in kw.items() if v is not None})


_common = [
    click.option("--batch", is_flag=True, help="no prompt: run, report, tear down, exit"),
    click.option("--json", "as_json", is_flag=True, help="print the report as JSON"),
    click.option("-ex", "--ex", "ex", multiple=True, help="gdb/kd command to run at the stop (repeatable)"),
    click.option("--timeout", type=float, default=120.0, show_default=True,
                 help="batch: seconds to wait for the crash"),
    click.option("--modules-dir", multiple=True, type=click.Path(), help="where to look for .ko files"),
]


def common(f):
    for o in reversed(_common):
        f = o(f)
    return f


def _complete_profile(ctx, param, incomplete):
    from .qemu.profiles import list_profiles
    return [n for n in list_profiles() if n.startswith(incomplete)]


#: an example for each command's --help (commands defined in other modules get theirs here too)
EXAMPLES = {
    "run": ["gdbkd run", "gdbkd run --batch --exec 'echo c > /proc/sysrq-trigger' --dump-on-crash vmcore",
            "gdbkd run debian-5.10 --module tests/e2e/kdtest_mod --nokaslr"],
    "attach": ["gdbkd attach 127.0.0.1:1234 --vmlinux ~/.cache/gdbkd/kernels/6.1.0-*/vmlinux-*"],
    "fetch": ["gdbkd fetch", "gdbkd fetch debian-6.12 --json", "gdbkd fetch --source",
              "gdbkd fetch rlk-5.0 --source-tree ~/runninglinuxkernel_5.0"],
    "profiles": ["gdbkd profiles"],
    "doctor": ["gdbkd doctor"],
    "demo": ["gdbkd demo", "gdbkd demo --batch"],
    "gdbinit": ["gdbkd gdbinit >> ~/.gdbinit", "gdbkd gdbinit > kd.gdb; gdb-multiarch -x kd.gdb vmlinux"],
    "core": ["gdbkd core vmcore vmlinux", "gdbkd core vmcore vmlinux -s --batch -ex 'kd bt'"],
    "convert": ["gdbkd convert vmcore vmlinux -o vmcore.elf; gdb-multiarch vmlinux vmcore.elf"],
    "stub": ["gdb-multiarch vmlinux -ex 'target remote | gdbkd stub vmcore vmlinux'"],
    "lab": ["gdbkd lab list", "gdbkd lab run 1 --kernel 6.1"],
    "lab list": ["gdbkd lab list --json"],
    "lab run": ["gdbkd lab run 3", "gdbkd lab run 4 --batch --json --dump lab4.vmcore"],
}

#: commands whose gdb loads `kd`: gdb's Python is checked first (gdbkd/gdbpython.py)
NEEDS_GDB_PYTHON = {"run", "attach", "demo", "core", "lab run"}


def _dress(cmd, path):
    """Give CMD (and its subcommands) the example epilog, no progress bars under --batch or
    --json (gdbkd/progress.py), and the gdb-Python check before commands that load `kd`."""
    if path in EXAMPLES and not cmd.epilog:
        cmd.epilog = "\b\nExamples:\n" + "\n".join(f"  {e}" for e in EXAMPLES[path])
    if cmd.callback is not None and not getattr(cmd.callback, "_dressed", False):
        inner, check = cmd.callback, path in NEEDS_GDB_PYTHON

        @functools.wraps(inner)
        def callback(*a, **kw):
            if kw.get("batch") or kw.get("as_json"):
                from .progress import quiet
                quiet()
            if check:
                from .gdbpython import ensure
                ensure()
            return inner(*a, **kw)
        callback._dressed = True
        cmd.callback = callback
    for name, sub in getattr(cmd, "commands", {}).items():
        _dress(sub, f"{path} {name}")
    return cmd


class _LazyGroup(click.Group):
    """Subcommands defined in other modules, imported only when that command runs
    (or help lists it): `gdbkd core` starts gdb before the heavy imports."""

    lazy = {"core": "gdbkd.postmortem.cli:core", "stub": "gdbkd.postmortem.cli:stub",
            "convert": "gdbkd.postmortem.cli:convert", "lab": "gdbkd.labs.cli:lab",
            "proxy": "gdbkd.stub.cli:proxy",
            "triage": "gdbkd.triage.cli:triage"}

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(self.lazy))

    def get_command(self, ctx, name):
        if name in self.lazy and name not in self.commands:
            mod, attr = self.lazy[name].split(":")
            try:
                self.add_command(getattr(__import__(mod, fromlist=[attr]), attr), name)
            except ImportError:
                return None
        cmd = super().get_command(ctx, name)
        return _dress(cmd, name) if cmd is not None else None


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]},
             epilog="Shell completion: see docs/cli.md (eval \"$(_GDBKD_COMPLETE=bash_source gdbkd)\").")
@click.version_option(None, "-V", "--version", package_name="gdbkd", prog_name="gdbkd",
                      message="%(prog)s %(version)s (Python " + "%d.%d" % sys.version_info[:2] + ")")
def cli():
    """gdbkd — a kernel crash debugger for arm64 Linux built on GDB."""


@cli.command()
@click.argument("profile", default="debian-6.1", shell_complete=_complete_profile)
@click.option("--module", "modules", multiple=True, type=click.Path(), help="module source dir or .ko to put in the guest")
@click.option("--exec", "execs", multiple=True, help="guest shell command, typed after gdb attached (repeatable)")
@click.option("--boot-exec", "boot_execs", multiple=True, help="guest shell command run by /init before gdb attaches")
@click.option("--dump-on-crash", type=click.Path(), help="save a QMP dump-guest-memory vmcore here")
@click.option("--dump-format", type=click.Choice(["elf", "kdump-zlib"]), default="elf", show_default=True)
@click.option("--nokaslr", is_flag=True, help="boot with nokaslr")
@click.option("--gdb-port", type=int, default=0, help="gdbstub port on 127.0.0.1 (default: a free one)")
@click.option("--append", default="", help="extra kernel command line")
@click.option("--cpu", default="", help="QEMU -cpu (default from the profile)")
@click.option("--memory", default="", help="QEMU -m (default from the profile)")
@click.option("--smp", type=click.IntRange(1, 8), default=None, help="vCPUs (default from the profile)")
@click.option("--stop-on", multiple=True, help="interrupt the guest once the console matches this regex (repeatable: all must match)")
@click.option("--no-task-threads", is_flag=True,
              help="gdb sees QEMU's vCPU threads, not every task (no gdbkd proxy in between)")
@common
def run(profile, modules, execs, boot_execs, dump_on_crash, dump_format, nokaslr, gdb_port, append, cpu, memory,
        smp, stop_on, no_task_threads, batch, as_json, ex, timeout, modules_dir):
    """Boot PROFILE (qemu_profiles/PROFILE.toml) under gdb; catch and report the crash."""
    from .live import run_session
    sys.exit(run_session(_opts(profile=profile, modules=list(modules), execs=list(execs),
                               rc="".join(c + "\n" for c in boot_execs),
                               dump_on_crash=dump_on_crash or "", dump_format=dump_format,
                               nokaslr=nokaslr, gdb_port=gdb_port, append=append, cpu=cpu,
                               memory=memory, smp=smp or 0, stop_on=list(stop_on), batch=batch, json=as_json,
                               ex=list(ex), timeout=timeout, modules_dir=list(modules_dir),
                               task_threads=not no_task_threads)))


@cli.command()
@click.argument("target", default="127.0.0.1:1234")
@click.option("--vmlinux", required=True, type=click.Path(), help="the running kernel's vmlinux")
@click.option("--no-task-threads", is_flag=True,
              help="gdb sees QEMU's vCPU threads, not every task (no gdbkd proxy in between)")
@common
def attach(target, vmlinux, no_task_threads, batch, as_json, ex, timeout, modules_dir):
    """Attach to a running guest's gdbstub at TARGET (HOST:PORT); catch and report the crash."""
    from .live import attach_session
    if not os.path.isfile(vmlinux):
        raise GdbkdError(f"vmlinux {vmlinux} does not exist")
    sys.exit(attach_session(target, vmlinux, _opts(batch=batch, json=as_json, ex=list(ex), timeout=timeout,
                                                   modules_dir=list(modules_dir),
                                                   task_threads=not no_task_threads)))


@cli.command()
@click.argument("profile", default="debian-6.1", shell_complete=_complete_profile)
@click.option("--json", "as_json", is_flag=True)
@click.option("--source", is_flag=True,
              help="also the kernel's source: Debian's source package (~140 MB, once), or for the "
                   "course's kernel the tree in $RLK_TREE; gdb then shows source lines")
@click.option("--source-tree", type=click.Path(), default=None,
              help="record this kernel tree (e.g. your checkout of the course's tree) as the "
                   "kernel's source: nothing is downloaded")
@click.option("--abi", default=None,
              help="this ABI of the profile's series (e.g. an older one the cache or the archive "
                   "still holds) instead of the newest; a profile pins one with [kernel] abi")
@click.option("--list", "list_cached", is_flag=True,
              help="list the kernels gdbkd's cache holds (release, build-id, vmlinux) and exit")
def fetch(profile, as_json, source, source_tree, abi, list_cached):
    """Download/build PROFILE's artifacts and print their paths."""
    if list_cached:
        from .artifacts.kernel import cached_kernels
        ks = cached_kernels()
        if as_json:
            click.echo(json.dumps(ks))
        elif not ks:
            click.echo("no kernels in gdbkd's cache")
        for k in ([] if as_json else ks):
            click.echo(f"{k['release']:28} {k['build_id'] or '(no build-id)':42} {k['vmlinux']}")
        return
    from .qemu.profiles import load_profile
    from .artifacts.kernel import ensure_kernel
    from .artifacts.initramfs import ensure_base_initramfs
    p = load_profile(profile)
    k = ensure_kernel(p, abi=abi)
    d = {"profile": p.name, "release": k.release, "image": k.image, "vmlinux": k.vmlinux,
         "headers": k.kdir, "modules": k.modules_dir}
    if source or source_tree or p.kernel.get("fetch_source"):
        from .artifacts.source import ensure_source
        d["source"] = ensure_source(p, k, tree=source_tree)["tree"]
    if p.guest.get("initramfs", True):
        d["initramfs"] = str(ensure_base_initramfs(k, p.guest.get("boot_modules", [])))
    if as_json:
        click.echo(json.dumps(d))
    else:
        for key, v in d.items():
            click.echo(f"{key:10} {v}")


@cli.command()
def profiles():
    """List the guest profiles."""
    from .qemu.profiles import list_profiles, load_profile
    for name in list_profiles():
        click.echo(f"{name:14} {load_profile(name).description}")


@cli.command()
def doctor():
    """Say what is missing on this host and how to get it."""
    from .doctor import check
    problems = check(print_fn=click.echo)
    sys.exit(1 if problems else 0)


@cli.command()
def gdbinit():
    """Print the line that gives a plain gdb-multiarch the `kd` commands.

    Put it in ~/.gdbinit, or in a file to `source`. It names this gdbkd's package and
    its dependencies' directories: print it again after moving or reinstalling gdbkd.
    Exits 1 (the line still printed) when gdb's Python cannot load them."""
    from .gdbpython import boot_command, check
    click.echo(boot_command())
    err = check()
    if err:
        click.echo(f"gdbkd: {err}", err=True)
        sys.exit(1)


@cli.command()
@click.option("--batch", is_flag=True, help="no prompt (default when stdin is not a terminal)")
def demo(batch):
    """Boot the default guest, crash it (sysrq-c), show the crash caught in gdb."""
    from .live import run_session
    click.echo("gdbkd demo: booting debian-6.1, then `echo c > /proc/sysrq-trigger` in the guest", err=True)
    sys.exit(run_session(_opts(execs=["echo c > /proc/sysrq-trigger"], batch=batch or not sys.stdin.isatty())))


def main(argv=None):
    try:
        cli.main(args=argv, prog_name="gdbkd", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("gdbkd: aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except GdbkdError as e:
        msg = str(e)
        click.echo(f"gdbkd: {msg}", err=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        click.echo("gdbkd: interrupted", err=True)
        sys.exit(130)
    except OSError as e:       # a file or device the user named, a full disk, …: one line
        click.echo(f"gdbkd: {e.strerror or e}: {e.filename or ''}".rstrip(": "), err=True)
        sys.exit(2)
