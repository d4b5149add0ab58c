"""`gdbkd core`: gdb-multiarch on a dump, started before the dump is even opened.

The order is chosen for time to the first backtrace (docs/design.md, "Speed"):

1. gdb is started at once (postmortem/prestart.py: before the CLI imports
   click), told to run the Python it reads from a FIFO in a private 0700
   directory (gdb 13's ``source`` refuses a FIFO): its own start-up (~0.05 s)
   runs while this process imports, opens the dump and plans the symbols;
2. the dump is opened (a bad dump or a wrong vmlinux: gdb is killed before it
   printed anything, and the one-line error is this process's);
3. a unix socket is put to listen in the same directory and gdb gets its
   start-up commands through the FIFO: ``add-symbol-file -o KASLR`` for the
   vmlinux (``symbol-file`` also looks up "main" to guess the language, which
   makes gdb 13 sort every index name), the modules' relocated copies
   (planned here from the dump, gdbkd/kmods.py), ``target remote SOCKET`` and,
   when something will use it, kd and the report;
4. this process then serves the dump to gdb on that socket (a 4 KiB read
   costs ~0.2 ms there, ~3.5 ms through ``target remote | …``: gdb 13 polls a
   pipe target's stderr once per byte) until gdb disconnects, and exits with
   gdb's status.

gdb connects knowing one thread, the crashed task (read without the task list:
Dump.first_thread), and the server is then told to list every task at gdb's
next thread-list update. gdb reads the list twice while connecting and
registers every thread it gets: on a 10,000-task dump that was 0.25 s of the
open, and the task walk itself (0.2 s) kept gdb waiting at the connect. kd
commands read tasks from the dump themselves and ask gdb for threads only when
they select one (Inferior.threads() updates the list); when any -ex is not a
kd command gdb fetches the list before running it, and at an interactive prompt
gdb's event loop fetches it just after the prompt is printed, so that
``thread 5000`` finds its thread (_when_to_list).

gdb is this process's child, started with PR_SET_PDEATHSIG; Ctrl-C is gdb's
(ignored here while gdb runs); the directory is removed on every path.
"""

import errno
import os
import select
import shutil
import signal
import socket
import sys
import tempfile
import time

from ..errors import GdbkdError
from ..gdbpython import boot_command, path_prelude
from ..textutil import gdb_quote

__all__ = ["run_core", "core_commands"]

REPORT = "kd analyze"


def _quiet(cmd: str):
    """CMD run without its chatter ("add symbol table from file …")."""
    return (cmd, True)


def _script(cmds, status=None, user=(), end=False) -> str:
    """Python for gdb that runs CMDS (strings, or (command, quiet) pairs) in order; a
    failing command is reported like gdb reports a failing -ex, and the rest still run.
    When the crash report (``kd analyze``) fails, its error is written to the file STATUS.

    USER: the user's -ex commands, run the same way after CMDS (gdb's command line has
    none: prestart.py starts gdb before they are parsed). END (``--batch``): then end
    the process as gdb -batch would, status 1 when the last of them failed, but at
    once: gdb's own exit detaches from a dump that needs no goodbye and finalizes its
    Python, freeing kd's objects one by one (0.04 s after a 10,000-task ``kd ps``)."""
    items = [c if isinstance(c, tuple) else (c, False) for c in cmds]
    text = ("import gdb\n"
            f"for _c, _q in {items!r}:\n"
            "    try:\n"
            "        gdb.execute(_c, to_string=_q)\n"
            "    except gdb.error as _e:\n"
            "        gdb.write(str(_e) + '\\n', gdb.STDERR)\n"
            f"        if _c == {REPORT!r} and {status!r}:\n"
            f"            open({status!r}, 'w').write(str(_e))\n"
            "_rc = 0\n"
            f"for _c in {list(user)!r}:\n"
            "    try:\n"
            "        gdb.execute(_c)\n"
            "        _rc = 0\n"
            "    except gdb.error as _e:\n"
            "        gdb.write(str(_e) + '\\n', gdb.STDERR)\n"
            "        _rc = 1\n"
            "    except KeyboardInterrupt:\n"       # Ctrl-C: as gdb does for an -ex
            "        gdb.write('Quit\\n', gdb.STDERR)\n"
            "        _rc = 1\n")
    if end:
        text += ("gdb.flush()\n"
                 "gdb.flush(gdb.STDERR)\n"
                 "import os as _os\n"
                 "_os._exit(_rc)\n")
    return text


