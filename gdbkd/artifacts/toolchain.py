"""Private cross toolchains for kernels whose headers want a newer compiler than the host's.

The Debian 6.12 (trixie) headers are configured for ``aarch64-linux-gnu-gcc-14``
and pass ``-fmin-function-alignment=8``: arm64 selects FUNCTION_ALIGNMENT_8B for
DYNAMIC_FTRACE_WITH_CALL_OPS ("arm64: ftrace: Add DYNAMIC_FTRACE_WITH_CALL_OPS",
v6.4) and kbuild passes the gcc-14 option when the compiler has it ("kbuild: Use
-fmin-function-alignment when available", v6.9).  Debian 12's cross gcc is 12,
which rejects it; dropping it builds modules whose ftrace call sites the 6.12
kernel cannot patch (``kernel BUG at arch/arm64/kernel/patching.c:44`` on
insmod), so the real gcc 14 is used.

``ensure_toolchain("trixie-gcc-14")`` downloads trixie's amd64 cross gcc 14 and
cross binutils plus the host libraries they link against (trixie's glibc
2.41 among them), unpacks them privately with ``dpkg-deb -x`` into
``<cache>/tools/trixie-gcc-14`` (temp dir + rename) and writes small shell
wrappers that run each program through trixie's own dynamic loader with
``--library-path``: the host's glibc (2.36) is never replaced or mixed in.
The compiler drivers get ``-B <tools>/libexec/`` so the programs they spawn
(cc1, as, collect2, ld) go through wrappers too.  ``bin/host-run PROG ARGS``
runs any host program the same way: trixie's kbuild ``modpost`` needs glibc 2.38.

Only module builds are supported: no arm64 C library is fetched, so linking
arm64 user programs against libc does not work with these toolchains.

    tc = ensure_toolchain("trixie-gcc-14")   # {"make_vars": {...}, "path": ".../bin", ...}
    apply_toolchain(kernel, "trixie-gcc-14")  # or set kernel.make_vars/make_prefix by hand
"""

import os
import platform
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from elftools.elf.elffile import ELFFile
from elftools.common.exceptions import ELFError

from ..cache import cache_root, atomic_dir, progress
from ..errors import GdbkdError
from .apt import Apt

__all__ = ["TOOLCHAINS", "ToolchainSpec", "ensure_toolchain", "apply_toolchain", "toolchain_dir"]


@dataclass(frozen=True)
class ToolchainSpec:
    """What to fetch for one toolchain and how to wrap it.

    ``roots`` are (package, arch); their Depends are followed for host (amd64)
    packages only.  Architecture ``all`` dependencies of the cross packages are
    the arm64 target runtime (libc6-arm64-cross, libasan8-arm64-cross, ...) and
    are only needed to link arm64 user programs, so they are not followed;
    ``skip`` names host packages that hold nothing a build runs.
    """

    suites: tuple
    target: str
    roots: tuple
    skip: frozenset
    drivers: tuple          # bin/ programs that spawn others (-B <libexec>/); [0] is CC
    libexec: dict           # wrapper name -> real program, relative to root/
    aliases: dict           # extra bin/ name -> bin/ name
    loader: str             # relative to root/
    libdir: str             # relative to root/


