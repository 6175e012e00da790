"""Frame transform of the original ClipBERT: resize the longer side, then pad to a square.

The same transform serves images and video frames. There is no augmentation. Frames stay
uint8 so loaders move a quarter of the bytes; normalization happens on the device.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def resized_shape(height: int, width: int, image_size: int) -> tuple[int, int]:
    """(h, w) with the longer side = ``image_size``; the shorter side is truncated, as the
    original does (340x256 at 448 -> 448x337), and kept at least 1."""
    if height >= width:
        return image_size, max(1, int(image_size * width / height))
    return max(1, int(image_size * height / width)), image_size


def resize_longer_side(frames: Tensor, image_size: int) -> Tensor:
    """Resize uint8 ``(T, 3, H, W)`` frames so the longer side is ``image_size``.

    Bilinear, ``align_corners=False``, no antialiasing, computed in float32 on 0-255 values like
    the original. The original keeps the float result; we round it back to uint8 so loaders
    stay uint8, which moves each pixel by at most 0.5.
    """
    _check_frames(frames)
    size = resized_shape(frames.shape[-2], frames.shape[-1], image_size)
    if tuple(frames.shape[-2:]) == size:
        return frames
    resized = F.interpolate(
        frames.float(), size=size, mode="bilinear", align_corners=False, antialias=False
    )
    return resized.round_().clamp_(0, 255).to(torch.uint8)


def pad_to_square(frames: Tensor, image_size: int) -> Tensor:
    """Zero-pad ``(T, C, h, w)`` frames on the right and bottom to ``image_size`` squared."""
    height, width = frames.shape[-2:]
    if height > image_size or width > image_size:
        raise ValueError(
            f"frames of {height}x{width} do not fit a {image_size}x{image_size} square; "
            "resize them first (resize_longer_side)"
        )
    if height == width == image_size:
        return frames
    return F.pad(frames, (0, image_size - width, 0, image_size - height), value=0)


class ResizePad:
    """Resize the longer side to ``image_size`` and pad to ``image_size`` x ``image_size``."""

    def __init__(self, image_size: int) -> None:
        if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
            raise ValueError(f"image_size must be a positive int, got {image_size!r}")
        self.image_size = image_size

    def __call__(self, frames: Tensor) -> Tensor:
        """uint8 ``(T, 3, H, W)`` -> uint8 ``(T, 3, image_size, image_size)``."""
        return pad_to_square(resize_longer_side(frames, self.image_size), self.image_size)

    def __repr__(self) -> str:
        return f"ResizePad(image_size={self.image_size})"


def _check_frames(frames: Tensor) -> None:
    if frames.dtype != torch.uint8 or frames.dim() != 4:
        raise ValueError(
            f"expected uint8 frames shaped (T, 3, H, W), got {frames.dtype} {tuple(frames.shape)}"
        )