#: characters gdb's argument splitting (libiberty buildargv, gdb.string_to_argv) takes as is
def _check_debug_info(vmlinux):
    """GdbkdError unless VMLINUX has DWARF (.debug_info) or names a separate debug file
    (.gnu_debuglink): offsets may come from the build-id cache, but kd needs gdb's types."""
    from .check import debug_info_problem
    why = debug_info_problem(vmlinux)
    if why:
        raise GdbkdError(why)


def _warn_disagreements(d, vmlinux):
    """One stderr line per fact the dump and the vmlinux disagree on (postmortem/check.py;
    ``gdbkd core --check`` gives the whole report)."""
    from .check import open_warnings
    for w in open_warnings(d, vmlinux):
        print(f"gdbkd core: warning: {w}", file=sys.stderr, flush=True)


def _module_symbols(d, modules_dirs, say):
    """gdb commands loading the symbols of every module loaded in the dump, planned
    here from the dump (gdbkd/kmods.py) so that gdb needs no type lookup for them: the
    .ko under MODULES_DIRS by name, else the one gdbkd built with the loaded module's
    build-id; one line said per module (which .ko, or why none)."""
    from .. import kmods
    from ..model.reader import MemoryFault
    cmds = []
    try:
        plans = kmods.plan_modules(d.kernel, modules_dirs)
    except (MemoryFault, GdbkdError) as e:       # corrupt module list: gdb still opens
        say(f"modules: cannot read the module list ({e})")
        return cmds
    for p in plans:
        if p.copy is not None:
            cmds.append(f"add-symbol-file {p.copy}")
        say(f"module {p.status}")
    return cmds