TOOLCHAINS = {
    "trixie-gcc-14": ToolchainSpec(
        suites=("trixie", "trixie-security"),
        target="aarch64-linux-gnu",
        roots=(("gcc-14-aarch64-linux-gnu", "amd64"),      # the driver, collect2
               ("cpp-14-aarch64-linux-gnu", "amd64"),      # cc1
               ("binutils-aarch64-linux-gnu", "amd64"),    # as, ld, objcopy, nm, ar, ...
               ("libgcc-14-dev-arm64-cross", "all"),       # gcc's own headers (stdarg.h, ...)
               ("libc6", "amd64")),                        # the loader that runs them all
        skip=frozenset({
            "binutils-common",                 # documentation and translations only
            "gcc-14-base", "gcc-14-aarch64-linux-gnu-base", "gcc-14-cross-base",  # docs/dirs
            "libcc1-0",                        # the GDB "compile" plugin, not used to build
        }),
        drivers=("aarch64-linux-gnu-gcc-14", "aarch64-linux-gnu-cpp-14"),
        libexec={
            "cc1": "usr/libexec/gcc-cross/aarch64-linux-gnu/14/cc1",
            "collect2": "usr/libexec/gcc-cross/aarch64-linux-gnu/14/collect2",
            "as": "usr/aarch64-linux-gnu/bin/as",
            "ld": "usr/aarch64-linux-gnu/bin/ld",
        },
        aliases={"aarch64-linux-gnu-gcc": "aarch64-linux-gnu-gcc-14",
                 "aarch64-linux-gnu-cpp": "aarch64-linux-gnu-cpp-14"},
        loader="usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
        libdir="usr/lib/x86_64-linux-gnu",
    ),
}

# make variables naming binutils programs (the kernel's top Makefile derives
# them from CROSS_COMPILE, which Debian's headers pin with "override")
_BINUTILS_VARS = {"LD": "ld", "AR": "ar", "NM": "nm", "OBJCOPY": "objcopy",
                  "OBJDUMP": "objdump", "READELF": "readelf", "STRIP": "strip"}

# docs, and the LTO programs (70 MB): kernel modules are not built with gcc LTO, and
# lto-wrapper would re-run the unwrapped driver anyway
_PRUNE = ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale",
          "usr/share/lintian", "usr/share/gdb", "usr/share/bug",
          "usr/bin/aarch64-linux-gnu-lto-dump-14",
          "usr/libexec/gcc-cross/aarch64-linux-gnu/14/lto1",
          "usr/libexec/gcc-cross/aarch64-linux-gnu/14/lto-wrapper")


def toolchain_dir(name: str) -> Path:
    return cache_root() / "tools" / name


def _spec(name) -> ToolchainSpec:
    spec = TOOLCHAINS.get(name)
    if spec is None:
        raise GdbkdError(f"unknown toolchain {name!r} (known: {', '.join(sorted(TOOLCHAINS))})")
    if platform.machine() not in ("x86_64", "AMD64"):
        raise GdbkdError(f"toolchain {name} runs on x86_64 hosts only (this is {platform.machine()})")
    return spec


def _dep_names(fields: dict):
    """First alternative of each Depends/Pre-Depends entry, without version or arch."""
    text = ",".join(fields.get(k, "") for k in ("Pre-Depends", "Depends"))
    for entry in text.split(","):
        entry = entry.strip()
        if entry:
            yield re.split(r"[\s(:]", entry.split("|")[0].strip(), maxsplit=1)[0]


def _resolve(apt: Apt, spec: ToolchainSpec) -> list:
    """[(name, arch, fields)] for the roots and their host-library dependencies."""
    out, seen = [], set()
    todo = list(spec.roots)
    while todo:
        name, arch = todo.pop(0)
        if name in seen or name in spec.skip:
            continue
        seen.add(name)
        f = apt.show(f"{name}:{arch}")
        if f is None and arch != "all":
            f = apt.show(f"{name}:all")
        if f is None:
            raise GdbkdError(f"toolchain package {name} ({arch}) is not in {', '.join(spec.suites)}", 3)
        is_root = (name, arch) in spec.roots
        if f.get("Architecture") == "all" and not is_root:
            continue                                 # arm64 target runtime, see ToolchainSpec
        out.append((name, f.get("Architecture", arch), f))
        todo += [(d, "amd64") for d in _dep_names(f)]
    return out


def _needed(path: Path):
    try:
        with open(path, "rb") as fh:
            elf = ELFFile(fh)
            dyn = elf.get_section_by_name(".dynamic")
            if dyn is None:
                return []
            return [t.needed for t in dyn.iter_tags() if t.entry.d_tag == "DT_NEEDED"]
    except (ELFError, OSError):
        return None


