"""The eight crash labs: kernel modules (package data) and their scenario files.

Each lab lives in ``gdbkd/labs/labN_<slug>/`` with its module sources, a
``Kbuild`` and a ``lab.toml`` that says how to trigger the bug and what the
guest must show afterwards (an oops in a given function, or a set of tasks
reported by the hung-task detector).  This module reads those scenario files
and builds a lab for a kernel; booting and triggering is the caller's job:

    lab = get_lab(2)
    files = build_lab(lab, kernel)          # guest path -> host path
    write_overlay(base, files, out, rc=lab_rc(lab))
    # then run each of lab.trigger in the guest shell

The modules use only interfaces present from 5.10 to 6.12 (proc_ops is 5.6+,
``kthread_run``/``misc_register``/rwsem/semaphore APIs are older).  Userspace
helpers are freestanding arm64 programs (raw ``svc #0`` system calls, their
own ``_start``): the guest has only busybox and the host no arm64 libc.
"""

import hashlib
import os
import re
import shlex
import subprocess
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path

from ..artifacts.modules import build_module_dir
from ..cache import cache_root, progress
from ..errors import GdbkdError

__all__ = ["Lab", "LABS_DIR", "GUEST_MODULE_DIR", "USER_CC", "USER_CFLAGS",
           "list_labs", "get_lab", "build_lab", "build_user_program", "lab_rc"]

LABS_DIR = Path(__file__).resolve().parent
GUEST_MODULE_DIR = "lib/modules/gdbkd"
USER_CC = "aarch64-linux-gnu-gcc"
USER_CFLAGS = ["-static", "-nostdlib", "-ffreestanding", "-fno-stack-protector",
               "-fno-asynchronous-unwind-tables", "-fno-pie", "-no-pie", "-O2", "-Wall",
               "-Wl,--build-id=none"]

_EXPECT = ("oops", "hang")
_SYSCTL_KEY = re.compile(r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_-]+)+$")


@dataclass
class Lab:
    """One scenario, as described by its ``lab.toml`` (see docs/labs/README.md)."""

    number: int
    slug: str
    title: str
    module: str
    trigger: list
    expect: str
    dir: Path
    fault_function: str = ""
    fault_address: str = ""
    hang_comms: list = field(default_factory=list)
    victim_comms: list = field(default_factory=list)
    sysctl: dict = field(default_factory=dict)
    user_programs: list = field(default_factory=list)

    @property
    def ko_guest_path(self) -> str:
        """Where build_lab() installs the module in the guest (no leading slash)."""
        return f"{GUEST_MODULE_DIR}/{self.module}.ko"


_REQUIRED = ("number", "slug", "title", "module", "trigger", "expect")
_KNOWN = {f.name for f in fields(Lab)} - {"dir"}
_TYPES = {"number": int, "trigger": list, "hang_comms": list, "victim_comms": list,
          "user_programs": list, "sysctl": dict}
_TYPE_NAMES = {int: "an integer", list: "a list of strings", dict: "a table", str: "a string"}


def _load(path: Path) -> Lab:
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise GdbkdError(f"lab file {path}: {e}")
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise GdbkdError(f"lab file {path}: missing {', '.join(missing)}")
    unknown = sorted(set(data) - _KNOWN)
    if unknown:
        raise GdbkdError(f"lab file {path}: unknown key {unknown[0]}")
    for key, value in data.items():
        want = _TYPES.get(key, str)
        if not isinstance(value, want) or isinstance(value, bool) or \
                (want is list and not all(isinstance(v, str) for v in value)):
            raise GdbkdError(f"lab file {path}: {key} must be {_TYPE_NAMES[want]}")
    lab = Lab(dir=path.parent, **data)
    if lab.expect not in _EXPECT:
        raise GdbkdError(f"lab file {path}: expect must be one of {', '.join(_EXPECT)}")
    if lab.expect == "oops" and not lab.fault_function:
        raise GdbkdError(f"lab file {path}: an oops lab needs fault_function")
    if lab.expect == "hang" and not lab.hang_comms:
        raise GdbkdError(f"lab file {path}: a hang lab needs hang_comms")
    for key in lab.sysctl:
        if not _SYSCTL_KEY.match(key):
            raise GdbkdError(f"lab file {path}: bad sysctl name {key!r}")
    for prog in lab.user_programs:
        if not (lab.dir / prog).is_file():
            raise GdbkdError(f"lab file {path}: user program {prog} not found")
    return lab