def core_commands(d, vmlinux, target, *, report=True, with_kd=True, modules_dirs=(),
                  list_now=True, defer_symbols=False, walk_tasks=True):
    """(lines to print, gdb commands) that open the dump D (an open
    gdbkd.target Dump) served at TARGET, with the vmlinux at its KASLR offset.

    The server connects with the crashed task as the only thread (StubServer._listed)
    and is then told to list every task. LIST_NOW (see _when_to_list): True, gdb
    fetches them at the end, so that any gdb command (``thread 5000``) finds them;
    "after-prompt", gdb's event loop fetches them once the prompt is shown; False,
    they are fetched when something asks for the thread list (every kd command that
    picks a thread does).

    DEFER_SYMBOLS (with kd): gdb loads the vmlinux's and the modules' symbols only
    when a kd command needs gdb's symbols (gdbkd/kernel/symbols.py ``defer_load``);
    the connect is then quiet (gdb could only name the crashed task's pc ``??``).
    WALK_TASKS: the preload thread walks the task list too (it only opens the dump
    otherwise: with the symbols put off its walk is hidden behind nothing but the
    connect, and `kd kmem -s` of a 10,000-task dump would wait for it)."""
    off = d.kaslr_offset or 0
    release = d.osrelease
    # the kernel's own modules (unpacked by gdbkd fetch) come with their symbols
    from ..cache import cache_root
    kdirs = sorted((cache_root() / "kernels").glob(f"{release}-*/pkg/lib/modules/{release}")) \
        if release else []
    modules_dirs = list(modules_dirs) + [str(p) for p in kdirs[:1]]
    lines = [f"KASLR offset: {off:#x}"]
    mod_cmds = _module_symbols(d, modules_dirs, lines.append)
    vml = gdb_quote(os.path.abspath(vmlinux))
    from ..artifacts.source import gdb_source_commands      # the kernel source, when fetched
    load = [f"add-symbol-file -o {off:#x} {vml}", *mod_cmds]     # run quietly
    defer_symbols = defer_symbols and (with_kd or report)
    if defer_symbols:
        # the connect's "0x… in ?? ()" (gdb prints the stop from its event observer, past
        # to_string and logging) would look like a vmlinux without symbols: not printed
        cmds = ["set architecture aarch64", f"exec-file {vml}",
                *map(_quiet, gdb_source_commands(vmlinux)),
                *map(_quiet, ("set suppress-cli-notifications on", f"target remote {target}",
                              "set suppress-cli-notifications off"))]
    else:
        cmds = ["set architecture aarch64", _quiet(load[0]), f"exec-file {vml}",
                *map(_quiet, gdb_source_commands(vmlinux)), *map(_quiet, load[1:]),
                f"target remote {target}"]
    cmds.append(_quiet("monitor threads all"))
    if with_kd or report:
        # kd learns the module directories too (for `kd mod -S` and friends), loads nothing
        dirs = "".join(f" --modules-dir {gdb_quote(str(m))}" for m in modules_dirs)
        lay_path = d.offsets.get("path") if d.offsets else None
        if lay_path:
            # while gdb loads the vmlinux and connects, a thread of its Python opens the
            # dump and walks the task list for kd (target/preload.py); kd is loaded
            # once it is done (no imports in two threads at once)
            apaths = [os.path.abspath(p) for p in d.paths]
            cmds.insert(0, _quiet(f"python {path_prelude()}; import gdbkd.target.preload as _p; "
                                  f"_p.start({apaths!r}, {os.path.abspath(lay_path)!r}, {off}, "
                                  f"{bool(walk_tasks)}); del _p"))
            cmds.append(_quiet("python import gdbkd.target.preload as _p; _p.wait(); del _p"))
        # no import probe: the `gdbkd core` command ran gdbpython.ensure() before gdb started
        cmds.append(boot_command(probe=False))
        if defer_symbols:
            cmds.append(_quiet(f"python import gdbkd.kernel.symbols as _s; _s.defer_load("
                               f"{os.path.abspath(vmlinux)!r}, {off}, {load!r}); del _s"))
        # kd reads the dump in this gdb's own process (a cache lookup, not a round trip);
        # attached before `kd symbols`, whose kernel view then needs no probe of the target
        paths = " ".join(gdb_quote(os.path.abspath(p)) for p in d.paths)
        lay = f" --layouts {gdb_quote(lay_path)}" if lay_path else ""
        cmds += [_quiet(f"kd reader --dump {paths}{lay}"),
                 f"kd symbols --offset {off:#x} --no-check --no-modules --quiet{dirs}"]
    if report:
        cmds.append(REPORT)
    if list_now == "after-prompt":
        # run by gdb's event loop once the prompt is shown: the prompt comes as soon on a
        # 10,000-task dump as on a small one, and the list is complete before a person
        # can type `thread 5000` (a command typed meanwhile waits for it)
        cmds.append(_quiet("python gdb.post_event(lambda: gdb.selected_inferior().threads())"))
    elif list_now:
        cmds.append("python gdb.selected_inferior().threads()")
    return (lines if report else []), cmds


def _is_kd(cmd) -> bool:
    """Whether the -ex command CMD is a kd command (which asks for the threads it needs:
    gdb's thread list may then be put off, _when_to_list)."""
    return cmd.split()[:1] == ["kd"]


def _needs_kd(cmd) -> bool:
    """Whether the -ex command CMD needs what kd.py installs: a kd command, help or apropos
    about them, a script (``source``, ``python``) that may run them, or one of gdb's frame
    commands (kd's unwinder takes gdb through exception frames and the IRQ stack: without
    it gdb's own ``bt`` stopped at call_on_irq_stack)."""
    w = cmd.split()
    return bool(w) and (w[0] in ("kd", "source", "python", "py", "pi", "apropos", "bt", "backtrace",
                                 "where", "frame", "f", "up", "down", "info", "thread", "t")
                        or w[0] in ("help", "h") and w[1:2] == ["kd"])


def _first_kd(ex):
    """The kd subcommand the first -ex command runs ("kmem" of ``kd kmem -s``), or None."""
    words = ex[0].split() if ex else []
    return words[1] if len(words) > 1 and words[0] == "kd" else None


def _symbol_free_start(ex) -> bool:
    """Whether the first -ex command runs without gdb's symbols (SYMBOL_FREE_COMMANDS):
    then gdb loads them only if a later command needs them. A first command that needs
    them gets them loaded at start, while a thread of gdb's Python walks the task list."""
    from ..kdnames import SYMBOL_FREE_COMMANDS
    return _first_kd(ex) in SYMBOL_FREE_COMMANDS


