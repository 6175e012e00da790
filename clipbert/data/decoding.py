"""Decode only the sampled frames of a video (or one image) from in-memory bytes.

Stores hand out raw file bytes, so decoders read from memory and never touch the file system.
A decoder first reports the video's frame count and frame rate, lets the caller choose frame
indices from them (see :mod:`clipbert.data.frame_sampling`), then decodes just those frames.
Every failure of the underlying library surfaces as :class:`DecodeError`, so datasets can skip
a broken sample with one ``except``.

Three libraries decode: torchcodec and decord (both optional) and PyAV (always installed).
``decoder=auto`` takes the best one that loads here (:func:`auto_decoder`); all three return
the same frames for the same indices on every test asset.

Frames come back shaped (N, 3, H, W) but laid out channels-last in memory, as the libraries
decode them: the copy into planar layout would cost a loader worker about as much as decoding
does at 1080p, while the model's device does it for free (or never: the CNN runs channels-last).
"""

from __future__ import annotations

import abc
import contextlib
import functools
import io
import logging
import math
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps

from clipbert.data.container_headers import declared_frame_count_error

# Used when the container reports no usable frame rate. 30 fps is the most common rate in the
# ClipBERT datasets; it only stretches or shrinks the clip window, never the frame choice itself.
DEFAULT_FPS = 30.0

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VideoInfo:
    """What sampling needs to know about a video before choosing frames."""

    num_frames: int
    fps: float


class DecodeError(RuntimeError):
    """A video or image could not be decoded."""


class VideoDecoder(abc.ABC):
    """Decode selected frames of a video held in memory."""

    name: str

    @abc.abstractmethod
    def read(self, data: bytes, select: Callable[[VideoInfo], Sequence[int]]) -> torch.Tensor:
        """Decode the frames that ``select`` picks, as uint8 RGB ``(len(indices), 3, H, W)``
        (channels-last strides)."""


class IndexedDecoder(VideoDecoder):
    """A decoder that probes the container, then decodes chosen frame indices.

    Subclasses implement :meth:`_open` (probe the container), :meth:`_decode` (decode sorted
    unique indices) and, when their library may be missing, :meth:`require`; this class
    handles validation, de-duplication, ordering and errors.
    """

    @classmethod
    def require(cls) -> None:
        """Raise ImportError, saying what to install, when the library cannot load here (a
        decoder whose library may be missing checks it; the others need nothing)."""

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


class DecordDecoder(IndexedDecoder):
    """Frame-accurate, index-based decoding with decord, the original's decoder.

    ``num_threads`` defaults to 1 because DataLoader workers already decode videos in
    parallel; 0 lets decord pick (all cores), which suits single-process use.
    """

    name = "decord"

    def __init__(self, num_threads: int = 1) -> None:
        self.require()  # fail here, with advice, not on the first video
        self.num_threads = num_threads

    @classmethod
    def require(cls) -> None:
        try:
            import decord  # noqa: F401
        except Exception as exc:  # not installed, or its bundled libraries do not load
            raise ImportError(
                "the 'decord' video decoder needs decord, an optional extra with wheels for "
                "Linux x86_64 only: pip install clipbert[decord] (or use decoder=auto)"
            ) from exc

    def _open(self, data: bytes) -> tuple[Any, VideoInfo]:
        import decord

        damage = declared_frame_count_error(data)
        if damage is not None:  # decord would abort the process on it (see headers.py)
            raise DecodeError(f"{self.name}: {damage}")
        with _as_file(data) as source:
            reader = decord.VideoReader(source, ctx=decord.cpu(0), num_threads=self.num_threads)
        return reader, VideoInfo(num_frames=len(reader), fps=float(reader.get_avg_fps()))

    def _decode(self, handle: Any, indices: list[int]) -> torch.Tensor:
        # (N, H, W, 3) uint8 RGB, handed over without a copy (asnumpy() would copy it)
        batch = torch.utils.dlpack.from_dlpack(handle.get_batch(indices).to_dlpack())
        return batch.permute(0, 3, 1, 2)

    def __repr__(self) -> str:
        return f"DecordDecoder(num_threads={self.num_threads})"


