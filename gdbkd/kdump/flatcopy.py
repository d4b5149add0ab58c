"""Copy a flattened makedumpfile stream off a raw disk image, up to its end marker.

``makedumpfile -F`` writes the *flattened* format (see gdbkd.dump.flattened):
a 4096-byte header, then big-endian ``{int64 offset; int64 size}`` records each
followed by ``size`` bytes, and a record with offset -1 at the end. Written to a
raw block device, the stream is followed by whatever the disk held before
(zeros for a fresh sparse image); this copies exactly the stream.
"""

import os
import struct

from ..dump.flattened import MDF_HEADER_SIZE, is_flattened
from ..errors import GdbkdError

__all__ = ["copy_flattened"]

_CHUNK = 1 << 20


def copy_flattened(disk, out) -> dict:
    """Copy the flattened dump at the start of ``disk`` into the open binary file ``out``.

    Returns {"bytes": length copied, "records": data records}. Raises GdbkdError
    if the disk holds no flattened stream or the stream has no end marker.
    """
    size = os.path.getsize(disk)
    with open(disk, "rb") as f:
        head = f.read(MDF_HEADER_SIZE)
        if len(head) < MDF_HEADER_SIZE or not is_flattened(head):
            raise GdbkdError("the dump disk holds no makedumpfile output (the capture kernel "
                             "wrote nothing)")
        out.write(head)
        pos, records = MDF_HEADER_SIZE, 0
        while True:
            rec = f.read(16)
            if len(rec) < 16:
                raise GdbkdError(f"the dump on the disk is incomplete (no end marker in "
                                 f"{size} bytes)")
            off, n = struct.unpack(">qq", rec)
            out.write(rec)
            pos += 16
            if off == -1:
                break
            if off < 0 or n < 0 or pos + n > size:
                raise GdbkdError(f"the dump on the disk is corrupt (record at disk offset "
                                 f"{pos - 16})")
            left = n
            while left:
                data = f.read(min(left, _CHUNK))
                out.write(data)
                left -= len(data)
            pos += n
            records += 1
    return {"bytes": pos, "records": records}
