"""Damaged containers that kill decord's process rather than raise: a frame count beyond the
file's size (an uncatchable std::bad_alloc) is refused before decord, and the PyAV fallback still
decodes the video; a sample offset past the end (a segmentation fault in decord's in-memory
reader) is read through an in-memory file whose seeks FFmpeg checks. torchcodec, which counts
frames by scanning the stream, survives the same files without the header check.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from clipbert.data.container_headers import declared_frame_count_error
from clipbert.data.decoding import DecodeError
from tests.helpers import decoder_or_skip
from tests.reliability import media

ASSETS = Path(__file__).parents[1] / "assets"
VIDEOS = sorted(
    p for p in ASSETS.iterdir() if p.suffix in {".mp4", ".mov", ".mkv", ".avi", ".webm", ".gif"}
)


def with_stts_count(data: bytes, count: int) -> bytes:
    """``data`` (an mp4) with the first time-to-sample entry claiming ``count`` frames."""
    at = data.index(b"stts") + 12  # type, version and flags, entry count
    return data[:at] + struct.pack(">I", count) + data[at + 4 :]


def with_stco_offset(data: bytes, offset: int) -> bytes:
    """``data`` (an mp4) with its first chunk said to start at byte ``offset``."""
    at = data.index(b"stco") + 12  # type, version and flags, entry count
    return data[:at] + struct.pack(">I", offset) + data[at + 4 :]


def with_matroska_duration(data: bytes, value: float) -> bytes:
    """``data`` (a Matroska file) with its segment duration (element 0x4489) set to ``value``."""
    at = data.index(b"\x44\x89")
    assert data[at + 2] == 0x88, "expected an 8-byte float duration"
    return data[: at + 3] + struct.pack(">d", value) + data[at + 11 :]


@pytest.mark.parametrize("path", VIDEOS, ids=lambda p: p.name)
def test_real_videos_pass(path: Path) -> None:
    assert declared_frame_count_error(path.read_bytes()) is None


@pytest.mark.parametrize("fmt", ["mp4", "mov", "matroska", "avi"])
def test_written_videos_pass(fmt: str) -> None:
    assert declared_frame_count_error(media.video(fmt=fmt)) is None


def test_a_damaged_mp4_frame_count_is_named() -> None:
    data = with_stts_count(media.video(), 2_062_916_344)
    reason = declared_frame_count_error(data)
    assert reason == (
        f"the header claims 2062916344 frames in a file of {len(data)} bytes; it is damaged"
    )


def test_decord_refuses_a_damaged_frame_count() -> None:
    decoder = decoder_or_skip("decord", fallback=None)
    with pytest.raises(DecodeError, match="decord: the header claims 2062916344 frames"):
        decoder.read(with_stts_count(media.video(), 2_062_916_344), lambda info: [0])


@pytest.mark.parametrize("duration", [1e9, 1e12])
def test_a_damaged_matroska_duration_is_named(duration: float) -> None:
    data = with_matroska_duration(media.video(fmt="matroska"), duration)
    assert "frames in a file of" in declared_frame_count_error(data)


@pytest.mark.parametrize(
    "data", [b"", b"\x00" * 64, b"not a video at all", media.video()[:100]], ids=str
)
def test_unreadable_bytes_are_left_to_the_decoder(data: bytes) -> None:
    assert declared_frame_count_error(data) is None


# What each decoder makes of the three damaged files, with the PyAV fallback and alone. With
# the fallback, decord's refused frame count is decoded by PyAV (which counts frames by
# demuxing); the only chunk of the third file lies past the end. torchcodec scans the stream,
# so it decodes the first two itself.
FRAMES = "(2, 3, 24, 32)"
DAMAGE_OUTCOMES = {
    "decord": [FRAMES, FRAMES, "broken", "broken", "broken", "broken"],
    "torchcodec": [FRAMES, FRAMES, "broken", FRAMES, FRAMES, "broken"],
}


@pytest.mark.parametrize("name", sorted(DAMAGE_OUTCOMES))
def test_damaged_containers_are_broken_samples_not_dead_processes(
    name: str, tmp_path: Path
) -> None:
    """In a child process, so that a regression kills the child and fails this test instead
    of killing the test session."""
    decoder_or_skip(name)
    damaged = {
        "count.mp4": with_stts_count(media.video(frames=6), 2_062_916_344),
        "duration.mkv": with_matroska_duration(media.video(frames=6, fmt="matroska"), 1e12),
        "offset.mp4": with_stco_offset(media.video(frames=6), 0x7FFF_FFF0),
    }
    for file, data in damaged.items():
        (tmp_path / file).write_bytes(data)
    script = (
        "import sys, pathlib\n"
        "from clipbert.data.decoding import DecodeError, build_decoder\n"
        "for fallback in ('pyav', None):\n"
        "    decoder = build_decoder(sys.argv[1], fallback)\n"
        "    for path in sys.argv[2:]:\n"
        "        try:\n"
        "            frames = decoder.read(pathlib.Path(path).read_bytes(), lambda i: [0, 5])\n"
        "            print(tuple(frames.shape))\n"
        "        except DecodeError:\n"
        "            print('broken')\n"
    )
    child = subprocess.run(
        [sys.executable, "-c", script, name, *(str(tmp_path / n) for n in damaged)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == 0, child.stderr[-2000:]
    assert child.stdout.splitlines() == DAMAGE_OUTCOMES[name]


@pytest.mark.parametrize("name", ["decord", "torchcodec"])
def test_decoding_leaves_no_file_descriptor_open(name: str) -> None:
    decoder = decoder_or_skip(name, fallback=None)
    data = media.video()
    decoder.read(data, lambda info: [0])
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(20):
        decoder.read(data, lambda info: [0, 5])
    assert len(os.listdir("/proc/self/fd")) == before


def test_without_memfd_decord_reads_the_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the system has no anonymous in-memory files (macOS, Windows) decord reads the
    bytes directly, with the same frames."""
    data = media.video()
    decoder = decoder_or_skip("decord", fallback=None)
    expected = decoder.read(data, lambda info: [0, 3, 5])
    monkeypatch.delattr(os, "memfd_create")
    assert torch.equal(decoder.read(data, lambda info: [0, 3, 5]), expected)
