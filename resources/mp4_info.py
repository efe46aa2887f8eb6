"""Read an MP4's length from its movie header box, without decoding anything."""

from __future__ import annotations

import struct
from collections.abc import Iterator


def _boxes(data: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, payload start, box end) of each box between `start` and `end`."""
    offset = start
    while offset + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, offset)
        header = 8
        if size == 1:
            if offset + 16 > end:
                return
            size = struct.unpack_from(">Q", data, offset + 8)[0]
            header = 16
        elif size == 0:
            size = end - offset
        if size < header or offset + size > end:
            return
        yield kind, offset + header, offset + size
        offset += size


def mp4_duration(data: bytes) -> float | None:
    """The movie's duration in seconds from moov/mvhd, or None if it cannot be read."""
    try:
        for kind, start, end in _boxes(data, 0, len(data)):
            if kind != b"moov":
                continue
            for inner, payload, _ in _boxes(data, start, end):
                if inner != b"mvhd":
                    continue
                version = data[payload]
                if version == 1:
                    timescale, duration = struct.unpack_from(">IQ", data, payload + 20)
                else:
                    timescale, duration = struct.unpack_from(">II", data, payload + 12)
                return round(duration / timescale, 3) if timescale else None
    except (struct.error, IndexError):
        return None
    return None
