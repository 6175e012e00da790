"""Re-encoding real videos at a lower frame rate and size before they are stored."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from clipbert.data.decoding import DecodeError, VideoInfo, build_decoder
from clipbert.data.reencode import ReencodeSettings, reencode_video

ASSETS = Path(__file__).resolve().parents[1] / "assets"


def _read(data: bytes, decoder: str = "auto") -> tuple[VideoInfo, torch.Tensor]:
    info: list[VideoInfo] = []
    frames = build_decoder(decoder, fallback=None).read(
        data, lambda i: info.append(i) or range(i.num_frames)
    )
    return info[0], frames


@pytest.mark.parametrize(
    "name, size",
    [
        ("h264_1920x1080_vfr_72frames.mp4", (128, 228)),
        ("h264_aac_iphone_rot90_audiofirst.mov", (228, 128)),  # stays portrait: rotation applied
        ("vp9_opus_1280x720_noduration.webm", (128, 228)),  # decord cannot open the source
        ("gif_14x25_24frames_tiny.gif", (24, 14)),  # never enlarged; odd height loses a row
    ],
)
def test_reencoded_video_keeps_its_duration_at_the_new_rate_and_size(name, size) -> None:
    source_info, source = _read((ASSETS / name).read_bytes(), "pyav")
    info, frames = _read(reencode_video((ASSETS / name).read_bytes(), ReencodeSettings(6, 128)))
    assert tuple(frames.shape[-2:]) == size
    assert info.fps == pytest.approx(6.0)
    duration = source_info.num_frames / source_info.fps
    assert abs(info.num_frames - duration * 6) <= 1.5
    # the same picture: the first frames agree once brought to one size
    first = F.interpolate(source[:1].float(), size=size, mode="area")
    assert (first - frames[:1].float()).abs().mean() < 12


def test_only_the_frame_rate_or_only_the_size() -> None:
    data = (ASSETS / "h264_176x144_29.97fps_lowbitrate.mp4").read_bytes()
    info, frames = _read(reencode_video(data, ReencodeSettings(short_side=72)))
    assert info.num_frames == 120 and info.fps == pytest.approx(29.97, abs=0.01)
    assert frames.shape[-2:] == (72, 88)
    info, frames = _read(reencode_video(data, ReencodeSettings(fps=10)))
    assert 39 <= info.num_frames <= 41 and frames.shape[-2:] == (144, 176)


def test_a_corrupt_packet_is_skipped_and_unreadable_bytes_fail_clearly() -> None:
    data = (ASSETS / "h264_1280x720_corrupt_nal.mp4").read_bytes()
    info, _ = _read(reencode_video(data, ReencodeSettings(fps=5, short_side=64)))
    assert info.num_frames >= 5
    with pytest.raises(DecodeError, match="could not re-encode"):
        reencode_video(b"not a video at all", ReencodeSettings(fps=5))
    with pytest.raises(DecodeError, match="could not re-encode"):
        reencode_video((ASSETS / "broken_truncated.jpg").read_bytes(), ReencodeSettings(fps=5))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"fps": 0}, "fps must be a positive number"),
        ({"fps": float("nan")}, "fps must be a positive number"),
        ({"short_side": 8}, "short_side must be >= 16"),
        ({"fps": 5, "crf": 60}, r"crf must be in \[0, 51\]"),
    ],
)
def test_bad_settings_are_refused(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        ReencodeSettings(**kwargs)