def list_labs() -> list:
    """All labs shipped in the package, ordered by number."""
    labs = [_load(p) for p in sorted(LABS_DIR.glob("lab*/lab.toml"))]
    return sorted(labs, key=lambda lab: lab.number)


def get_lab(n_or_slug) -> Lab:
    """A lab by number (1, "1"), slug ("null-deref") or directory name."""
    key = str(n_or_slug).strip().lower()
    for lab in list_labs():
        if key in (str(lab.number), lab.slug, lab.dir.name, lab.module):
            return lab
    known = ", ".join(f"{lab.number} ({lab.slug})" for lab in list_labs())
    raise GdbkdError(f"unknown lab '{n_or_slug}' (known: {known})")


def build_user_program(src, out_dir) -> Path:
    """Compile one freestanding arm64 C program statically; return the binary.

    The program provides its own ``_start`` and makes system calls with
    ``svc #0``: no libc is linked (none is installed for arm64 on the host,
    and the guest only has busybox).
    """
    src = Path(src)
    if not src.is_file():
        raise GdbkdError(f"user program {src} not found")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / src.stem
    tmp = out_dir / f".{src.stem}.{os.getpid()}.tmp"
    cmd = [USER_CC, *USER_CFLAGS, "-I", str(src.parent), "-o", str(tmp), str(src)]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True)
    except FileNotFoundError:
        raise GdbkdError(f"{USER_CC} not found (install gcc-aarch64-linux-gnu)")
    if r.returncode != 0:
        tmp.unlink(missing_ok=True)
        lines = [l for l in r.stderr.splitlines() if "error" in l.lower()]
        first = (lines or r.stderr.strip().splitlines() or ["compiler failed"])[0]
        raise GdbkdError(f"user program {src.name} does not build: {first.strip()}")
    os.replace(tmp, out)
    os.chmod(out, 0o755)
    return out


def _user_dir(lab: Lab) -> Path:
    h = hashlib.sha256()
    h.update(" ".join([USER_CC, *USER_CFLAGS]).encode())
    for p in sorted(lab.dir.iterdir()):
        if p.suffix in (".c", ".h"):
            h.update(p.name.encode() + b"\0" + p.read_bytes())
    return cache_root() / "labs" / f"lab{lab.number}-user-{h.hexdigest()[:16]}"


def build_lab(lab: Lab, kernel) -> dict:
    """Build the lab's module (and user programs) for ``kernel``.

    Returns the files to put in the guest: ``{guest path: host path}`` with the
    module at ``lib/modules/gdbkd/<module>.ko`` and each user program in ``bin/``.
    """
    kos = build_module_dir(lab.dir, kernel)
    ko = next((k for k in kos if k.name == f"{lab.module}.ko"), None)
    if ko is None:
        raise GdbkdError(f"lab {lab.number}: Kbuild built {', '.join(k.name for k in kos)}, "
                         f"not {lab.module}.ko")
    files = {lab.ko_guest_path: ko}
    if lab.user_programs:
        out_dir = _user_dir(lab)
        for prog in lab.user_programs:
            binary = out_dir / Path(prog).stem
            if not binary.exists():
                progress(f"building user program {prog} of lab {lab.number}")
                binary = build_user_program(lab.dir / prog, out_dir)
            files[f"bin/{binary.name}"] = binary
    return files


def lab_rc(lab: Lab) -> str:
    """Shell lines (busybox sh) applying the lab's sysctl settings.

    The trigger commands are not included: the caller runs them separately.
    """
    lines = []
    for key, value in lab.sysctl.items():
        path = "/proc/sys/" + key.replace(".", "/")
        lines.append(f"echo {shlex.quote(str(value))} > {path}")
    return "".join(line + "\n" for line in lines)
