"""The model's input transform: resize the longer side and pad to a square, exactly as the
original's frame transform (§4.4), then BGR and the mean, in chunks at inference."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from clipbert.data.batches import batch_frames
from clipbert.data.decoding import build_decoder
from clipbert.models.frame_input import FrameInput, resize_pad, resized_shape
from tests.helpers import FIXTURES

ASSETS = Path(__file__).resolve().parents[1] / "assets"


def resize_pad_batch(frames, image_size: int) -> torch.Tensor:
    """Stacked or ragged videos resized and padded as the model's input transform does."""
    return FrameInput(image_size, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)).resize(frames)


def _random_frames(t: int, h: int, w: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(h * 10_000 + w)
    return torch.randint(0, 256, (t, 3, h, w), dtype=torch.uint8, generator=generator)


@pytest.mark.parametrize(
    ("hw", "size", "expected"),
    [
        ((256, 340), 448, (337, 448)),  # int(448 * 256 / 340) = int(337.3)
        ((340, 256), 448, (448, 337)),
        ((144, 176), 448, (366, 448)),  # int(366.55): truncated
        ((1080, 1920), 448, (252, 448)),
        ((100, 100), 224, (224, 224)),
        ((1, 1000), 448, (1, 448)),  # never 0
        # the original's int(S * (W / H)): 448 * (345 / 672) = 229.99..., 448 * 345 / 672 = 230
        ((672, 345), 448, (448, 229)),
        ((345, 672), 448, (229, 448)),
    ],
)
def test_resized_shape_truncates(hw, size, expected) -> None:
    assert resized_shape(*hw, size) == expected


def test_resize_pad_is_the_float_resize_then_zero_pad_bottom_right() -> None:
    frames = _random_frames(2, 256, 340)
    out = resize_pad(frames, 448)
    assert out.dtype == torch.float32 and out.shape == (2, 3, 448, 448)
    expected = F.interpolate(frames.float(), size=(337, 448), mode="bilinear", align_corners=False)
    assert torch.equal(out[..., :337, :], expected)
    assert out[..., 337:, :].eq(0).all()
    portrait = resize_pad(_random_frames(1, 340, 256), 448)
    assert portrait[..., 337:].eq(0).all() and portrait[..., :337].gt(0).any()


def test_resize_pad_keeps_leading_dims_and_accepts_float() -> None:
    frames = _random_frames(6, 30, 40).view(2, 3, 3, 30, 40)
    out = resize_pad(frames, 64)
    assert out.shape == (2, 3, 3, 64, 64)
    assert torch.equal(out, resize_pad(frames.float(), 64))


def test_resize_pad_rejects_frames_without_three_channels() -> None:
    with pytest.raises(ValueError, match=r"\(\.\.\., 3, H, W\)"):
        resize_pad(torch.zeros(2, 4, 8, 8), 16)


def test_videos_of_one_size_are_stacked_and_resized_together() -> None:
    videos = [_random_frames(2, 30, 40) for _ in range(3)]
    stacked = batch_frames(videos)
    assert isinstance(stacked, torch.Tensor) and stacked.shape == (3, 2, 3, 30, 40)
    assert torch.equal(resize_pad_batch(stacked, 64), resize_pad(stacked, 64))


def test_videos_of_mixed_sizes_stay_ragged_and_each_is_resized_alone() -> None:
    videos = [_random_frames(2, 30, 40), _random_frames(2, 50, 20), _random_frames(2, 30, 40)]
    ragged = batch_frames(videos)
    assert isinstance(ragged, tuple) and [v.shape for v in ragged] == [v.shape for v in videos]
    out = resize_pad_batch(ragged, 64)
    assert out.shape == (3, 2, 3, 64, 64) and out.dtype == torch.float32
    for video, resized in zip(videos, out, strict=True):
        assert torch.equal(resized, resize_pad(video, 64))


@pytest.mark.parametrize("ragged", [False, True])
def test_eval_chunks_give_the_frames_of_the_whole_batch(ragged: bool) -> None:
    sizes = [(30, 40), (50, 20), (30, 40)] if ragged else [(30, 40)] * 3
    videos = [_random_frames(2 * 3, h, w).unflatten(0, (2, 3)) for h, w in sizes]  # 2 clips x 3
    frames = batch_frames(videos)
    assert isinstance(frames, tuple) == ragged
    transform = FrameInput(64, (10.0, 20.0, 30.0), (2.0, 4.0, 8.0), frames_per_chunk=4)
    (whole,) = transform.train().chunks(frames)  # training: the whole batch at once
    assert whole.shape == (18, 3, 64, 64)
    chunks = list(transform.eval().chunks(frames))
    assert max(len(c) for c in chunks) <= 4
    assert torch.equal(torch.cat(chunks), whole)
    expected = resize_pad_batch(frames, 64).flatten(0, 2)
    bgr_mean, bgr_std = torch.tensor([30.0, 20.0, 10.0]), torch.tensor([8.0, 4.0, 2.0])
    torch.testing.assert_close(
        whole, (expected.flip(1) - bgr_mean.view(3, 1, 1)) / bgr_std.view(3, 1, 1)
    )


def test_the_resize_runs_in_float32_under_autocast_and_leaves_it_on() -> None:
    """bf16 autocast must not reach the resize (parity), nor be off for the CNN pass after it."""
    frames = torch.stack([_random_frames(4, 30, 40)])
    transform = FrameInput(64, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), frames_per_chunk=3).eval()
    expected = resize_pad(frames, 64).flatten(0, 1).flip(1)
    with torch.autocast("cpu", torch.bfloat16):
        for chunk, start in zip(transform.chunks(frames), (0, 3), strict=True):
            assert torch.is_autocast_enabled("cpu")
            assert chunk.dtype == torch.float32
            assert torch.equal(chunk, expected[start : start + 3])
        (whole,) = transform.train().chunks(frames)
        assert torch.equal(whole, expected)


