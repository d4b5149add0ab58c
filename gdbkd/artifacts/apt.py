"""A private apt configuration for fetching arm64 kernel packages of any suite.

The host's own apt state is never touched: lists and package caches live under
the gdbkd cache, the archive URIs are taken from the host's apt sources (so a
mirror configured on the machine is honoured), and only the suite names change.
"""

import os
import re
import shutil
import subprocess
from pathlib import Path

from ..cache import cache_root, key_of, progress
from ..errors import GdbkdError
from ..progress import Bar

__all__ = ["Apt", "host_archive_uris"]

KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"


def host_archive_uris():
    """Return (main_uri, security_uri) read from the host's apt sources."""
    texts = []
    for p in [Path("/etc/apt/sources.list")] + sorted(Path("/etc/apt/sources.list.d").glob("*")):
        if p.suffix in (".list", ".sources") and p.is_file():
            texts.append(p.read_text(errors="replace"))
    uris = []
    for t in texts:
        uris += re.findall(r"^\s*URIs:\s*(\S+)", t, re.M)
        uris += re.findall(r"^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s", t, re.M)
    main = [u for u in uris if re.search(r"/debian/?$", u)]
    sec = [u for u in uris if re.search(r"/debian-security/?$", u)]
    if not main:
        raise GdbkdError("no Debian archive found in /etc/apt/sources*: cannot fetch kernel packages")
    return main[0].rstrip("/"), (sec[0].rstrip("/") if sec else None)


class Apt:
    """apt-get/apt-cache over a private state dir for the given suites."""

    def __init__(self, suites):
        self.suites = list(suites)
        main, sec = host_archive_uris()
        lines = []
        for s in self.suites:
            uri = sec if s.endswith("-security") else main
            if uri is None:
                continue
            lines.append(f"deb [arch=amd64,arm64 signed-by={KEYRING}] {uri} {s} main")
        self.dir = cache_root() / "apt" / key_of(*lines)
        (self.dir / "lists" / "partial").mkdir(parents=True, exist_ok=True)
        (self.dir / "archives" / "partial").mkdir(parents=True, exist_ok=True)
        self.sources = self.dir / "sources.list"
        if not self.sources.exists() or self.sources.read_text() != "\n".join(lines) + "\n":
            self.sources.write_text("\n".join(lines) + "\n")
        self._updated = False

    def _opts(self):
        return [
            "-o", f"Dir::Etc::SourceList={self.sources}",
            "-o", "Dir::Etc::SourceParts=/nonexistent",
            "-o", f"Dir::State::Lists={self.dir / 'lists'}",
            "-o", f"Dir::Cache={self.dir}",
            "-o", f"Dir::Cache::archives={self.dir / 'archives'}",
            "-o", "APT::Architecture=amd64",
            "-o", "APT::Architectures::=amd64", "-o", "APT::Architectures::=arm64",
            "-o", "APT::Sandbox::User=root",
            "-o", "Acquire::Retries=2",
        ]

    def update(self):
        if self._updated:
            return
        progress(f"updating package lists for {', '.join(self.suites)}")
        r = subprocess.run(["apt-get", "-q", *self._opts(), "update"],
                           capture_output=True, text=True)
        failed = re.findall(r"^(?:E|Err):.*$", r.stdout + r.stderr, re.M)
        if r.returncode != 0 or failed:
            msg = (failed or (r.stderr.strip().splitlines() or ["apt-get update failed"]))[-1]
            raise GdbkdError(f"cannot reach the Debian archive ({msg.strip()[:160]})", 3)
        self._updated = True

    def pkgnames(self, prefix):
        r = subprocess.run(["apt-cache", *self._opts(), "pkgnames", prefix],
                           capture_output=True, text=True)
        return sorted(set(r.stdout.split()))

    def show(self, spec, version=None):
        """Fields of the candidate of ``spec`` ("name:arch"), or None. With ``version``, the
        stanza of that version whichever suite holds it (an older kernel ABI's headers need
        the linux-kbuild of their own upload, which is not the candidate once a newer one
        is in another suite), or None."""
        opts = [] if version else ["--no-all-versions"]
        r = subprocess.run(["apt-cache", *self._opts(), "show", *opts, spec],
                           capture_output=True, text=True)
        if r.returncode != 0 or not r.stdout.strip():
            return None
        for stanza in r.stdout.split("\n\n"):
            fields, last = {}, None
            for line in stanza.splitlines():
                if line.startswith(" ") and last:
                    fields[last] += "\n" + line.strip()
                elif ":" in line:
                    last, v = line.split(":", 1)
                    fields[last] = v.strip()
            if fields and (version is None or fields.get("Version") == version):
                return fields
        return None

    def download(self, name, arch, version, dest: Path, sha256=None, size=None):
        """Download one .deb into ``dest`` (skipped when already there); return its path.
        SIZE (bytes, apt's Size field) makes the bar on a terminal a bar."""
        dest.mkdir(parents=True, exist_ok=True)
        fname = f"{name}_{version.replace(':', '%3a')}_{arch}.deb"
        out = dest / fname
        if out.exists():
            return out
        tmp = dest / f".dl-{os.getpid()}"
        tmp.mkdir(exist_ok=True)
        with Bar(f"downloading {name} {version} ({arch})", int(size or 0)) as bar:
            p = subprocess.Popen(["apt-get", "-q", *self._opts(), "download", f"{name}:{arch}={version}"],
                                 cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            while True:
                try:
                    _, err = p.communicate(timeout=0.25)
                    break
                except subprocess.TimeoutExpired:       # apt writes the .deb in place as it arrives
                    bar.moveto(sum(f.stat().st_size for f in tmp.rglob("*") if f.is_file()))
                except BaseException:
                    p.kill()
                    p.wait()
                    shutil.rmtree(tmp, ignore_errors=True)
                    raise
            got = list(tmp.glob("*.deb"))
            if p.returncode != 0 or not got:
                shutil.rmtree(tmp, ignore_errors=True)
                err = (err.strip().splitlines() or ["download failed"])[-1]
                raise GdbkdError(f"cannot download {name} {version}: {err[:160]}", 3)
        os.replace(got[0], out)
        shutil.rmtree(tmp, ignore_errors=True)
        return out
