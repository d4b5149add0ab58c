"""Recorded kernel memory for the model tier: record once from a real dump, replay anywhere.

A snapshot is what the gdb-free model (gdbkd/model) read while answering a set of
questions on one real dump, plus what it asked of the types and symbols, plus the
answers drgn 0.3.0 gave to the same questions on the same dump (the oracle):

    {"meta": {...}, "regions": [[address, hex bytes], ...], "faults": [[address, reason]],
     "symbols": {name: address or null}, "types": {"member": [[type, path, [off, size, kind]
     or null]], "sizeof": [[name, n]], "enum": [[name, {...}]]}, "oracle": {check: value}}

Replaying gives a :class:`gdbkd.model.kernel.Kernel` over a ReplayReader (a
BytesReader of the recorded regions that raises the recorded faults) with the
recorded types and symbols: no dump file, no vmlinux, no gdb, no QEMU, no cache.
A read outside the recording raises MemoryFault("not in the recorded memory"):
when the model starts reading something new, the snapshot is recorded again
(``python -m tests.model.record``), never edited.
"""

import gzip
import json
from pathlib import Path

from gdbkd.model.kernel import Kernel
from gdbkd.model.layout import TypeSource
from gdbkd.model.reader import BytesReader, MemoryFault, Reader

DATA = Path(__file__).resolve().parent / "data"
LINE = 64          # reads are recorded rounded out to 64-byte lines


class RecordingReader(Reader):
    """Reads through INNER (uncached: every read the model makes is seen) and keeps
    each one, rounded out to whole lines, and each fault."""

    def __init__(self, inner: Reader):
        super().__init__(cache=False)
        self.inner = inner
        self.lines = {}          # line address -> bytes (LINE long, or shorter at a fault)
        self.faults = {}

    def _fetch(self, addr, n):
        try:
            data = self.inner.read(addr, n)
        except MemoryFault as e:
            self.faults[e.addr] = e.reason
            # keep the readable part before the fault so a replay fails at the same place
            if e.addr > addr:
                self._fetch(addr, e.addr - addr)
            raise
        lo = addr - addr % LINE
        hi = addr + n
        a = lo
        while a < hi:
            if a not in self.lines:
                try:
                    self.lines[a] = self.inner.read(a, LINE)
                except MemoryFault:
                    # a line that straddles a bad page: keep just the bytes read
                    s = max(a, addr)
                    e = min(a + LINE, hi)
                    self.lines[(s, e)] = data[s - addr:e - addr]
            a += LINE
        return data

    def regions(self):
        """[(address, bytes)] merged into runs."""
        items = []
        for key, data in self.lines.items():
            start = key if isinstance(key, int) else key[0]
            items.append((start, data))
        items.sort()
        out = []
        for start, data in items:
            if out and out[-1][0] + len(out[-1][1]) >= start:
                base, buf = out[-1]
                tail = start + len(data) - (base + len(buf))
                if tail > 0:
                    out[-1] = (base, buf + data[len(data) - tail:])
            else:
                out.append((start, bytes(data)))
        return out


class RecordingTypes(TypeSource):
    """Answers from INNER, every question and answer kept."""

    def __init__(self, inner):
        self.inner = inner
        self.members = {}
        self.sizes = {}
        self.enums = {}

    def member(self, typename, path):
        key = (typename, path)
        if key not in self.members:
            m = self.inner.member(typename, path)
            self.members[key] = list(m) if m is not None else None
        m = self.members[key]
        return tuple(m) if m is not None else None

    def sizeof(self, name):
        if name not in self.sizes:
            self.sizes[name] = self.inner.sizeof(name)
        return self.sizes[name]

    def enum(self, name):
        if name not in self.enums:
            self.enums[name] = self.inner.enum(name)
        return self.enums[name]

    def covers(self, typename, path):
        return False

    def dump(self):
        return {"member": [[t, p, m] for (t, p), m in sorted(self.members.items())],
                "sizeof": sorted(self.sizes.items()),
                "enum": sorted(self.enums.items())}


class ReplayTypes(TypeSource):
    def __init__(self, rec):
        self.members = {(t, p): m for t, p, m in rec["member"]}
        self.sizes = dict(rec["sizeof"])
        self.enums = dict(rec["enum"])

    def member(self, typename, path):
        try:
            m = self.members[(typename, path)]
        except KeyError:
            raise NotRecorded(f"type question {typename}.{path}") from None
        return tuple(m) if m is not None else None

    def sizeof(self, name):
        try:
            return self.sizes[name]
        except KeyError:
            raise NotRecorded(f"sizeof({name})") from None

    def enum(self, name):
        try:
            return self.enums[name]
        except KeyError:
            raise NotRecorded(f"enum {name}") from None

    def covers(self, typename, path):
        return False


class NotRecorded(AssertionError):
    """The model asked something the snapshot does not hold: record it again."""


class ReplayReader(BytesReader):
    def __init__(self, regions, faults):
        super().__init__(regions, cache=False)
        self.faults = faults

    def _fetch(self, addr, n):
        for a, reason in self.faults.items():
            if addr <= a < addr + n:
                if a > addr:
                    super()._fetch(addr, a - addr)
                raise MemoryFault(a, reason)
        return super()._fetch(addr, n)


class Snapshot:
    """A recorded snapshot: ``meta``, ``oracle`` and :meth:`kernel` (a fresh replay)."""

    def __init__(self, path):
        self.path = Path(path)
        self.name = self.path.name.removesuffix(".json.gz")
        with gzip.open(self.path, "rt") as f:
            d = json.load(f)
        self.meta = d["meta"]
        self.oracle = d["oracle"]
        self._regions = {a: bytes.fromhex(h) for a, h in d["regions"]}
        self._faults = {a: r for a, r in d["faults"]}
        self._symbols = d["symbols"]
        self._types = d["types"]

    def kernel(self) -> Kernel:
        syms = self._symbols

        def symbol(name):
            try:
                return syms[name]
            except KeyError:
                raise NotRecorded(f"symbol {name}") from None
        return Kernel(ReplayReader(self._regions, self._faults), ReplayTypes(self._types), symbol)


def snapshots():
    return sorted(DATA.glob("*.json.gz"))


def write_snapshot(path, meta, reader: RecordingReader, types: RecordingTypes, symbols: dict, oracle):
    d = {"meta": meta,
         "regions": [[a, b.hex()] for a, b in reader.regions()],
         "faults": sorted([a, r] for a, r in reader.faults.items()),
         "symbols": symbols, "types": types.dump(), "oracle": oracle}
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    raw = json.dumps(d, separators=(",", ":"), sort_keys=True).encode()
    with open(tmp, "wb") as f, gzip.GzipFile(fileobj=f, mode="wb", compresslevel=9, mtime=0) as z:
        z.write(raw)
    tmp.replace(path)