@contextlib.contextmanager
def _as_file(data: bytes) -> Iterator[str | io.BytesIO]:
    """``data`` as a path decord can open, for as long as decord takes to open it.

    decord's own reader of in-memory bytes follows any seek blindly: a damaged offset past the
    end of the file (a bad ``stco`` entry, a bad Matroska cue) makes it copy from outside the
    buffer and crash the process with a segmentation fault. Through a file, FFmpeg's file
    protocol checks every seek. On Linux the file is an anonymous in-memory one
    (``memfd_create``), as fast as the bytes path and never left behind; decord holds its own
    descriptor, so ours closes once decord has opened it. Elsewhere decord reads the bytes.
    """
    if not (hasattr(os, "memfd_create") and os.path.isdir("/proc/self/fd")):
        yield io.BytesIO(data)
        return
    descriptor = os.memfd_create("clipbert-video", os.MFD_CLOEXEC)
    try:
        with open(descriptor, "wb", closefd=False) as file:
            file.write(data)
        yield f"/proc/self/fd/{descriptor}"
    finally:
        os.close(descriptor)


MATROSKA_MAGIC = b"\x1a\x45\xdf\xa3"  # EBML: Matroska and WebM


def _stream_fps(data: bytes, metadata: Any) -> float:
    """The frame rate decord reports (FFmpeg's ``avg_frame_rate``), from torchcodec's metadata:
    Matroska and WebM state it in their header; other containers get it from the frame count
    over the duration, which is torchcodec's ``average_fps`` (their header rate is the
    nominal one, e.g. 30 for a variable-rate phone clip averaging 28)."""
    header = getattr(metadata, "average_fps_from_header", None)
    if data[:4] == MATROSKA_MAGIC and header:
        return float(header)
    return float(metadata.average_fps or 0.0)


SAFEGUARD_RATIO = 0.8


def sampled_frame_count(declared: int, demuxed: int) -> int:
    """The frame count clips are spread over: the header's, as the original samples by it,
    unless the stream holds less than 80% of it (a truncated file); then what the stream holds.
    This is the original's duration safeguard, which decodes the stream to find its real end.
    Frames the header claims beyond the stream's end repeat its last frame."""
    if declared > demuxed >= SAFEGUARD_RATIO * declared:
        return declared
    return demuxed


