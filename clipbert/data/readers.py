"""Readers: one store key in, the sampled clips of that video (or the image) out, as uint8
frames at their own size; and black placeholder frames for what cannot be read in evaluation."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable

import torch

from clipbert.data.decoding import DecodeError, VideoDecoder, VideoInfo, decode_image
from clipbert.data.frame_sampling import FrameSampling, sample_frame_indices
from clipbert.data.stores import VisualStore

log = logging.getLogger(__name__)

PLACEHOLDER_SIZE = 32  # side of the black frames that stand in for an unreadable video
MAX_ASPECT_RATIO = 5.0  # the original treats frames beyond 5:1 either way as unreadable


def check_aspect_ratio(frames: torch.Tensor, name: str) -> None:
    """Refuse frames (..., 3, H, W) longer than 5:1 in either direction, as the original does:
    resized to the model's square they would be a few pixels thin. Training then replaces the
    video, evaluation counts its questions wrong, as for any unreadable one."""
    height, width = frames.shape[-2:]
    if max(height, width) > MAX_ASPECT_RATIO * max(min(height, width), 1):
        raise DecodeError(
            f"{name}: frames of {width}x{height} are beyond the {MAX_ASPECT_RATIO:g}:1 aspect "
            "ratio the model takes; crop or pad the file"
        )


class VideoClipReader:
    """Reads one video from the store and returns its sampled clips at the video's own size.

    The model resizes them, on its device (``clipbert.models.frame_input``).

    Randomness comes from torch's generator so that DataLoader workers, which torch seeds
    differently per worker and per epoch, never repeat each other's clips.
    """

    def __init__(
        self,
        store: VisualStore | None,
        decoder: VideoDecoder,
        sampling: FrameSampling,
    ) -> None:
        self.store = store
        self.decoder = decoder
        self.sampling = sampling

    def frame_indices(self, info: VideoInfo) -> list[int]:
        """The indices to decode, all clips concatenated (a fresh draw for ``rand``)."""
        s = self.sampling
        rng = random.Random(int(torch.randint(2**62, ()).item())) if s.strategy == "rand" else None
        clips = sample_frame_indices(
            info.num_frames,
            info.fps,
            n_clips=s.n_clips,
            num_frames=s.num_frames,
            fps=s.fps,
            strategy=s.strategy,
            rng=rng,
        )
        return [index for clip in clips for index in clip]

    def __call__(self, video_id: str) -> torch.Tensor:
        """Return uint8 frames shaped (n_clips, num_frames, 3, H, W)."""
        return self.decode(self.store.get(video_id), self._name(video_id))

    def read_timed(self, video_id: str) -> tuple[torch.Tensor, list[float]]:
        """The frames and the time of each in seconds (clips concatenated), for evaluation:
        reports show which moments the model saw."""
        return self.decode_timed(self.store.get(video_id), self._name(video_id))

    def _name(self, video_id: str) -> str:
        return f"video '{video_id}' in {self.store.path}"

    def placeholder(self) -> torch.Tensor:
        """Black clips standing in for an unreadable video in evaluation (see ``read_or_mark``)."""
        return black_frames(self.sampling.n_clips, self.sampling.num_frames)

    def decode(self, data: bytes, name: str) -> torch.Tensor:
        """Sample and decode the clips of one video file's bytes; ``name`` goes in errors."""
        return self._decode(data, name, self.frame_indices)

    def decode_timed(self, data: bytes, name: str) -> tuple[torch.Tensor, list[float]]:
        """:meth:`decode`, and the sampled frames' times in seconds (index / the video's fps);
        training, which needs no times, takes :meth:`decode`."""
        times: list[float] = []

        def indices_and_times(info: VideoInfo) -> list[int]:
            indices = self.frame_indices(info)
            times[:] = [round(i / info.fps, 3) if info.fps > 0 else 0.0 for i in indices]
            return indices

        return self._decode(data, name, indices_and_times), times

    def _decode(
        self, data: bytes, name: str, select: Callable[[VideoInfo], list[int]]
    ) -> torch.Tensor:
        try:
            frames = self.decoder.read(data, select)
        except DecodeError as err:
            raise DecodeError(f"{name}: {err}") from err
        check_aspect_ratio(frames, name)
        return frames.view(self.sampling.n_clips, self.sampling.num_frames, *frames.shape[1:])


class ImageReader:
    """Reads one image from the store as a one-clip, one-frame video: uint8 (1, 1, 3, H, W)."""

    def __init__(self, store: VisualStore) -> None:
        self.store = store

    def placeholder(self) -> torch.Tensor:
        return black_frames(1, 1)

    def read_timed(self, image_id: str) -> tuple[torch.Tensor, list[float]]:
        """The image and its one "time", 0, as :meth:`VideoClipReader.read_timed` gives."""
        return self(image_id), [0.0]

    def __call__(self, image_id: str) -> torch.Tensor:
        try:
            image = decode_image(self.store.get(image_id))
        except DecodeError as err:
            raise DecodeError(f"image '{image_id}' in {self.store.path}: {err}") from err
        check_aspect_ratio(image, f"image '{image_id}' in {self.store.path}")
        return image.unsqueeze(0)


def black_frames(n_clips: int, num_frames: int) -> torch.Tensor:
    """uint8 (n_clips, num_frames, 3, 32, 32) zeros, laid out channels-last like decoded frames."""
    shape = (n_clips, num_frames, PLACEHOLDER_SIZE, PLACEHOLDER_SIZE, 3)
    return torch.zeros(shape, dtype=torch.uint8).movedim(-1, -3)


def read_or_mark(
    read: VideoClipReader | ImageReader, video_id: str
) -> tuple[torch.Tensor, str | None, list[float]]:
    """Evaluation never swaps a broken video for another: it gets black placeholder frames and
    the reason, so its questions are listed in the outputs and counted wrong. Also the frames'
    times in seconds (none for a broken video)."""
    try:
        frames, times = read.read_timed(video_id)
        return frames, None, times
    except (DecodeError, KeyError) as err:  # KeyError: the store has no such key
        reason = err.args[0] if err.args else type(err).__name__
        log.warning("unreadable in evaluation, counted wrong: %s", reason)
        return read.placeholder(), str(reason), []