def _check_closure(root: Path, spec: ToolchainSpec, programs):
    """Every shared library the wrapped programs (and those libraries) need is unpacked."""
    libdir = root / spec.libdir
    missing, todo, done = set(), list(programs), set()
    while todo:
        p = todo.pop()
        if p in done:
            continue
        done.add(p)
        needed = _needed(p)
        if needed is None:
            raise GdbkdError(f"toolchain file {p.relative_to(root)} is not a readable ELF program")
        for so in needed:
            lib = libdir / so
            if lib.exists():
                todo.append(lib.resolve())
            else:
                missing.add(f"{so} (for {p.name})")
    if missing:
        raise GdbkdError(f"toolchain is missing shared libraries: {', '.join(sorted(missing))}")


def _wrapper(real: str, extra: str = "") -> str:
    # Paths are relative to the wrapper ($0 is its path when run through PATH or
    # by absolute name), so the directory works before and after the atomic rename.
    return ("#!/bin/sh\n"
            "# runs the program with the toolchain's own C library and loader\n"
            "t=\"${0%/*}/..\"\n"
            f"exec \"$t/root/LOADER\" --library-path \"$t/root/LIBDIR\" {real}{extra}\"$@\"\n")


def _write_wrappers(d: Path, spec: ToolchainSpec) -> list:
    """Write bin/ and libexec/ wrappers; return the real programs they run."""
    root, bindir, libexec = d / "root", d / "bin", d / "libexec"
    bindir.mkdir()
    libexec.mkdir()

    def emit(path: Path, real_rel: str, extra=""):
        text = _wrapper(f"\"$t/root/{real_rel}\" ", extra).replace("LOADER", spec.loader) \
            .replace("LIBDIR", spec.libdir)
        path.write_text(text)
        path.chmod(0o755)

    reals = []
    for prog in sorted((root / "usr/bin").glob(f"{spec.target}-*")):
        if not prog.is_file() or _needed(prog) is None:
            continue
        extra = "-B\"$t/libexec/\" " if prog.name in spec.drivers else ""
        emit(bindir / prog.name, f"usr/bin/{prog.name}", extra)
        reals.append(prog.resolve())
    for alias, target in spec.aliases.items():
        shutil.copy2(bindir / target, bindir / alias)
    for name, rel in spec.libexec.items():
        if not (root / rel).is_file():
            raise GdbkdError(f"toolchain lacks {rel}: the package layout changed")
        emit(libexec / name, rel)
        reals.append((root / rel).resolve())
    host_run = bindir / "host-run"
    host_run.write_text(_wrapper("").replace("LOADER", spec.loader).replace("LIBDIR", spec.libdir))
    host_run.chmod(0o755)
    return reals


def _smoke_test(d: Path, spec: ToolchainSpec):
    """Compile and assemble one function with the wrapped gcc: the toolchain really runs."""
    src = d / "smoke.c"
    obj = d / "smoke.o"
    src.write_text("int smoke(int x) { return x + 1; }\n")
    cc = d / "bin" / f"{spec.target}-gcc"
    r = subprocess.run([str(cc), "-O2", "-fmin-function-alignment=8", "-c", str(src), "-o", str(obj)],
                       capture_output=True, text=True)
    ok = r.returncode == 0 and obj.exists() and obj.read_bytes()[18:20] == (183).to_bytes(2, "little")
    src.unlink()
    if obj.exists():
        obj.unlink()
    if not ok:
        err = (r.stderr.strip().splitlines() or ["no aarch64 object produced"])[-1]
        raise GdbkdError(f"toolchain compiler does not work: {err[:200]}")