class TorchCodecDecoder(IndexedDecoder):
    """Frame-accurate, index-based decoding with torchcodec (PyTorch's FFmpeg binding):
    decord's frames for the same indices, faster (see :func:`auto_decoder`).

    Like decord it reads the video stream FFmpeg ranks best (audio-first files included) and
    turns frames upright as the display matrix says. Its exact mode scans the packets on open,
    so frame counts come from the stream, which a damaged header cannot inflate (a header
    that claims more: ``sampled_frame_count``, the last frame repeated, as PyAV), and the rate
    is frames over duration: decord's on mp4, mov and avi, within 0.1% of it on Matroska and
    WebM, whose rate FFmpeg estimates and rounds. In AVI files with B-frames, which store no
    presentation times, its seeks, like decord's, can land a frame early.

    ``num_threads`` are FFmpeg's: 1 by default, as DataLoader workers already decode in
    parallel; 0 lets FFmpeg pick. ``device="cuda"`` decodes with NVDEC into GPU memory (a CUDA
    build of torchcodec; load in the main process: forked workers cannot use CUDA).
    """

    name = "torchcodec"

    def __init__(self, num_threads: int = 1, device: str = "cpu") -> None:
        self.require()  # fail here, with advice, not on the first video
        self.num_threads = num_threads
        self.device = device

    @classmethod
    def require(cls) -> None:
        try:
            import torchcodec
        except Exception as exc:  # not installed, or built for another torch
            raise ImportError(
                f"the 'torchcodec' video decoder needs torchcodec ({_last_line(exc)}): pip "
                f"install clipbert[torchcodec], then {_FFMPEG_LIBS}; or use decoder=auto"
            ) from exc
        if torchcodec.ffmpeg_major_version is None:  # its libraries did not load at import
            raise ImportError(
                f"torchcodec is installed but could not load libtorchcodec: {_FFMPEG_LIBS}; "
                "or use decoder=auto"
            )

    def _open(self, data: bytes) -> tuple[Any, VideoInfo]:
        from torchcodec.decoders import VideoDecoder as Reader

        if data[:4] == b"RIFF" and data[8:12] == b"AVI ":
            raise DecodeError(
                "torchcodec: AVI files carry no presentation times, and torchcodec's seeks land "
                "a frame early on their B-frames; the fallback decoder reads them exactly"
            )

        reader = Reader(
            data,
            seek_mode="exact",
            dimension_order="NHWC",  # as decoded: (N, 3, H, W) below is a channels-last view
            num_ffmpeg_threads=self.num_threads,
            device=self.device,
        )
        metadata, held = reader.metadata, len(reader)
        count = sampled_frame_count(metadata.num_frames_from_header or 0, held)
        return (reader, held), VideoInfo(num_frames=count, fps=_stream_fps(data, metadata))

    def _decode(self, handle: Any, indices: list[int]) -> torch.Tensor:
        reader, held = handle
        batch = reader.get_frames_at([min(index, held - 1) for index in indices]).data
        return batch.permute(0, 3, 1, 2)

    def __repr__(self) -> str:
        return f"TorchCodecDecoder(num_threads={self.num_threads}, device={self.device!r})"


_FFMPEG_LIBS = (
    "install FFmpeg's shared libraries (on Debian 12: apt-get install libavutil57 libavcodec59 "
    "libavformat59 libavdevice59 libavfilter8 libswscale6 libswresample4)"
)


class PyAVDecoder(IndexedDecoder):
    """Decoding with PyAV (FFmpeg): slower than decord or torchcodec for sparse frames, but it
    opens what decord cannot (GIFs, WebM without a duration) and survives a corrupt packet.

    It reads the first *video* stream (not stream 0, which may be audio), counts frames by
    demuxing rather than trusting the header (often 0 in mkv/webm; see
    ``sampled_frame_count`` for a header that claims more), decodes in order up to the
    last wanted frame, skips packets FFmpeg rejects, and rotates frames upright as the display
    matrix says, as decord does. When fewer frames decode than packets were counted (a
    rejected packet), wanted indices past the end get the last decoded frame.
    """

    name = "pyav"

    def __init__(self, num_threads: int = 1) -> None:
        self.num_threads = num_threads

    @classmethod
    def require(cls) -> None:
        try:
            import av  # noqa: F401
        except Exception as exc:  # a core dependency: only a broken install gets here
            raise ImportError("the 'pyav' video decoder needs PyAV: pip install av") from exc

    def _open(self, data: bytes) -> tuple[Any, VideoInfo]:
        import av

        with av.open(io.BytesIO(data)) as container:
            if not container.streams.video:
                raise DecodeError("pyav: the file has no video stream")
            stream = container.streams.video[0]
            demuxed = sum(1 for packet in container.demux(stream) if packet.size > 0)
            count = sampled_frame_count(stream.frames or 0, demuxed)
            rate = stream.average_rate or stream.guessed_rate
            info = VideoInfo(num_frames=count, fps=float(rate) if rate else 0.0)
            return (data, stream.index), info

    def _decode(self, handle: Any, indices: list[int]) -> torch.Tensor:
        import av

        data, stream_index = handle
        wanted, last = set(indices), indices[-1]
        frames: dict[int, np.ndarray] = {}
        position, frame = 0, None
        with av.open(io.BytesIO(data)) as container:
            stream = next(v for v in container.streams.video if v.index == stream_index)
            stream.thread_count = self.num_threads
            for frame in frames_of(container, stream):
                if position in wanted:
                    frames[position] = upright_rgb(frame)
                position += 1
                if position > last:
                    break
            if frame is None:
                raise DecodeError(f"pyav: none of the frames {indices[:5]} could be decoded")
            if position - 1 not in frames:  # the stream ended before the last wanted index
                frames[position - 1] = upright_rgb(frame)
        rows = [frames[min(index, position - 1)] for index in indices]
        return torch.from_numpy(np.stack(rows)).permute(0, 3, 1, 2)

    def __repr__(self) -> str:
        return f"PyAVDecoder(num_threads={self.num_threads})"