def test_image_size_none_takes_frames_as_they_come() -> None:
    """The original's calling convention: frames already resized, padded and mean-subtracted."""
    frames = torch.randn(2, 3, 32, 32)
    (out,) = FrameInput(None, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)).train().chunks(frames)
    assert torch.equal(out, frames.flip(1))


@pytest.mark.parametrize("image_size", [16, 0, 224.0, True])
def test_bad_image_sizes_are_refused(image_size: object) -> None:
    with pytest.raises(ValueError, match="image_size must be >= 32"):
        FrameInput(image_size, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))


def test_matches_the_original_image_resize_and_pad() -> None:
    """shared/fixtures holds raw frames and the original's ImageResize + ImagePad output."""
    if not FIXTURES.is_dir():
        pytest.skip(f"parity fixture not found at {FIXTURES}")
    case = torch.load(FIXTURES / "inputs.pt", weights_only=True)["qa_224_pipeline"]
    out = resize_pad_batch(batch_frames(case["raw_frames"]), case["max_img_size"])
    assert torch.equal(out, case["frames_resized_padded"])
    decoded_layout = [_channels_last(video) for video in case["raw_frames"]]
    out = resize_pad_batch(batch_frames(decoded_layout), case["max_img_size"])
    assert torch.equal(out, case["frames_resized_padded"])


def _channels_last(frames: torch.Tensor) -> torch.Tensor:
    """The same values laid out as decoders write them (channels innermost)."""
    return frames.movedim(-3, -1).contiguous().movedim(-1, -3)


@pytest.mark.parametrize("sizes", [[(30, 40)] * 3, [(30, 40), (50, 20), (30, 40)]])
def test_decoded_layout_stays_channels_last_and_resizes_to_the_same_values(sizes) -> None:
    """Batching keeps channels-last frames so (no transposing copy), and the float transform
    gives the planar layout's values exactly."""
    planar = [_random_frames(2, h, w) for h, w in sizes]
    decoded = [_channels_last(video) for video in planar]
    batch = batch_frames(decoded)
    for frames in [batch.flatten(0, 1)] if isinstance(batch, torch.Tensor) else batch:
        assert frames.is_contiguous(memory_format=torch.channels_last)
    out = resize_pad_batch(batch, 64)
    assert torch.equal(out, resize_pad_batch(batch_frames(planar), 64))
    assert out.flatten(0, 1).is_contiguous(memory_format=torch.channels_last)


def test_resize_pad_on_decoded_frames() -> None:
    data = (ASSETS / "h264_176x144_29.97fps_lowbitrate.mp4").read_bytes()
    frames = build_decoder().read(data, lambda info: [0, 60])
    out = resize_pad(frames, 448)
    assert out.shape == (2, 3, 448, 448)
    assert out[..., 366:, :].eq(0).all() and out[..., :366, :].mean() > 10


@pytest.mark.parametrize(
    ("image_size", "keeping", "device", "expected"),
    [
        (448, False, "cpu", 2),  # 12.8 MB of activations a frame: 2 stay under glibc's 32 MB
        (224, False, "cpu", 8),
        (768, False, "cpu", 1),
        (448, True, "cpu", 8),  # keep_freed_memory: any size is reused
        (448, False, "cuda", 8),  # a GPU's caching allocator reuses everything
        (None, False, "cpu", 8),
    ],
)
def test_eval_chunks_on_a_cpu_fit_what_glibc_reuses(
    monkeypatch, image_size, keeping, device, expected
) -> None:
    monkeypatch.setattr("clipbert.allocator._keeping", keeping)
    transform = FrameInput(image_size, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), frames_per_chunk=8)
    assert transform.eval_chunk_size(torch.device(device)) == expected
    frames = torch.zeros((1, 3, 2, 3, 64, 64), dtype=torch.uint8)
    if device == "cpu" and image_size == 448:
        sizes = [chunk.shape[0] for chunk in transform.eval().chunks(frames)]
        assert sizes == [min(expected, 6 - start) for start in range(0, 6, expected)]
