"""Frames beyond 5:1 are refused as the original refuses them (reference 4.4): in training the
video is replaced, in evaluation its questions are counted wrong, with the reason."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from clipbert.data.decoding import DecodeError, build_decoder
from clipbert.data.frame_sampling import FrameSampling
from clipbert.data.readers import ImageReader, VideoClipReader, read_or_mark
from clipbert.data.stores import FolderStore


def _video(path: Path, width: int, height: int) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for _ in range(10):
            frame = np.full((height, width, 3), 128, dtype=np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


@pytest.fixture
def store(tmp_path: Path) -> FolderStore:
    Image.new("RGB", (300, 50)).save(tmp_path / "banner.png")  # 6:1
    Image.new("RGB", (50, 250)).save(tmp_path / "tall.png")  # 1:5, the limit
    _video(tmp_path / "strip.mp4", 192, 32)  # 6:1
    _video(tmp_path / "wide.mp4", 160, 32)  # 5:1
    return FolderStore(tmp_path)


def test_images_beyond_five_to_one_are_unreadable(store: FolderStore) -> None:
    read = ImageReader(store)
    assert read("tall").shape[-2:] == (250, 50)
    with pytest.raises(DecodeError, match=r"banner.*300x50 are beyond the 5:1 aspect ratio"):
        read("banner")
    frames, reason, _ = read_or_mark(read, "banner")
    assert frames.shape[-2:] == (32, 32) and "5:1" in reason


def test_videos_beyond_five_to_one_are_unreadable(store: FolderStore) -> None:
    sampling = FrameSampling(n_clips=1, num_frames=2, fps=1.0, strategy="fixed")
    read = VideoClipReader(store, build_decoder(), sampling)
    assert read("wide").shape == (1, 2, 3, 32, 160)
    with pytest.raises(DecodeError, match=r"strip.*192x32 are beyond the 5:1"):
        read("strip")
