"""Which frames of a video to decode: the original ClipBERT sampling formulas as pure functions.

A clip covers ``clip_len = num_frames / fps * native_fps`` frames of the video (``num_frames``
frames taken at ``fps`` frames per second). With ``F`` frames in the video the clip may start
anywhere in ``[0, delta]``, ``delta = max(F - clip_len, 0)``. Start positions are real numbers;
the original decodes with PyAV by timestamp and keeps the frames at or after the start, so the
first frame of a clip is ``ceil(start)``. Inside the clip ``num_frames`` frames sit at the
offsets ``linspace(0, clip_len - 1, num_frames)``, truncated to integers. Indices past the end
of a short video are clamped to its last frame (so they repeat).

Strategies (config key ``sampling``):

- ``rand``: independent uniformly random starts (training).
- ``fixed``: clip k of K = ``n_clips`` starts at ``delta * k / K`` (evaluation; one clip starts
  at frame 0, as the original's QA evaluation).
- ``start`` / ``middle`` / ``end``: clip 0 / 1 / 2 of 3 (one clip; ``end`` is not the end).
- ``middle_or_fixed``: ``middle`` for one clip, ``fixed`` for several: the original's retrieval
  and MSRVTT multiple-choice evaluation, whose one clip starts a third of the way in.
- ``uniform``: the whole video is one clip, ``num_frames`` evenly spaced frames.
"""

from __future__ import annotations

import math
import numbers
import random
from dataclasses import dataclass

import numpy as np

STRATEGIES = ("rand", "fixed", "uniform", "start", "middle", "end", "middle_or_fixed")

_THIRDS = {"start": 0, "middle": 1, "end": 2}


def clip_length(num_frames: int, fps: float, native_fps: float) -> float:
    """Length of one clip in video frames (a real number, as in the original)."""
    return num_frames / fps * native_fps


def clip_starts(
    total_frames: int,
    clip_len: float,
    n_clips: int,
    strategy: str,
    rng: random.Random | None = None,
) -> list[float]:
    """Real-valued start frames of ``n_clips`` clips of ``clip_len`` frames."""
    delta = max(total_frames - clip_len, 0.0)
    if strategy == "middle_or_fixed":
        strategy = "middle" if n_clips == 1 else "fixed"
    if strategy == "rand":
        if rng is None:
            raise ValueError(
                "sampling='rand' needs an explicit random.Random (rng) so runs are reproducible"
            )
        return [rng.uniform(0.0, delta) for _ in range(n_clips)]
    if strategy == "fixed":
        return [delta * k / n_clips for k in range(n_clips)]
    if strategy in _THIRDS:
        if n_clips != 1:
            raise ValueError(
                f"sampling={strategy!r} picks a single clip, but n_clips={n_clips}; use "
                "sampling='fixed' for several evenly spaced clips"
            )
        return [delta * _THIRDS[strategy] / 3]
    if strategy == "uniform":
        raise ValueError(
            "sampling='uniform' spreads frames over the whole video and has no clip starts; "
            "use sample_frame_indices()"
        )
    raise ValueError(f"unknown sampling={strategy!r}; choose one of {', '.join(STRATEGIES)}")


def frames_in_clip(start: float, clip_len: float, num_frames: int, total_frames: int) -> list[int]:
    """Absolute frame indices of the ``num_frames`` frames of the clip starting at ``start``."""
    first = math.ceil(start)
    # numpy's linspace (exact endpoint; [0] for one frame) truncated toward zero, as the original.
    offsets = np.linspace(0.0, clip_len - 1, num_frames)
    last = total_frames - 1
    return [min(max(first + int(offset), 0), last) for offset in offsets]


def sample_frame_indices(
    total_frames: int,
    native_fps: float,
    *,
    n_clips: int,
    num_frames: int,
    fps: float,
    strategy: str,
    rng: random.Random | None = None,
) -> list[list[int]]:
    """Frame indices to decode: ``n_clips`` lists of ``num_frames`` indices each."""
    _check_positive_int("n_clips", n_clips)
    _check_positive_int("num_frames", num_frames)
    _check_positive_int("total_frames", total_frames)
    if not _is_positive_number(fps):
        raise ValueError(f"fps must be a positive number of frames per second, got {fps!r}")
    if not _is_positive_number(native_fps):
        raise ValueError(f"native_fps (the video's frame rate) must be > 0, got {native_fps!r}")
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown sampling={strategy!r}; choose one of {', '.join(STRATEGIES)}")
    if strategy == "uniform":
        if n_clips != 1:
            raise ValueError(
                f"sampling='uniform' takes the whole video as one clip, but n_clips={n_clips}; "
                "set n_clips=1 or use sampling='fixed'"
            )
        return [[int(i) for i in np.linspace(0, total_frames - 1, num_frames)]]
    clip_len = clip_length(num_frames, fps, native_fps)
    starts = clip_starts(total_frames, clip_len, n_clips, strategy, rng)
    return [frames_in_clip(s, clip_len, num_frames, total_frames) for s in starts]


def _check_positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


def _is_positive_number(value: object) -> bool:
    return (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


@dataclass(frozen=True)
class FrameSampling:
    """How clips and frames are drawn from one video (the paper's N x T at ``fps``)."""

    n_clips: int = 1
    num_frames: int = 2
    fps: float = 1.0
    strategy: str = "rand"

    def __post_init__(self) -> None:
        """Refuse a bad setting here, when the config is read, not in a loader worker: sample
        a one-frame video once, which checks every value and their combination."""
        sample_frame_indices(
            1,
            1.0,
            n_clips=self.n_clips,
            num_frames=self.num_frames,
            fps=self.fps,
            strategy=self.strategy,
            rng=random.Random(0),
        )
