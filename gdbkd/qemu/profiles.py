"""Guest profiles: ``qemu_profiles/NAME.toml`` → a :class:`Profile`.

Profiles are looked up in ``$GDBKD_PROFILES``, the repo's ``qemu_profiles/`` and
the copy shipped as package data, in that order. Values may use ``${VAR}`` to
take user-supplied paths from the environment (the rlk-5.0 profile does).
"""

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import GdbkdError

__all__ = ["Profile", "load_profile", "list_profiles", "profile_dirs", "DEFAULT_PROFILE"]

DEFAULT_PROFILE = "debian-6.1"


def profile_dirs():
    dirs = []
    if os.environ.get("GDBKD_PROFILES"):
        dirs.append(Path(os.environ["GDBKD_PROFILES"]))
    repo = Path(__file__).resolve().parents[2] / "qemu_profiles"
    dirs.append(repo)
    dirs.append(Path(__file__).resolve().parent / "profiles_data")
    return [d for d in dirs if d.is_dir()]


def list_profiles():
    seen = {}
    for d in profile_dirs():
        for p in sorted(d.glob("*.toml")):
            seen.setdefault(p.stem, p)
    return seen


@dataclass
class Profile:
    name: str
    path: Path
    description: str = ""
    kernel: dict = field(default_factory=dict)
    qemu: dict = field(default_factory=dict)
    guest: dict = field(default_factory=dict)

    @property
    def series(self):
        return self.kernel.get("series", "")

    def expand(self, value, what):
        def sub(m):
            v = os.environ.get(m.group(1))
            if not v:
                raise GdbkdError(f"profile {self.name}: {what} needs ${m.group(1)} to be set "
                                 f"(see docs/profiles.md)")
            return v
        return re.sub(r"\$\{(\w+)\}", sub, value)

    def expand_optional(self, value):
        """``value`` with its ``${VAR}`` expanded, or None when a VAR it names is unset
        (or there is no value): for settings a profile can do without."""
        if not value or any(not os.environ.get(v) for v in re.findall(r"\$\{(\w+)\}", value)):
            return None
        return self.expand(value, "")


def load_profile(name: str) -> Profile:
    profiles = list_profiles()
    path = Path(name) if name.endswith(".toml") else profiles.get(name)
    if path is None or not path.is_file():
        known = ", ".join(sorted(profiles)) or "none"
        raise GdbkdError(f"unknown profile '{name}' (known: {known})")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise GdbkdError(f"profile {path}: {e}")
    return Profile(name=path.stem, path=path, description=data.get("description", ""),
                   kernel=data.get("kernel", {}), qemu=data.get("qemu", {}),
                   guest=data.get("guest", {}))
