"""gdbkd doctor: what the host lacks, and how to get it."""

import shutil
import subprocess

__all__ = ["check"]

TOOLS = [
    ("qemu-system-aarch64", "apt-get install qemu-system-arm"),
    ("gdb-multiarch", "apt-get install gdb-multiarch"),
    ("aarch64-linux-gnu-gcc", "apt-get install gcc-aarch64-linux-gnu"),
    ("aarch64-linux-gnu-objcopy", "apt-get install binutils-aarch64-linux-gnu"),
    ("dpkg-deb", "a Debian host is required"),
    ("apt-get", "a Debian host is required"),
    ("make", "apt-get install make"),
    ("dot", "apt-get install graphviz (only for deadlock pictures)"),
]


def check(print_fn=print):
    problems = []
    for tool, how in TOOLS:
        path = shutil.which(tool)
        print_fn(f"{'ok' if path else 'MISSING':8} {tool:28} {path or how}")
        if not path:
            problems.append(tool)
    r = subprocess.run(["dpkg", "--print-foreign-architectures"], capture_output=True, text=True)
    ok = "arm64" in r.stdout.split()
    print_fn(f"{'ok' if ok else 'note':8} {'dpkg arm64 architecture':28} "
             f"{'enabled' if ok else 'not needed (gdbkd uses a private apt config)'}")
    if shutil.which("gdb-multiarch"):
        from .gdbpython import check as check_gdb_python, python_version
        r = subprocess.run(["gdb-multiarch", "-nx", "-batch", "-ex", "python import sys; print('%d.%d' % sys.version_info[:2])"],
                           capture_output=True, text=True)
        versions = f"gdb's Python {r.stdout.strip() or '?'}, gdbkd's {python_version()}"
        err = check_gdb_python(use_cache=False)
        print_fn(f"{'ok' if not err else 'MISSING':8} {'gdb python loads kd':28} {err or versions}")
        if err:
            problems.append("gdb python")
    for mod in ("pygdbmi", "elftools", "capstone", "click"):
        try:
            __import__(mod)
            print_fn(f"{'ok':8} {'python: ' + mod:28}")
        except ImportError:
            print_fn(f"{'MISSING':8} {'python: ' + mod:28} ./install.sh")
            problems.append(mod)
    return problems
