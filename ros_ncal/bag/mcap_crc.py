"""Fill the chunk CRC-32 checksums of an MCAP file that ``rosbags`` writes as 0 ("not computed").

MCAP (https://mcap.dev/spec) checksums each Chunk record's uncompressed records (``uncompressed_crc``);
0 means "no checksum". ``ros2 bag record`` (the C++ mcap writer) fills them; ``rosbags``' writer leaves
them 0, so a damaged bag written by this project could not be detected. :func:`seal_mcap` computes them in
place after the writer closed the file (the file size does not change); ``rosbags``' reader verifies a
chunk's CRC whenever it reads the chunk, and :mod:`ros_ncal.bag.reader` reports a mismatch as
``BagReadError``. The DataEnd data-section CRC stays 0 (no reader used here checks it).
"""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

MCAP_MAGIC = b'\x89MCAP0\r\n'
OP_CHUNK = 0x06
OP_DATA_END = 0x0F
OP_FOOTER = 0x02


def seal_mcap(path: str | Path) -> int:
    """Fill the zero chunk CRCs of the MCAP file ``path``; return the number written. CRCs already present
    are kept. Raises ValueError when the file is not MCAP or its data section is truncated."""
    from rosbags.rosbag2.storage_mcap import DECOMPRESSORS
    path = Path(path)
    filled = 0
    with open(path, 'r+b') as f:
        head = f.read(len(MCAP_MAGIC))
        if head != MCAP_MAGIC:
            raise ValueError(f'{path}: not an MCAP file (bad magic)')
        while True:
            start = f.tell()
            hdr = f.read(9)
            if len(hdr) < 9:
                raise ValueError(f'{path}: truncated MCAP data section (no DataEnd record)')
            op, length = hdr[0], struct.unpack('<Q', hdr[1:])[0]
            if op in (OP_DATA_END, OP_FOOTER):
                break
            if op != OP_CHUNK:
                f.seek(length, 1)
                continue
            content = f.read(length)
            if len(content) < length:
                raise ValueError(f'{path}: truncated MCAP chunk at byte {start}')
            if struct.unpack_from('<I', content, 24)[0]:
                continue                        # already has a CRC
            usize = struct.unpack_from('<Q', content, 16)[0]
            clen = struct.unpack_from('<I', content, 28)[0]
            compression = content[32:32 + clen].decode()
            rlen = struct.unpack_from('<Q', content, 32 + clen)[0]
            records = content[40 + clen:40 + clen + rlen]
            raw = records if compression == '' else DECOMPRESSORS[compression](records, usize)
            crc = zlib.crc32(raw)
            if crc:                             # a CRC of 0 would read as "none": leave it
                f.seek(start + 9 + 24)
                f.write(struct.pack('<I', crc))
                f.seek(start + 9 + length)
                filled += 1
    return filled