def _when_to_list(batch, ex):
    """When gdb fetches every task as a thread (StubServer._listed): not at all when only kd
    commands run under --batch (they ask for threads when they select one), right after
    the start-up commands when a gdb command may name a thread, else once the prompt is
    up (an interactive session with no -ex, or only kd ones)."""
    only_kd = all(map(_is_kd, ex))
    if batch:
        return False if only_kd else True
    return "after-prompt" if only_kd else True


def _feed(fifo, text, gdb):
    """Write TEXT into the FIFO once gdb opens it (unless gdb is gone first)."""
    while True:
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            break
        except OSError as e:
            if e.errno != errno.ENXIO or gdb.poll() is not None:
                return False
            time.sleep(0.002)
    try:
        os.set_blocking(fd, True)
        os.write(fd, text.encode())
    except BrokenPipeError:
        return False
    finally:
        os.close(fd)
    return True


def _accept(lsock, gdb):
    """The connection gdb makes to the dump server, or None if gdb ends first."""
    while gdb.poll() is None:
        r, _, _ = select.select([lsock], [], [], 0.2)
        if r:
            conn, _ = lsock.accept()
            return conn
    return None


def run_core(dump, vmlinux, *, batch=False, ex=(), modules_dirs=(), report=True):
    """Open DUMP (a path or a split set's parts) with VMLINUX in gdb; returns gdb's
    exit status. Raises GdbkdError (gdb not started, or stopped) on bad input."""
    from . import prestart
    gdb = None
    dumpobj = None
    d = None
    old_int = signal.getsignal(signal.SIGINT)
    sfd, status = tempfile.mkstemp(prefix=f"gdbkd-core-report-{os.getpid()}-")   # the report's failure
    os.close(sfd)
    try:
        # gdb started by gdbkd/entry.py before click was imported, or now
        pre = prestart.take(batch)
        try:
            gdb, d = pre if pre is not None else prestart.spawn(batch)
        except FileNotFoundError:
            raise GdbkdError("gdb-multiarch is not installed (run install.sh)")
        fifo, sock = os.path.join(d, "init.gdb"), os.path.join(d, "stub.sock")
        signal.signal(signal.SIGINT, signal.SIG_IGN)        # Ctrl-C is gdb's
        from ..target import open_dump           # the heavy imports run while gdb starts
        dumpobj = open_dump(dump, vmlinux)
        _check_debug_info(vmlinux)
        _warn_disagreements(dumpobj, vmlinux)
        lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        lsock.bind(sock)
        lsock.listen(1)
        try:
            want_kd = not batch or any(map(_needs_kd, ex))
            list_now = _when_to_list(batch, ex)
            defer = list_now is False and not report and _symbol_free_start(ex)
            lines, cmds = core_commands(dumpobj, vmlinux, sock, report=report, with_kd=want_kd,
                                        modules_dirs=modules_dirs, list_now=list_now,
                                        defer_symbols=defer,
                                        walk_tasks=not defer or _first_kd(ex) == "ps")
            for line in lines:
                print(line, flush=True)
            if not _feed(fifo, _script(cmds, status, list(ex), end=batch), gdb):
                return gdb.wait()
            try:       # the crashed task's thread while gdb loads the vmlinux (the rest
                dumpobj.first_thread()   # when gdb asks for them: StubServer._listed)
            except GdbkdError:
                pass   # the server says why when gdb asks
            conn = _accept(lsock, gdb)
        finally:
            lsock.close()
        shutil.rmtree(d, ignore_errors=True)             # gdb has all it needs from it
        if conn is not None:
            from ..stub.server import StubServer
            with conn:
                StubServer(dumpobj, infd=conn.fileno(), outfd=conn.fileno(),
                           short_list=True).serve()
        rc = gdb.wait()
        failed = open(status).read().strip()
        if batch and report and failed and rc == 0:
            print(f"gdbkd core: {dumpobj.path}: the crash report could not be made "
                  f"({failed.splitlines()[0][:200]})", file=sys.stderr, flush=True)
            return 3
        return rc
    except BaseException:
        if gdb is not None and gdb.poll() is None:
            gdb.kill()
            gdb.wait()
        raise
    finally:
        signal.signal(signal.SIGINT, old_int)
        if d is not None:
            shutil.rmtree(d, ignore_errors=True)
        os.unlink(status)
        if dumpobj is not None:
            dumpobj.close()
        sys.stdout.flush()
