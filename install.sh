#!/usr/bin/env bash
# Install what gdbkd needs on a Debian 12 host (idempotent): apt packages and a
# Python venv (.venv) with the same minor version as gdb-multiarch's embedded Python.
set -euo pipefail
cd "$(dirname "$0")"
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
# qemu-user-static runs arm64 makedumpfile for the dump-format tests; liblzo2-dev builds python-lzo;
# e2fsprogs (mkfs.ext4 -d, debugfs) builds the ext4 root of kernels without initramfs support
PKGS="qemu-system-arm gdb-multiarch gcc-aarch64-linux-gnu binutils-aarch64-linux-gnu cpio graphviz make bc xz-utils zstd python3-venv python3-dev gcc qemu-user-static liblzo2-dev tmux e2fsprogs"
missing=""
for p in $PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  echo "gdbkd install: adding the arm64 architecture to dpkg" >&2
  $SUDO dpkg --add-architecture arm64; missing="$missing"; need_update=1
fi
if [ -n "$missing" ] || [ -n "${need_update:-}" ]; then
  echo "gdbkd install: apt-get install$missing" >&2
  $SUDO apt-get update -q >&2
  [ -z "$missing" ] || DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends $missing >&2
fi
PY=/usr/bin/python3   # gdb-multiarch embeds Debian's python3 (3.11 on bookworm)
if [ ! -x .venv/bin/python ]; then
  echo "gdbkd install: creating .venv" >&2
  "$PY" -m venv .venv >&2
fi
stamp=.venv/.gdbkd-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ install.sh -nt "$stamp" ]; then
  .venv/bin/pip install -q --upgrade pip >&2
  # editable as a plain path entry (.pth), not setuptools' import finder: the finder's
  # imports are ~10 ms of every gdbkd process, before gdbkd core can even start gdb.
  # setuptools calls that mode transitional (its warning is not shown): where it is gone,
  # the default editable install
  log=$(mktemp)
  if ! .venv/bin/pip install -q -e '.[test,formats]' --config-settings editable_mode=compat \
      >"$log" 2>&1; then
    .venv/bin/pip install -q -e '.[test,formats]' >&2
  fi
  rm -f "$log"
  touch "$stamp"
fi
# kd.py (sourced in a plain gdb) finds the venv through this file
.venv/bin/python -c 'import sys,site; print(site.getsitepackages()[0])' > .venv/gdbkd-site-packages
