"""Frame transform of the original ClipBERT: resize the longer side, then pad to a square.

The same transform serves images and video frames; there is no augmentation. The original
resizes in float and keeps the float result; rounding it back to uint8 moves a pixel by up to
0.5 and the logits by about 1e-2, far outside parity. So loaders ship decoded frames as uint8
at their own size (padded to the largest in the batch, usually fewer bytes than the resized
square) and ``resize_pad_batch`` runs the exact float transform on the model's device.
"""

from __future__ import annotations

from collections.abc import Sequence

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


def pad_to_largest(frames: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
    """Stack frame tensors (..., 3, h_i, w_i) of different sizes, zero-padded at the bottom
    right, plus each one's (h, w) so ``resize_pad_batch`` can crop it back."""
    sizes = torch.tensor([tuple(f.shape[-2:]) for f in frames], dtype=torch.long)
    if bool((sizes == sizes[0]).all()):  # one size (the common case): no zero fill
        return torch.stack(list(frames)), sizes
    height, width = sizes.max(dim=0).values.tolist()
    padded = frames[0].new_zeros((len(frames), *frames[0].shape[:-2], height, width))
    for out, item in zip(padded, frames, strict=True):
        out[..., : item.shape[-2], : item.shape[-1]] = item
    return padded, sizes


def resize_pad_batch(frames: Tensor, sizes: Tensor, image_size: int) -> Tensor:
    """Batch (V, ..., 3, H, W) holding V videos of sizes (V, 2) -> float32 (V, ..., 3, S, S).

    Videos of one size (the common case) are resized in one call.
    """
    out = frames.new_empty((*frames.shape[:-2], image_size, image_size), dtype=torch.float32)
    groups: dict[tuple[int, int], list[int]] = {}
    for index, (height, width) in enumerate(sizes.tolist()):
        groups.setdefault((height, width), []).append(index)
    for (height, width), indices in groups.items():
        select = torch.tensor(indices, device=frames.device)
        out[select] = resize_pad(frames[select, ..., :height, :width], image_size)
    return out