def _build(d: Path, name: str, spec: ToolchainSpec):
    apt = Apt(list(spec.suites))
    apt.update()
    pkgs = _resolve(apt, spec)
    debs = [apt.download(n, a, f["Version"], cache_root() / "debs", size=f.get("Size")) for n, a, f in pkgs]
    progress(f"unpacking toolchain {name} ({len(debs)} packages)")
    root = d / "root"
    for deb in debs:
        r = subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], capture_output=True, text=True)
        if r.returncode != 0:
            raise GdbkdError(f"cannot unpack {deb.name}: {r.stderr.strip()[:200]}")
    for rel in _PRUNE:
        p = root / rel
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
    if not (root / spec.loader).exists():
        raise GdbkdError(f"toolchain {name} has no dynamic loader {spec.loader}")
    reals = _write_wrappers(d, spec)
    _check_closure(root, spec, reals)
    _smoke_test(d, spec)
    (d / "packages.txt").write_text("".join(f"{n} {f['Version']} {a}\n" for n, a, f in pkgs))


def ensure_toolchain(name: str) -> dict:
    """Fetch/unpack toolchain ``name`` once; return how to build kernel modules with it.

    Returns ``{"make_vars": {...}, "path": "<dir>/bin", "host_run": "<dir>/bin/host-run",
    "packages": ["name version arch", ...]}``.  ``make_vars`` name the compiler and
    binutils by absolute path and set ``CONFIG_DEBUG_INFO_BTF_MODULES=`` (the
    module BTF step needs pahole, which is not provided); putting ``path``
    first in PATH makes ``aarch64-linux-gnu-*`` resolve to the same programs.
    """
    spec = _spec(name)
    d = toolchain_dir(name)
    if not (d / ".complete").exists():
        progress(f"fetching toolchain {name} (one time, ~40 MB)")
        with atomic_dir(d) as tmp:
            _build(tmp, name, spec)
            (tmp / ".complete").write_text(name + "\n")
    bindir = d / "bin"
    make_vars = {"CC": str(bindir / spec.drivers[0]),
                 **{var: str(bindir / f"{spec.target}-{tool}") for var, tool in _BINUTILS_VARS.items()},
                 "CONFIG_DEBUG_INFO_BTF_MODULES": ""}
    return {"make_vars": make_vars, "path": str(bindir), "host_run": str(bindir / "host-run"),
            "packages": (d / "packages.txt").read_text().splitlines()}


def apply_toolchain(kernel, name: str):
    """Make ``build_module_dir`` use toolchain ``name`` for ``kernel`` (idempotent).

    Sets the compiler/binutils make variables, puts the toolchain's bin/ first
    in PATH through ``kernel.make_prefix`` (``env PATH=...``), and runs the
    kernel's kbuild ``modpost`` through the toolchain's loader (``MODPOST=``).
    In scripts/Makefile.modpost of 6.1 and 6.12 that variable is the program
    alone (options go in ``modpost-args``); in 5.10 it also carried the options,
    so this override is not valid for 5.10 kbuild (which needs no toolchain
    anyway: bookworm's gcc-12 builds its modules).  Debian's kbuild
    ships ``modpost`` as a selector that execs ``modpost.real-<lsb|msb>-<32|64>``
    with the host's loader; for an aarch64 (little-endian, 64-bit) target the
    real program is ``modpost.real-lsb-64``, called directly.
    """
    tc = ensure_toolchain(name)
    kernel.make_vars.update(tc["make_vars"])
    if kernel.kdir:
        mod = Path(kernel.kdir) / "scripts" / "mod"
        real = mod / "modpost.real-lsb-64"
        kernel.make_vars["MODPOST"] = f"{tc['host_run']} {real if real.exists() else mod / 'modpost'}"
    path_var = f"PATH={tc['path']}:"
    if not (kernel.make_prefix[:1] == ["env"] and any(a.startswith(path_var) for a in kernel.make_prefix)):
        kernel.make_prefix = ["env", path_var + os.environ.get("PATH", os.defpath),
                              *kernel.make_prefix]
    return kernel
