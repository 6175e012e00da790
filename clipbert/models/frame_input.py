"""Frame transform of the original ClipBERT: resize the longer side, then pad to a square.

The same transform serves images and video frames; there is no augmentation. The original
resizes in float and keeps the float result; rounding it back to uint8 moves a pixel by up to
0.5 and the logits by about 1e-2, far outside parity. So loaders ship decoded frames as uint8
at their own size (stacked when a batch shares one size, else ragged, usually fewer bytes than
the resized square) and ``resize_pad_batch`` runs the exact float transform on the model's device
(at inference ``PendingResize`` defers it to the CNN's chunks, so a batch never holds it whole).
Frames stay channels-last in memory (as decoders write them) from the decoder to the CNN; the
transform gives the same values for either layout.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


def resized_shape(height: int, width: int, image_size: int) -> tuple[int, int]:
    """(h, w) with the longer side = ``image_size``; the shorter side is truncated, as the
    original does (340x256 at 448 -> 448x337), and kept at least 1."""
    if height >= width:
        return image_size, max(1, int(image_size * width / height))
    return max(1, int(image_size * height / width)), image_size


def resize_pad(frames: Tensor, image_size: int) -> Tensor:
    """Frames (..., 3, H, W), uint8 or float on 0-255 -> float32 (..., 3, S, S).

    The original's ``ImageResize`` + ``ImagePad``: bilinear, ``align_corners=False``, no
    antialiasing, in float32, longer side to ``image_size``; zeros on the right and bottom.
    """
    if frames.dim() < 3 or frames.shape[-3] != 3:
        raise ValueError(f"expected frames shaped (..., 3, H, W), got {tuple(frames.shape)}")
    lead, (height, width) = frames.shape[:-3], frames.shape[-2:]
    size = resized_shape(height, width, image_size)
    flat = frames.reshape(-1, 3, height, width).float()
    if (height, width) != size:
        flat = F.interpolate(flat, size=size, mode="bilinear", align_corners=False)
    flat = F.pad(flat, (0, image_size - size[1], 0, image_size - size[0]), value=0.0)
    return flat.view(*lead, 3, image_size, image_size)


def batch_frames(frames: Sequence[Tensor]) -> Tensor | tuple[Tensor, ...]:
    """Per-video uint8 frames (..., 3, h_i, w_i) -> one stacked tensor when they share a size
    (the common case), else the tuple itself: padding a 176x144 clip to 1920x1080 beside it
    would copy hundreds of MB of zeros per batch (``resize_pad_batch`` takes both forms)."""
    first = frames[0].shape
    if all(f.shape == first for f in frames):
        return torch.stack(list(frames))  # keeps the frames' layout
    return tuple(frames)


def resize_pad_batch(frames: Tensor | Sequence[Tensor], image_size: int) -> Tensor:
    """V videos, stacked (V, ..., 3, H, W) or ragged (a sequence of (..., 3, h_i, w_i)) ->
    float32 (V, ..., 3, S, S). Ragged videos of one size are resized in one call."""
    if isinstance(frames, Tensor):
        return resize_pad(frames, image_size)
    lead = frames[0].shape[:-3]
    out = frames[0].new_empty((len(frames), *lead, image_size, image_size, 3), dtype=torch.float32)
    out = out.movedim(-1, -3)  # channels-last, as resize_pad returns for decoded frames
    groups: dict[tuple[int, ...], list[int]] = {}
    for index, video in enumerate(frames):
        groups.setdefault(tuple(video.shape), []).append(index)
    for indices in groups.values():
        select = torch.tensor(indices, device=out.device)
        out[select] = resize_pad(torch.stack([frames[i] for i in indices]), image_size)
    return out


@dataclass(frozen=True)
class PendingResize:
    """Frames whose resize waits until the CNN reads them, a few at a time.

    At inference the CNN takes ``eval_frames_per_pass`` frames per pass; resizing each group just
    before its pass keeps a batch from holding all its frames as float32 at ``image_size`` (16
    videos x 16 clips x 2 frames at 448 would be 1.2 GB). The values are those of
    ``resize_pad_batch``: every frame is resized on its own either way.
    """

    frames: Tensor | tuple[Tensor, ...]  # as resize_pad_batch takes them
    image_size: int

    @property
    def shape(self) -> torch.Size:
        """The resized frames' shape, (V, ..., 3, S, S)."""
        if isinstance(self.frames, Tensor):
            lead = self.frames.shape[:-3]
        else:
            lead = (len(self.frames), *self.frames[0].shape[:-3])
        return torch.Size((*lead, 3, self.image_size, self.image_size))

    @property
    def device(self) -> torch.device:
        return (self.frames if isinstance(self.frames, Tensor) else self.frames[0]).device

    def __len__(self) -> int:
        return len(self.frames)

    def resolve(self) -> Tensor:
        """All frames resized at once (what training needs: one autograd graph)."""
        with torch.autocast(self.device.type, enabled=False):  # float32 inside autocast too
            return resize_pad_batch(self.frames, self.image_size)

    def chunks(self, size: int) -> Iterator[Tensor]:
        """Resized frames (k <= size, 3, S, S), in the order of the flattened leading dims."""
        videos = [self.frames] if isinstance(self.frames, Tensor) else self.frames
        for video in videos:  # a ragged batch's videos differ in size: resize each on its own
            for chunk in video.reshape(-1, *video.shape[-3:]).split(size):
                with torch.autocast(self.device.type, enabled=False):
                    resized = resize_pad(chunk, self.image_size)
                yield resized  # outside the block: the CNN pass that reads it keeps autocast

    def split_clips(self) -> list[PendingResize]:
        """One (V, 1, T, ...) batch per clip, for the original's clip order."""
        if isinstance(self.frames, Tensor):
            return [PendingResize(clip, self.image_size) for clip in self.frames.split(1, dim=1)]
        clips = self.frames[0].shape[0]
        return [
            PendingResize(tuple(video[i : i + 1] for video in self.frames), self.image_size)
            for i in range(clips)
        ]
