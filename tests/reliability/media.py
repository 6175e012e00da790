"""Hostile and broken media made on the fly: tiny videos and images, and damaged copies."""

from __future__ import annotations

import io
from pathlib import Path

import av
import numpy as np
from PIL import Image

BOM = b"\xef\xbb\xbf"
ASSETS = Path(__file__).resolve().parents[1] / "assets"


def video(width: int = 32, height: int = 24, frames: int = 6, fmt: str = "mp4") -> bytes:
    """An MPEG-4 Part 2 video of ``frames`` frames."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=fmt) as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for index in range(frames):
            pixels = np.full((height, width, 3), 40 * index % 256, dtype=np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
        container.mux(stream.encode())
    return buffer.getvalue()


def zero_frames() -> bytes:
    """A Matroska file whose header declares a video stream, cut before its first frame."""
    data = video(frames=3, fmt="matroska")
    return data[: data.index(b"\x1f\x43\xb6\x75")]  # the first Cluster element


def audio_only() -> bytes:
    """An mp4 holding one second of silence and no video stream."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=8000)
        samples = np.zeros((1, 1024), dtype=np.float32)
        for _ in range(8):
            frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            frame.sample_rate = 8000
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return buffer.getvalue()


def mjpeg_absurd_size() -> bytes:
    """An MJPEG AVI whose frame headers claim 65535 x 65535 pixels."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="avi") as container:
        stream = container.add_stream("mjpeg", rate=10)
        stream.width, stream.height, stream.pix_fmt = 16, 16, "yuvj420p"
        for _ in range(3):
            pixels = np.zeros((16, 16, 3), dtype=np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
        container.mux(stream.encode())
    data = bytearray(buffer.getvalue())
    start = 0
    while (start := data.find(b"\xff\xc0", start)) != -1:  # SOF0: length, precision, H, W
        data[start + 5 : start + 9] = b"\xff\xff\xff\xff"
        start += 2
    return bytes(data)


def random_bytes(size: int = 4096, seed: int = 0, prefix: bytes = b"") -> bytes:
    return prefix + np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes()


def image(mode: str = "RGB", size: tuple[int, int] = (40, 20), fmt: str = "JPEG", **save) -> bytes:
    """A ``size`` (width, height) image in ``mode`` with a bright left half."""
    picture = Image.new(mode, size)
    picture.paste(Image.new(mode, (size[0] // 2 or 1, size[1]), "white"), (0, 0))
    buffer = io.BytesIO()
    picture.save(buffer, format=fmt, **save)
    return buffer.getvalue()


def exif_rotated() -> bytes:
    """A 40 x 20 JPEG whose EXIF orientation (6) says: show it turned, 20 x 40."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return image(exif=exif.tobytes())


def png_absurd_size() -> bytes:
    """A PNG whose IHDR claims 100000 x 100000 pixels (a decompression bomb)."""
    data = bytearray(image(fmt="PNG"))
    data[16:24] = (100_000).to_bytes(4, "big") * 2
    return bytes(data)


def asset(name: str) -> bytes:
    return (ASSETS / name).read_bytes()


def truncated(data: bytes, keep: float = 0.5) -> bytes:
    return data[: int(len(data) * keep)]
