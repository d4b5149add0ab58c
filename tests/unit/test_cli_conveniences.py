"""Everyday CLI conveniences, through the real `gdbkd` entry point: --version, an example
in every command's --help, click's shell completion (commands, options, profile names)."""

import os
import subprocess

from conftest import GDBKD, ROOT


def _gdbkd(*args, env=None):
    return subprocess.run([*GDBKD, *args], capture_output=True, text=True, cwd=ROOT,
                          env=dict(os.environ, **(env or {})), stdin=subprocess.DEVNULL)


def _commands(path=()):
    out = _gdbkd(*path, "--help").stdout
    names = []
    if "Commands:" in out:
        for line in out.split("Commands:", 1)[1].splitlines()[1:]:
            if not line.startswith("  ") or not line.strip():
                break
            names.append(line.split()[0])
    return names


def test_version():
    from importlib.metadata import version
    r = _gdbkd("--version")
    assert r.returncode == 0 and r.stdout.startswith(f"gdbkd {version('gdbkd')} (Python 3."), r.stdout


def test_every_command_help_has_an_example():
    top = _commands()
    assert {"run", "core", "convert", "fetch", "gdbinit", "lab", "doctor"} <= set(top)
    paths = [(c,) for c in top] + [("lab", c) for c in _commands(("lab",))]
    for path in paths:
        r = _gdbkd(*path, "--help")
        assert r.returncode == 0, (path, r.stderr)
        ex = r.stdout.split("Example", 1)              # "Examples:" epilog, or the docstring's own
        assert len(ex) == 2 and "gdbkd " in ex[1], (path, r.stdout)


def _complete(words, cword):
    r = _gdbkd(env={"_GDBKD_COMPLETE": "bash_complete", "COMP_WORDS": words, "COMP_CWORD": str(cword)})
    assert r.returncode == 0, r.stderr
    return [l.split(",", 1)[1] for l in r.stdout.splitlines()]


def test_shell_completion():
    assert {"run", "core", "gdbinit"} <= set(_complete("gdbkd ", 1))
    assert "--dump-on-crash" in _complete("gdbkd run --dump", 2)
    assert set(_complete("gdbkd run debian-6.1", 2)) >= {"debian-6.1", "debian-6.12"}
    assert _complete("gdbkd fetch debian-5", 2) == ["debian-5.10"]
    r = _gdbkd(env={"_GDBKD_COMPLETE": "bash_source"})
    assert "complete " in r.stdout and "_GDBKD_COMPLETE=bash_complete" in r.stdout
