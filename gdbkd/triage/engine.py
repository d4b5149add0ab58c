"""Where each dump's triage runs: local processes, or a Dask distributed cluster.

Both run :func:`gdbkd.triage.collect.triage_dump` once per dump and return the rows in the
order the dumps were given, so their results are the same list.

- **Local** (``--jobs N``): a ``concurrent.futures.ProcessPoolExecutor`` of N processes
  (default: the CPU count). Each unit's heavy part is its own gdb child, so N bounds the
  number of gdb processes at once.
- **Dask** (``--dask tcp://HOST:8786``): a ``distributed.Client`` connected to a running
  ``dask scheduler``. Workers are first asked which dumps they can read
  (``Client.run``: every worker answers for every path); each dump is then one task
  restricted to those workers (``workers=…, allow_other_workers=False``), so a dump on one
  host's local disk runs there, and a dump on shared storage anywhere. A dump no worker can
  read gets an error row. Workers need gdbkd installed (same version), gdb-multiarch, and the
  dumps and vmlinux files at the same paths (shared storage, docs/triage.md).
"""

import os

from ..errors import GdbkdError
from .collect import triage_dump, error_row, readable

__all__ = ["run_local", "run_dask"]


def run_local(dumps, vmlinux=None, vmlinux_dir=None, jobs=None, modules_dirs=()) -> list:
    """Rows of DUMPS, triaged by JOBS local processes (1: in this process's children only)."""
    jobs = jobs or os.cpu_count() or 1
    if jobs == 1 or len(dumps) == 1:
        return [triage_dump(d, vmlinux, vmlinux_dir, modules_dirs) for d in dumps]
    from concurrent.futures import ProcessPoolExecutor
    n = len(dumps)
    with ProcessPoolExecutor(max_workers=min(jobs, n)) as ex:
        return list(ex.map(triage_dump, dumps, [vmlinux] * n, [vmlinux_dir] * n, [modules_dirs] * n))


def _readable_all(paths):
    """[bool] per path on this worker (run on every worker by Client.run)."""
    return [readable(p) for p in paths]


def _client(address, timeout):
    try:
        from distributed import Client
    except ImportError:
        raise GdbkdError("--dask needs Dask's distributed scheduler: pip install 'gdbkd[fleet]'")
    try:
        return Client(address, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise GdbkdError(f"cannot reach the Dask scheduler at {address}: {msg[:200]}")


def run_dask(dumps, address, vmlinux=None, vmlinux_dir=None, modules_dirs=(), timeout=15) -> list:
    """Rows of DUMPS, each one task on a worker of the Dask cluster at ADDRESS that can read
    it."""
    client = _client(address, timeout)
    try:
        workers = client.scheduler_info().get("workers", {})
        if not workers:
            raise GdbkdError(f"the Dask scheduler at {address} has no workers")
        can = client.run(_readable_all, list(dumps))          # {worker address: [bool]}
        futures, rows = {}, [None] * len(dumps)
        for i, d in enumerate(dumps):
            ws = sorted(w for w, ok in can.items() if ok[i])
            if not ws:
                rows[i] = error_row(d, f"{d}: no Dask worker can read it")
                continue
            futures[i] = client.submit(triage_dump, d, vmlinux, vmlinux_dir, modules_dirs, key=f"gdbkd-triage-{i}-{d}",
                                       workers=ws, allow_other_workers=False, pure=False)
        for i, f in futures.items():
            try:
                rows[i] = f.result()
            # triage_dump returns bad input as a row; what arrives here is the cluster's own
            # failure (KilledWorker, a cancelled task, a lost connection), of any type
            except Exception as e:      # boundary: the cluster's failures are of any type
                text = str(e).splitlines()[0] if str(e) else type(e).__name__
                rows[i] = error_row(dumps[i], f"the Dask task failed: {text[:200]}")
        return rows
    finally:
        client.close()
