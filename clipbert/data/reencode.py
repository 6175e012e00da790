"""Re-encode a video at a lower frame rate and size before it goes into a store (optional).

Sparse sampling decodes a few frames per clip, but the decoder still pays for every frame
between keyframes and for full-size pictures. Storing videos at, say, 6 fps with a 256-pixel
shorter side cuts that cost and the store's size. It changes the pixels the model sees (a lossy
re-encode and a resize before ClipBERT's own), so it is off by default: stores built with it are
not the original's stores, and numbers from them are not the paper's.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np

from clipbert.data.decoding import DEFAULT_FPS, DecodeError, frames_of, upright_rgb


@dataclass(frozen=True)
class ReencodeSettings:
    """Target of a re-encode; ``None`` keeps the source's value. Sizes only ever shrink."""

    fps: float | None = None
    short_side: int | None = None
    crf: int = 23

    def __post_init__(self) -> None:
        if self.fps is not None and not (math.isfinite(self.fps) and self.fps > 0):
            raise ValueError(f"reencode fps must be a positive number, got {self.fps!r}")
        if self.short_side is not None and self.short_side < 16:
            raise ValueError(f"reencode short_side must be >= 16 pixels, got {self.short_side}")
        if not 0 <= self.crf <= 51:
            raise ValueError(f"reencode crf must be in [0, 51] (x264's range), got {self.crf}")

    @property
    def enabled(self) -> bool:
        return self.fps is not None or self.short_side is not None


def reencode_video(data: bytes, settings: ReencodeSettings) -> bytes:
    """The first video stream of ``data`` as H.264 mp4 bytes (no audio), upright, at most
    ``settings.fps`` frames per second and a shorter side of at most ``settings.short_side``.

    Frames are kept by their timestamps, so a variable-rate source keeps its timing; rotation
    metadata is applied to the pixels, so every decoder shows the result the same way. Frames
    stream from decoder to encoder: memory does not grow with the video's length.
    """
    try:
        with av.open(io.BytesIO(data)) as source:
            if not source.streams.video:
                raise DecodeError("the file has no video stream")
            stream = source.streams.video[0]
            rate = float(stream.average_rate or 0) or DEFAULT_FPS
            out_rate = min(rate, settings.fps) if settings.fps else rate
            frames = _resampled_frames(source, stream, rate, out_rate, settings.short_side)
            return _encode_h264(frames, out_rate, settings.crf)
    except DecodeError as exc:
        raise DecodeError(f"could not re-encode: {exc}") from exc
    except Exception as exc:  # PyAV raises FFmpegError subclasses, ValueError, ...
        raise DecodeError(f"could not re-encode: {type(exc).__name__}: {exc}") from exc


def _resampled_frames(
    source: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    rate: float,
    out_rate: float,
    short_side: int | None,
) -> Iterator[np.ndarray]:
    """Upright RGB frames at ``out_rate``: each output tick takes the first frame shown at or
    after it; a frame without a timestamp comes one source frame period after the last."""
    next_tick, last_time = 0.0, -1.0 / rate
    for frame in frames_of(source, stream):
        time = frame.time if frame.time is not None else last_time + 1.0 / rate
        last_time = time
        if time + 1e-6 < next_tick:
            continue
        yield upright_rgb(frame, **_even_size(frame.width, frame.height, short_side))
        next_tick = (math.floor(time * out_rate + 1e-6) + 1) / out_rate


def _even_size(width: int, height: int, short_side: int | None) -> dict:
    """Scaling arguments that bring the shorter side to at most ``short_side`` with both sides
    even (what yuv420p needs); none when the frame is small enough already."""
    if not short_side or min(width, height) <= short_side:
        return {}
    scale = short_side / min(width, height)
    return {
        "width": max(2, round(width * scale / 2) * 2),
        "height": max(2, round(height * scale / 2) * 2),
        "interpolation": "AREA",
    }


def _encode_h264(frames: Iterator[np.ndarray], rate: float, crf: int) -> bytes:
    """Encode RGB frames; an odd width or height loses its last column or row (yuv420p)."""
    buffer = io.BytesIO()
    encoded = 0
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=_rational_rate(rate))
        # one thread: workers already run in parallel, and the bytes stay reproducible
        stream.options = {"crf": str(crf), "preset": "veryfast", "threads": "1"}
        for rgb in frames:
            height, width = rgb.shape[0] - rgb.shape[0] % 2, rgb.shape[1] - rgb.shape[1] % 2
            if encoded == 0:
                stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            picture = av.VideoFrame.from_ndarray(
                np.ascontiguousarray(rgb[:height, :width]), format="rgb24"
            )
            container.mux(stream.encode(picture))
            encoded += 1
        if encoded == 0:
            raise DecodeError("the video stream has no decodable frame")
        container.mux(stream.encode())
    return buffer.getvalue()


def _rational_rate(rate: float) -> Fraction:
    """29.97 -> 30000/1001: the time base an encoder needs for a fractional rate."""
    return Fraction(rate).limit_denominator(1001)