def frames_of(container: Any, stream: Any) -> Iterator[Any]:
    """The decoded frames of a PyAV stream in order, skipping packets FFmpeg rejects (a
    corrupt packet loses its frame; the rest still decode)."""
    import av

    for packet in container.demux(stream):
        try:
            decoded = packet.decode()
        except av.error.InvalidDataError:
            continue
        yield from decoded


def upright_rgb(frame: Any, **scale: Any) -> np.ndarray:
    """(H, W, 3) RGB of a PyAV frame, turned as its display matrix says (rotation in degrees,
    counter-clockwise; -90 shows a landscape-coded phone clip in portrait). ``scale``
    (``width``, ``height``, ``interpolation``) resizes the coded picture first."""
    rgb = frame.to_ndarray(format="rgb24", **scale)
    quarter_turns = round(getattr(frame, "rotation", 0) or 0) // 90
    return np.ascontiguousarray(np.rot90(rgb, k=quarter_turns)) if quarter_turns % 4 else rgb


class FallbackDecoder(VideoDecoder):
    """``primary``, and ``fallback`` for any video the primary cannot decode."""

    def __init__(self, primary: VideoDecoder, fallback: VideoDecoder) -> None:
        self.primary = primary
        self.fallback = fallback
        self.name = f"{primary.name} (falling back to {fallback.name})"

    def read(self, data: bytes, select: Callable[[VideoInfo], Sequence[int]]) -> torch.Tensor:
        try:
            return self.primary.read(data, select)
        except DecodeError as first:
            try:
                return self.fallback.read(data, select)
            except DecodeError as second:
                raise DecodeError(f"{first}; then {second}") from second

    def __repr__(self) -> str:
        return f"FallbackDecoder({self.primary!r}, {self.fallback!r})"


class DecoderHungError(RuntimeError):
    """Too many videos made the decoder run past its time limit in one process."""


class TimeLimitedDecoder(VideoDecoder):
    """``decoder`` with at most ``seconds`` per video, so a hostile file that sends the library
    into an endless loop becomes a :class:`DecodeError` (a broken sample) instead of a
    DataLoader worker that never answers.

    Each read runs in a daemon thread that the caller waits for; decord, torchcodec and PyAV
    release the GIL in their C code, so the wait can end. A thread past the limit cannot be
    killed and is abandoned, still busy; after ``max_abandoned`` of them the process stops with
    :class:`DecoderHungError` rather than run on with its cores taken.
    """

    def __init__(self, decoder: VideoDecoder, seconds: float, max_abandoned: int = 4) -> None:
        if not seconds > 0:
            raise ValueError(f"the decode time limit must be > 0 seconds, got {seconds!r}")
        self.decoder = decoder
        self.seconds = seconds
        self.max_abandoned = max_abandoned
        self.abandoned = 0
        self.name = decoder.name

    def read(self, data: bytes, select: Callable[[VideoInfo], Sequence[int]]) -> torch.Tensor:
        outcome: dict[str, Any] = {}

        def run() -> None:
            try:
                outcome["frames"] = self.decoder.read(data, select)
            except BaseException as exc:  # handed to the waiting thread as it is
                outcome["error"] = exc

        worker = threading.Thread(target=run, name="clipbert-decode", daemon=True)
        worker.start()
        worker.join(self.seconds)
        if worker.is_alive():
            self.abandoned += 1
            if self.abandoned > self.max_abandoned:
                raise DecoderHungError(
                    f"{self.abandoned} videos ran {self.name} past its {self.seconds:g} s limit "
                    "in this process, and each still holds a core; find them with "
                    "`python preprocess.py mode=validate dst=<vis_db>` and remove them"
                )
            raise DecodeError(
                f"{self.name} did not finish within {self.seconds:g} s (decode_timeout); "
                "the file may be hostile or damaged"
            )
        if "error" in outcome:
            raise outcome["error"]
        return outcome["frames"]

    def __repr__(self) -> str:
        return f"TimeLimitedDecoder({self.decoder!r}, seconds={self.seconds:g})"


