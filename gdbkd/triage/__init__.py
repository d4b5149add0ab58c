"""Fleet triage: many dumps → a title, a signature and the facts each, grouped in buckets.

- :mod:`.collect` — one dump (the unit of work, a plain picklable function): its
  VMCOREINFO (release, build-id), the vmlinux picked for it, ``gdbkd core --batch`` with
  ``kd analyze/deadlock/sys/mod --json``, and the title/signature of
  gdbkd/analysis/crashsig.py. A bad dump gives an error row, never an exception.
- :mod:`.engine` — where the units run: local processes (``--jobs``) or a Dask
  distributed cluster (``--dask tcp://…``, the ``fleet`` extra), each dump one task on a
  worker that can read it.
- :mod:`.report` — buckets by signature, and the text, JSON and static HTML renderings.
- :mod:`.cli` — ``gdbkd triage``.

See docs/triage.md.
"""
