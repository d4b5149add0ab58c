"""Fuzz tier: the dump server's packet handling and framing on the real ELF dump.

Any packet gets a reply (or ends the session for k/D); no internal error, never a
traceback. Framing: arbitrary bytes on the wire never grow the input buffer past
MAX_PACKET and a well-formed packet after them is still answered. Budget as in
test_fuzz_parsers.py (``GDBKD_FUZZ_EXAMPLES``)."""

import io
import os

import pytest
from hypothesis import given, strategies as st

from gdbkd.stub.server import StubServer
from gdbkd.stub.rsp import MAX_PACKET, rsp_checksum
from test_fuzz_parsers import FUZZ

pytestmark = pytest.mark.fuzz

_PREFIXES = ["m", "p", "g", "H", "Hg", "Hc", "T", "qXfer:features:read:target.xml:",
             "qXfer:threads:read::", "qfThreadInfo", "qsThreadInfo", "qThreadExtraInfo,",
             "qRcmd,", "qC", "?", "qSupported:", "vCont;", "c", "s", "M", "X", "qSymbol",
             "qAttached", "vMustReplyEmpty", "Z0,", ""]


@pytest.fixture(scope="module")
def dump():
    import sys
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
    from conftest import real_dumps
    from gdbkd.target import open_dump
    td, _ = real_dumps()
    d = open_dump(td.elf, td.vmlinux)
    yield d
    d.close()


@pytest.fixture(scope="module")
def server(dump):
    err = io.StringIO()
    out = os.open(os.devnull, os.O_WRONLY)        # monitor output ('O' packets) goes here
    yield StubServer(dump, infd=-1, outfd=out, err=err), err
    os.close(out)


_ARG = st.one_of(st.text(alphabet="0123456789abcdefABCDEF,:;-", max_size=40),
                 st.binary(max_size=40).map(lambda b: b.decode("latin-1")))


@FUZZ
@given(prefix=st.sampled_from(_PREFIXES), arg=_ARG)
def test_fuzz_packets(server, prefix, arg):
    srv, err = server
    pkt = (prefix + arg).encode("latin-1")
    if pkt[:1] in (b"k", b"D"):
        return
    reply = srv.handle(pkt)
    assert reply is not None and isinstance(reply, (str, bytes))
    assert "internal error" not in err.getvalue(), err.getvalue()


@FUZZ
@given(junk=st.binary(max_size=3 * MAX_PACKET),
       long=st.integers(0, 3 * MAX_PACKET))
def test_fuzz_framing(dump, junk, long):
    """Junk with no '$' or '#', then maybe an unterminated packet longer than
    MAX_PACKET, then a real packet: the real packet is served, the buffer stays bounded."""
    import threading
    r, w = os.pipe()
    out = os.open(os.devnull, os.O_WRONLY)
    srv = StubServer(dump, infd=r, outfd=out, err=io.StringIO())
    junk = junk.replace(b"$", b"").replace(b"#", b"")
    body = b"$" + b"x" * (MAX_PACKET + 1 + long) if long else b""
    good = b"$qAttached#%02x" % rsp_checksum(b"qAttached")
    t = threading.Thread(target=lambda: os.write(w, junk + body + good))
    t.start()
    try:
        assert srv._next_packet() == b"qAttached"
        assert len(srv.buf) <= MAX_PACKET + 65536
    finally:
        t.join()
        for fd in (r, w, out):
            os.close(fd)