_DECODERS: dict[str, type[IndexedDecoder]] = {
    "decord": DecordDecoder,
    "torchcodec": TorchCodecDecoder,
    "pyav": PyAVDecoder,
}
AUTO_ORDER = ("decord", "torchcodec", "pyav")


def auto_decoder() -> str:
    """The first decoder of ``AUTO_ORDER`` whose library loads here, named once in the log.

    decord first: it is the original's decoder, so a released checkpoint sees the frames it was
    trained and evaluated on, on every file (torchcodec gives the same frames on the test assets
    but seeks a frame early in AVI files with B-frames, which it hands to the fallback), and
    torchcodec is only 1.1-1.2x as fast per clip (benchmarks/RESULTS.md, issue 21). torchcodec
    next, where decord has no wheels (macOS, ARM); PyAV, always installed, last.
    """
    skipped = []
    for name in AUTO_ORDER:
        try:
            _DECODERS[name].require()
        except ImportError as exc:
            skipped.append(f"{name}: {exc}")
            continue
        reasons = f" (not available: {'; '.join(skipped)})" if skipped else ""
        _log_once(f"decoder=auto chose {name}{reasons}")
        return name
    raise ImportError(f"no video decoder loads here: {'; '.join(skipped)}")


@functools.cache
def _log_once(message: str) -> None:
    log.info(message)


def build_decoder(
    name: str = "auto",
    fallback: str | None = "pyav",
    timeout: float | None = None,
    **kwargs: Any,
) -> VideoDecoder:
    """Build the video decoder called ``name`` (``auto``: :func:`auto_decoder`; ``kwargs`` go
    to its constructor), wrapped so that ``fallback`` (None: none) decodes what it cannot, and
    with ``timeout`` seconds (None: no limit) for each video, fallback included. A decoder
    whose library is missing raises ImportError saying what to install."""
    _check_choice(name, ("auto", *_DECODERS))
    if fallback is not None:
        _check_choice(fallback, tuple(_DECODERS))
    if name == "auto":
        name = auto_decoder()
    decoder: VideoDecoder = _DECODERS[name](**kwargs)
    if fallback is not None and fallback != name:
        decoder = FallbackDecoder(decoder, _DECODERS[fallback]())
    return decoder if timeout is None else TimeLimitedDecoder(decoder, timeout)


def _check_choice(name: str, choices: tuple[str, ...]) -> None:
    if name not in choices:
        raise ValueError(f"unknown video decoder {name!r}; choose one of {', '.join(choices)}")


def decode_image(data: bytes) -> torch.Tensor:
    """Decode image bytes to uint8 RGB ``(1, 3, H, W)`` (channels-last strides), upright as the
    EXIF tag says.

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
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0)


def _last_line(exc: BaseException) -> str:
    """The informative tail of a (possibly multi-line, C++-traced) library message."""
    text = str(exc).strip()
    return text.splitlines()[-1][:300] if text else "(no message)"
