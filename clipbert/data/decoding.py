"""Decode only the sampled frames of a video (or one image) from in-memory bytes.

Stores hand out raw file bytes, so decoders read from memory and never touch the file system.
A decoder first reports the video's frame count and frame rate, lets the caller choose frame
indices from them (see :mod:`clipbert.data.sampling`), then decodes just those frames.
Every failure of the underlying library surfaces as :class:`DecodeError`, so datasets can skip
a broken sample with one ``except``.
"""

from __future__ import annotations

import abc
import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps

# Used when the container reports no usable frame rate. 30 fps is the most common rate in the
# ClipBERT datasets; it only stretches or shrinks the clip window, never the frame choice itself.
DEFAULT_FPS = 30.0


@dataclass(frozen=True)
class VideoInfo:
    """What sampling needs to know about a video before choosing frames."""

    num_frames: int
    fps: float


class DecodeError(RuntimeError):
    """A video or image could not be decoded."""


class VideoDecoder(abc.ABC):
    """Decode selected frames of a video held in memory.

    Subclasses implement :meth:`_open` (probe the container) and :meth:`_decode` (decode sorted
    unique indices); this class handles validation, de-duplication, ordering and errors.
    """

    name: str

    def read(self, data: bytes, select: Callable[[VideoInfo], Sequence[int]]) -> torch.Tensor:
        """Decode the frames that ``select`` picks, as uint8 RGB ``(len(indices), 3, H, W)``.

        ``select`` receives the :class:`VideoInfo` and returns frame indices in any order,
        repeats allowed; each distinct frame is decoded once and the output follows the order
        of the indices. If the container reports a frame rate that is not a positive finite
        number, ``DEFAULT_FPS`` (30) is used instead. Raises :class:`DecodeError` when the bytes
        cannot be decoded or report no frames, and ``ValueError`` when ``select`` returns no
        index or one outside ``[0, num_frames)``.
        """
        handle, info = self._guarded("open", self._open, data)
        if info.num_frames < 1:
            raise DecodeError(f"{self.name}: the video reports {info.num_frames} frames")
        if not (math.isfinite(info.fps) and info.fps > 0):
            info = VideoInfo(num_frames=info.num_frames, fps=DEFAULT_FPS)
        indices = [int(i) for i in select(info)]
        if not indices:
            raise ValueError("the frame selection is empty; select at least one frame index")
        bad = [i for i in indices if not 0 <= i < info.num_frames]
        if bad:
            raise ValueError(
                f"frame indices {bad[:5]} are outside [0, {info.num_frames}) for this video"
            )
        unique = sorted(set(indices))
        frames = self._guarded("decode frames", self._decode, handle, unique)
        if frames.shape[0] != len(unique):
            raise DecodeError(
                f"{self.name}: asked for {len(unique)} frames but got {frames.shape[0]}"
            )
        if unique != indices:
            position = {index: row for row, index in enumerate(unique)}
            frames = frames[torch.tensor([position[i] for i in indices])]
        return frames

    def _guarded(self, what: str, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(*args)
        except DecodeError:
            raise
        except Exception as exc:  # decord's DECORDError is not a RuntimeError
            raise DecodeError(
                f"{self.name} could not {what}: {type(exc).__name__}: {_last_line(exc)}"
            ) from exc

    @abc.abstractmethod
    def _open(self, data: bytes) -> tuple[Any, VideoInfo]:
        """Open the container; return a handle for :meth:`_decode` and the video's info."""

    @abc.abstractmethod
    def _decode(self, handle: Any, indices: list[int]) -> torch.Tensor:
        """Decode sorted unique ``indices``; return uint8 RGB ``(len(indices), 3, H, W)``."""


class DecordDecoder(VideoDecoder):
    """Frame-accurate, index-based decoding with decord (the default backend).

    ``num_threads`` defaults to 1 because DataLoader workers already decode videos in
    parallel; 0 lets decord pick (all cores), which suits single-process use.
    """

    name = "decord"

    def __init__(self, num_threads: int = 1) -> None:
        try:
            import decord  # noqa: F401  (fail here, with advice, not on the first video)
        except ImportError as exc:
            raise ImportError(
                "the 'decord' video decoder needs the decord package: pip install decord"
            ) from exc
        self.num_threads = num_threads

    def _open(self, data: bytes) -> tuple[Any, VideoInfo]:
        import decord

        reader = decord.VideoReader(
            io.BytesIO(data), ctx=decord.cpu(0), num_threads=self.num_threads
        )
        return reader, VideoInfo(num_frames=len(reader), fps=float(reader.get_avg_fps()))

    def _decode(self, handle: Any, indices: list[int]) -> torch.Tensor:
        batch = handle.get_batch(indices).asnumpy()  # (N, H, W, 3) uint8 RGB
        return torch.from_numpy(batch).permute(0, 3, 1, 2).contiguous()

    def __repr__(self) -> str:
        return f"DecordDecoder(num_threads={self.num_threads})"


_DECODERS: dict[str, type[VideoDecoder]] = {"decord": DecordDecoder}


def build_decoder(name: str = "decord", **kwargs: Any) -> VideoDecoder:
    """Build the video decoder called ``name``; ``kwargs`` go to its constructor."""
    try:
        cls = _DECODERS[name]
    except KeyError:
        raise ValueError(
            f"unknown video decoder {name!r}; choose one of {', '.join(sorted(_DECODERS))}"
        ) from None
    return cls(**kwargs)


def decode_image(data: bytes) -> torch.Tensor:
    """Decode image bytes to uint8 RGB ``(1, 3, H, W)``, upright as the EXIF tag says.

    Grayscale, palette and alpha images become 3-channel RGB; alpha is dropped (as OpenCV's
    colour read in the original's store builder does), not blended.
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            rgb = ImageOps.exif_transpose(image).convert("RGB")
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, ...
        raise DecodeError(f"could not decode image: {type(exc).__name__}: {exc}") from exc
    array = np.array(rgb, dtype=np.uint8)  # (H, W, 3), a writable copy
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0).contiguous()


def _last_line(exc: BaseException) -> str:
    """The informative tail of a (possibly multi-line, C++-traced) library message."""
    text = str(exc).strip()
    return text.splitlines()[-1][:300] if text else "(no message)"
