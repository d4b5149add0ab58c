"""Page decompressors for makedumpfile's kdump-compressed format.

zlib comes with Python. lzo, snappy and zstd use optional PyPI modules, looked
up only when a page compressed that way is read, so a dump that does not use
them never needs them:

- lzo: ``python-lzo`` (module ``lzo``)
- snappy: ``python-snappy`` (module ``snappy``) or ``cramjam``
- zstd: ``zstandard``, or ``compression.zstd`` (Python 3.14+), or ``pyzstd``

A corrupt page can claim any expanded size: zlib output is capped at the page
size, and the sizes snappy (its varint prefix) and zstd (the frame's content
size) declare are checked before anything is allocated.
"""

import zlib

from .base import DumpError

__all__ = ["decompress", "require", "FLAG_ZLIB", "FLAG_LZO", "FLAG_SNAPPY", "FLAG_ZSTD", "COMPRESSED",
           "method_name"]

# page_desc.flags (makedumpfile diskdump_mod.h)
FLAG_ZLIB = 0x1
FLAG_LZO = 0x2
FLAG_SNAPPY = 0x4
FLAG_ZSTD = 0x20
COMPRESSED = FLAG_ZLIB | FLAG_LZO | FLAG_SNAPPY | FLAG_ZSTD

_impl = {}


def method_name(flags: int) -> str:
    for f, n in ((FLAG_ZLIB, "zlib"), (FLAG_LZO, "lzo"), (FLAG_SNAPPY, "snappy"), (FLAG_ZSTD, "zstd")):
        if flags & f:
            return n
    return "none" if not flags else f"unknown ({flags:#x})"


def _missing(method, pip):
    raise DumpError(f"this dump has {method}-compressed pages; install the Python module "
                    f"to read them: pip install {pip}")


def _lzo():
    try:
        import lzo
    except ImportError:
        _missing("lzo", "python-lzo")
    return lambda data, n: lzo.decompress(data, False, n)


def _snappy_length(data):
    """The expanded size a raw snappy block declares (its little-endian base-128 varint)."""
    n = shift = 0
    for i, b in enumerate(data[:10]):
        n |= (b & 0x7f) << shift
        if not b & 0x80:
            return n
        shift += 7
    return -1


def _bounded_snappy(fn):
    def run(data, n):
        declared = _snappy_length(data)
        if declared != n:
            raise DumpError(f"corrupt snappy page in the dump (it declares {declared} bytes, "
                            f"the page has {n})")
        return fn(data)
    return run


def _snappy():
    try:
        import snappy
        return _bounded_snappy(snappy.uncompress)
    except ImportError:
        pass
    try:
        import cramjam
        return _bounded_snappy(lambda data: bytes(cramjam.snappy.decompress_raw(data)))
    except ImportError:
        _missing("snappy", "python-snappy")


def _zstd():
    try:
        import zstandard
        d = zstandard.ZstdDecompressor()

        def run(data, n):
            declared = zstandard.frame_content_size(data)
            if declared > n:        # -1: not declared, then max_output_size bounds it
                raise DumpError(f"corrupt zstd page in the dump (it declares {declared} "
                                f"bytes, the page has {n})")
            return d.decompress(data, max_output_size=n)
        return run
    except ImportError:
        pass
    try:
        from compression import zstd
        return lambda data, n: zstd.decompress(data)
    except ImportError:
        pass
    try:
        import pyzstd
        return lambda data, n: pyzstd.decompress(data)
    except ImportError:
        _missing("zstd", "zstandard")


_LOADERS = {FLAG_LZO: _lzo, FLAG_SNAPPY: _snappy, FLAG_ZSTD: _zstd}


def _loader(f):
    fn = _impl.get(f)
    if fn is None:
        fn = _impl[f] = _LOADERS[f]()
    return fn


def require(flags: int):
    """DumpError with the pip command when a method in ``flags`` (the kdump header's
    ``status``: how its pages are compressed) has no module here: said when the dump is
    opened, not page by page later."""
    for f in _LOADERS:
        if flags & f:
            _loader(f)


def decompress(flags: int, data: bytes, size: int) -> bytes:
    """Decompress one page (``size`` bytes once expanded) stored with ``flags``."""
    if flags & FLAG_ZLIB:
        try:
            out = zlib.decompressobj().decompress(data, size + 1)
        except zlib.error as e:
            raise DumpError(f"corrupt zlib page in the dump ({e})")
    else:
        f = next((f for f in (FLAG_LZO, FLAG_SNAPPY, FLAG_ZSTD) if flags & f), None)
        if f is None:
            raise DumpError(f"unknown page compression in the dump (flags {flags:#x})")
        fn = _loader(f)
        try:
            out = fn(data, size)
        except DumpError:
            raise
        except Exception as e:  # boundary: lzo, zstandard and cramjam each raise their own type
            raise DumpError(f"corrupt {method_name(f)} page in the dump ({e})")
    if len(out) != size:
        raise DumpError(f"corrupt {method_name(flags)} page in the dump: {len(out)} bytes "
                        f"instead of {size}")
    return out
