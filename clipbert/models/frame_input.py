"""The model's input transform: uint8 frames of any size -> what the CNN reads, on the device.

The original's ``ImageResize`` + ``ImagePad`` + ``ImageNorm``, in that order: the longer side
resized to ``image_size`` (bilinear, ``align_corners=False``, no antialiasing, in float32; the
shorter side truncated), zeros on the right and bottom up to a square, then RGB -> BGR and
``(x - mean) / std`` on the 0-255 scale (zeros of the padding included, as the original). The
original keeps the resized frames in float; rounding them back to uint8 moves a pixel by up to
0.5 and the logits by about 1e-2, far outside parity, so loaders ship decoded uint8 frames at
their own size and this runs on the model's device. Frames stay channels-last in memory (as
decoders write them) up to the CNN; the transform gives the same values for either layout.

In training the whole batch is transformed at once (one autograd graph). In evaluation the
frames come in chunks of ``frames_per_chunk``, each transformed just before the CNN reads it,
so a batch never holds all its frames as float32 at ``image_size`` (16 videos x 16 clips x 2
frames at 448 would be 1.2 GB). Every frame is transformed on its own either way, so the values
are the same.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from clipbert.allocator import DEFAULT_MMAP_THRESHOLD_MAX, keeps_freed_memory
from clipbert.data.batches import Frames

MIN_IMAGE_SIZE = 32  # one res5 cell
# The CNN's largest fp32 activations per frame (the stem's 64 x S/2 x S/2 and res2's
# 256 x S/4 x S/4): 16 values, 64 bytes, per input pixel.
ACTIVATION_BYTES_PER_PIXEL = 64


def resized_shape(height: int, width: int, image_size: int) -> tuple[int, int]:
    """(h, w) with the longer side = ``image_size``; the shorter side is truncated, as the
    original does (340x256 at 448 -> 448x337), and kept at least 1. The ratio is taken first,
    as the original's ``int(S * (W / H))``: ``int(S * W / H)`` rounds differently for some
    sizes (672x345 at 448: 229 against 230)."""
    if height >= width:
        return image_size, max(1, int(image_size * (width / height)))
    return max(1, int(image_size * (height / width))), image_size


def resize_pad(frames: Tensor, image_size: int) -> Tensor:
    """Frames (..., 3, H, W), uint8 or float on 0-255 -> float32 (..., 3, S, S): longer side to
    ``image_size``, then zero padding on the right and bottom."""
    if frames.dim() < 3 or frames.shape[-3] != 3:
        raise ValueError(f"expected frames shaped (..., 3, H, W), got {tuple(frames.shape)}")
    lead, (height, width) = frames.shape[:-3], frames.shape[-2:]
    size = resized_shape(height, width, image_size)
    flat = frames.reshape(-1, 3, height, width).float()
    if (height, width) != size:
        flat = F.interpolate(flat, size=size, mode="bilinear", align_corners=False)
    flat = F.pad(flat, (0, image_size - size[1], 0, image_size - size[0]), value=0.0)
    return flat.view(*lead, 3, image_size, image_size)


def leading_shape(frames: Frames) -> torch.Size:
    """The (V, ..., ) dims of the frames before (3, H, W)."""
    if isinstance(frames, Tensor):
        return frames.shape[:-3]
    return torch.Size((len(frames), *frames[0].shape[:-3]))


class FrameInput(nn.Module):
    """uint8 RGB frames at their own size -> the CNN's float BGR input (see the module doc).

    ``image_size`` None takes frames as they come, already resized and padded (the original's
    calling convention, ``clipbert.load_original``).
    """

    def __init__(
        self,
        image_size: int | None,
        pixel_mean: Sequence[float],
        pixel_std: Sequence[float],
        frames_per_chunk: int = 8,
    ) -> None:
        super().__init__()
        if image_size is not None and (
            isinstance(image_size, bool)
            or not isinstance(image_size, int)
            or image_size < MIN_IMAGE_SIZE
        ):
            raise ValueError(f"image_size must be >= {MIN_IMAGE_SIZE}, got {image_size!r}")
        if frames_per_chunk < 1:
            raise ValueError(f"eval_frames_per_pass must be >= 1, got {frames_per_chunk}")
        self.image_size = image_size
        self.frames_per_chunk = frames_per_chunk
        # Stored in BGR order: the CNN was trained on BGR input, as the original's.
        self.register_buffer("bgr_mean", _bgr_vector(pixel_mean), persistent=False)
        self.register_buffer("bgr_std", _bgr_vector(pixel_std), persistent=False)

    def chunks(self, frames: Frames) -> Iterator[Tensor]:
        """The CNN's input for every frame, flattened in the order of the leading dims: one
        (F, 3, S, S) tensor in training, chunks of at most ``frames_per_chunk`` in evaluation."""
        if self.training:
            yield self.normalize(self.resize(frames).flatten(0, -4))
            return
        videos = [frames] if isinstance(frames, Tensor) else frames
        size = self.eval_chunk_size(_device(frames))
        for video in videos:  # a ragged batch's videos differ in size: each on its own
            for chunk in video.reshape(-1, *video.shape[-3:]).split(size):
                yield self.normalize(self.resize(chunk))

    def eval_chunk_size(self, device: torch.device) -> int:
        """Frames per CNN pass in evaluation: ``frames_per_chunk``, except on a CPU whose
        allocator returns large blocks to the OS (glibc's default, when no
        ``clipbert.allocator.keep_freed_memory`` was set): there, as many frames as keep the
        largest activations under glibc's reuse ceiling (2 at 448 px, 8 at 224), since mapping
        them afresh in every pass cost 16-clip inference more than smaller passes do
        (benchmarks/RESULTS.md, issue 23)."""
        if device.type != "cpu" or keeps_freed_memory() or self.image_size is None:
            return self.frames_per_chunk
        per_frame = ACTIVATION_BYTES_PER_PIXEL * self.image_size**2
        return max(1, min(self.frames_per_chunk, DEFAULT_MMAP_THRESHOLD_MAX // per_frame))

    def resize(self, frames: Frames) -> Tensor:
        """Float32 frames (V, ..., 3, S, S), resized and padded; ragged videos of one size are
        resized in one call."""
        with torch.autocast(_device(frames).type, enabled=False):  # float32 under autocast too
            if self.image_size is None:
                return frames.float() if isinstance(frames, Tensor) else torch.stack(frames).float()
            if isinstance(frames, Tensor):
                return resize_pad(frames, self.image_size)
            return self._resize_ragged(frames, self.image_size)

    def normalize(self, frames: Tensor) -> Tensor:
        """Resized RGB frames (F, 3, S, S), 0-255 -> BGR, minus the mean, over the std."""
        return (frames.flip(1) - self.bgr_mean) / self.bgr_std

    @staticmethod
    def _resize_ragged(frames: Sequence[Tensor], image_size: int) -> Tensor:
        lead = frames[0].shape[:-3]
        shape = (len(frames), *lead, image_size, image_size, 3)
        out = frames[0].new_empty(shape, dtype=torch.float32).movedim(-1, -3)  # channels-last
        groups: dict[tuple[int, ...], list[int]] = {}
        for index, video in enumerate(frames):
            groups.setdefault(tuple(video.shape), []).append(index)
        for indices in groups.values():
            select = torch.tensor(indices, device=out.device)
            out[select] = resize_pad(torch.stack([frames[i] for i in indices]), image_size)
        return out


def _device(frames: Frames) -> torch.device:
    return (frames if isinstance(frames, Tensor) else frames[0]).device


def _bgr_vector(rgb: Sequence[float]) -> Tensor:
    return torch.tensor(list(rgb), dtype=torch.float32).flip(0).view(3, 1, 1)
