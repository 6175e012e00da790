"""Refuse videos whose header claims more frames than their bytes could hold, before decord.

decord reserves memory for the frame count the container header declares. A damaged header
(one flipped byte in an mp4's ``stts`` box can claim two billion frames) makes that reservation
fail inside C++ with ``std::bad_alloc``, which no Python code can catch: the process aborts,
and with it a DataLoader worker and the whole run. Every real frame takes at least one byte of
the file, so a count above the file's size is damage; such a video is reported as a
:class:`~clipbert.data.decoding.DecodeError`, and the PyAV fallback (which counts frames by
demuxing) can still decode it.

ISO media files (mp4, mov, m4v, 3gp: nearly every video in the ClipBERT datasets) are checked by
reading their few header boxes, which costs microseconds. Other containers, and ISO files whose
header gives no frame count, are probed with PyAV the way decord counts: the stream's frame
count, else its average rate times the file's duration.
"""

from __future__ import annotations

import io
import math
import struct
from collections.abc import Iterator

# Boxes that hold the boxes on the way from the file to a video track's sample tables.
_ISO_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl"}
_ISO_TOP_LEVEL = {b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pdin", b"uuid"}


def declared_frame_count_error(data: bytes) -> str | None:
    """Why the header's frame count cannot be true (None when it is plausible or unknown)."""
    counts = _iso_video_sample_counts(data)
    if counts is None or not counts or 0 in counts:
        counts = _probed_frame_counts(data)
    for count in counts:
        if not math.isfinite(count) or count > len(data):
            return (
                f"the header claims {count:.0f} frames in a file of {len(data)} bytes; "
                "it is damaged"
            )
    return None


def _iso_video_sample_counts(data: bytes) -> list[int] | None:
    """The sample count of each video track in an ISO media file (``stts`` totals), or None
    when ``data`` does not start like one."""
    if len(data) < 8 or data[4:8] not in _ISO_TOP_LEVEL:
        return None
    counts: list[int] = []
    for kind, start, end in _boxes(data, 0, len(data)):
        if kind == b"moov":
            _collect_video_counts(data, start, end, counts)
    return counts


def _collect_video_counts(data: bytes, start: int, end: int, counts: list[int]) -> None:
    """Append the ``stts`` total of every video ``trak`` between ``start`` and ``end``."""
    for kind, body, body_end in _boxes(data, start, end):
        if kind != b"trak":
            continue
        handlers: set[bytes] = set()
        total: int | None = None
        for inner, inner_start, inner_end in _walk(data, body, body_end):
            if inner == b"hdlr" and inner_end - inner_start >= 12:  # QuickTime has two
                handlers.add(data[inner_start + 8 : inner_start + 12])
            elif inner == b"stts" and inner_end - inner_start >= 8:
                (entries,) = struct.unpack_from(">I", data, inner_start + 4)
                entries = min(entries, (inner_end - inner_start - 8) // 8)
                table = struct.unpack_from(f">{2 * entries}I", data, inner_start + 8)
                total = sum(table[0::2])
        if b"vide" in handlers and total is not None:
            counts.append(total)


def _walk(data: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """Every box below ``start``..``end`` that lies on the path to the sample tables."""
    for kind, body, body_end in _boxes(data, start, end):
        yield kind, body, body_end
        if kind in _ISO_CONTAINERS:
            yield from _walk(data, body, body_end)


def _boxes(data: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, body start, body end) of the boxes laid end to end in ``data[start:end]``; stops
    at the first box whose size does not fit."""
    position = start
    while position + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, position)
        header = 8
        if size == 1 and position + 16 <= end:
            (size,) = struct.unpack_from(">Q", data, position + 8)
            header = 16
        elif size == 0:
            size = end - position
        if size < header or position + size > end:
            return
        yield kind, position + header, position + size
        position += size


def _probed_frame_counts(data: bytes) -> list[float]:
    """decord's frame count for each video stream, as PyAV reads the header: the declared
    count, else average rate times duration. Empty when PyAV cannot open the file (decord then
    fails with an ordinary, catchable error)."""
    import av

    try:
        with av.open(io.BytesIO(data)) as container:
            seconds = (container.duration or 0) / 1_000_000
            return [
                float(stream.frames or (stream.average_rate or 0) * seconds)
                for stream in container.streams.video
            ]
    except Exception:  # noqa: BLE001  (any unreadable file is decord's to report)
        return []
