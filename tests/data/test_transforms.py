"""Resize-longer-side and pad-to-square, as the original's frame transform (§4.4)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from clipbert.data.decoding import build_decoder
from clipbert.data.transforms import ResizePad, pad_to_square, resize_longer_side, resized_shape

ASSETS = Path(__file__).resolve().parents[1] / "assets"


def _random_frames(t: int, h: int, w: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(h * 10_000 + w)
    return torch.randint(0, 256, (t, 3, h, w), dtype=torch.uint8, generator=generator)


def _float_reference(frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(frames.float(), size=size, mode="bilinear", align_corners=False)


@pytest.mark.parametrize(
    ("hw", "size", "expected"),
    [
        ((256, 340), 448, (337, 448)),  # int(448 * 256 / 340) = int(337.3)
        ((340, 256), 448, (448, 337)),
        ((144, 176), 448, (366, 448)),  # int(366.55): truncated
        ((1080, 1920), 448, (252, 448)),
        ((100, 100), 224, (224, 224)),
        ((1, 1000), 448, (1, 448)),  # never 0
    ],
)
def test_resized_shape_truncates(hw, size, expected) -> None:
    assert resized_shape(*hw, size) == expected


@pytest.mark.parametrize(("hw", "size"), [((256, 340), 448), ((1080, 1920), 448), ((25, 14), 64)])
def test_resize_keeps_uint8_and_stays_within_half_a_level(hw, size) -> None:
    frames = _random_frames(2, *hw)
    resized = resize_longer_side(frames, size)
    expected_size = resized_shape(*hw, size)
    assert resized.dtype == torch.uint8
    assert resized.shape == (2, 3, *expected_size)
    diff = (resized.float() - _float_reference(frames, expected_size)).abs().max()
    assert diff <= 0.5 + 1e-4


def test_resize_is_a_no_op_at_the_right_size() -> None:
    frames = _random_frames(1, 337, 448)
    assert resize_longer_side(frames, 448) is frames


def test_resize_rejects_float_frames() -> None:
    with pytest.raises(ValueError, match="uint8"):
        resize_longer_side(torch.zeros(1, 3, 8, 8), 16)


def test_pad_is_anchored_top_left() -> None:
    frames = torch.full((2, 3, 337, 448), 7, dtype=torch.uint8)
    padded = pad_to_square(frames, 448)
    assert padded.shape == (2, 3, 448, 448) and padded.dtype == torch.uint8
    assert torch.equal(padded[..., :337, :], frames)
    assert padded[..., 337:, :].eq(0).all()

    portrait = pad_to_square(torch.full((1, 3, 448, 337), 7, dtype=torch.uint8), 448)
    assert portrait[..., :337].eq(7).all() and portrait[..., 337:].eq(0).all()


def test_pad_rejects_frames_larger_than_the_square() -> None:
    with pytest.raises(ValueError, match="resize"):
        pad_to_square(torch.zeros(1, 3, 449, 10, dtype=torch.uint8), 448)


def test_resize_pad_on_decoded_frames() -> None:
    data = (ASSETS / "h264_176x144_29.97fps_lowbitrate.mp4").read_bytes()
    frames = build_decoder().read(data, lambda info: [0, 60])
    out = ResizePad(448)(frames)
    assert out.shape == (2, 3, 448, 448) and out.dtype == torch.uint8
    reference = _float_reference(frames, (366, 448))
    assert (out[..., :366, :].float() - reference).abs().max() <= 0.5 + 1e-4
    assert out[..., 366:, :].eq(0).all()


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "448"])
def test_resize_pad_validates_image_size(bad) -> None:
    with pytest.raises(ValueError, match="image_size"):
        ResizePad(bad)
