"""Small JPEG thumbnails of the frames a model saw, as data URIs a self-contained page embeds.

They are made from the uint8 frames of the prediction batch itself, so the page shows exactly
the decoded, sampled frames the model's input transform received."""

from __future__ import annotations

import base64

import torch
from torchvision.io import encode_jpeg
from torchvision.transforms.v2.functional import resize

JPEG_QUALITY = 70
# Thumbnail height by how many frames a video shows: a 16-clip x 2-frame video at 32 px is
# about 45 KB, so a 1,000-video report stays under 50 MB.
HEIGHT_BY_FRAME_COUNT = ((4, 72), (8, 56), (16, 44))
SMALLEST_HEIGHT = 32


def thumbnail_height(frame_count: int) -> int:
    """The height that keeps a video's thumbnails a few tens of KB however many it has."""
    for most_frames, height in HEIGHT_BY_FRAME_COUNT:
        if frame_count <= most_frames:
            return height
    return SMALLEST_HEIGHT


def data_uri(jpeg: torch.Tensor) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(jpeg.numpy().tobytes()).decode("ascii")


def video_thumbnails(
    clips: torch.Tensor, times: list[float], height: int | None = None
) -> list[list[dict]]:
    """uint8 clips (n_clips, num_frames, 3, H, W) and the frames' times (clips concatenated)
    -> per clip, its frames as ``{"t": seconds, "src": data URI}``.

    ``height`` None: :func:`thumbnail_height` of the frame count. Times may be empty (an
    unreadable video's placeholder): the frames are then listed without one.
    """
    n_clips, num_frames = clips.shape[:2]
    flat = clips.reshape(n_clips * num_frames, *clips.shape[2:]).cpu()
    target = height or thumbnail_height(len(flat))
    frame_h, frame_w = flat.shape[-2:]
    width = max(1, round(frame_w * target / frame_h))
    small = resize(flat, [min(target, frame_h), min(width, frame_w)], antialias=True)
    jpegs = encode_jpeg(list(small.contiguous()), quality=JPEG_QUALITY)
    stamps: list[float | None] = list(times) if len(times) == len(flat) else [None] * len(flat)
    frames = [{"t": t, "src": data_uri(j)} for t, j in zip(stamps, jpegs, strict=True)]
    return [frames[c * num_frames : (c + 1) * num_frames] for c in range(n_clips)]
