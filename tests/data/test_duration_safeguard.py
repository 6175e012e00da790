"""The original's duration safeguard: a file whose stream ends before its header says (a
truncated download) has its clips spread over the header's frames when the stream holds at
least 80% of them, else over the frames it really holds (reference 4.2). torchcodec and PyAV
read such files this way; decord cannot open them, and its PyAV fallback reads them."""

from __future__ import annotations

import io

import av
import numpy as np
import pytest
import torch

from clipbert.data.decoding import build_decoder, sampled_frame_count
from clipbert.data.frame_sampling import FrameSampling, sample_frame_indices
from clipbert.data.readers import VideoClipReader
from tests.helpers import decoder_or_skip

FRAMES, FPS = 100, 10
SAMPLING = FrameSampling(n_clips=4, num_frames=2, fps=5.0, strategy="fixed")


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> bytes:
    """100 noisy frames (so every frame takes bytes), header first (faststart)."""
    path = tmp_path_factory.mktemp("safeguard") / "clip.mp4"
    rng = np.random.default_rng(0)
    with av.open(str(path), "w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.options = {"g": "5"}
        for i in range(FRAMES):
            frame = (rng.integers(0, 40, (48, 64, 3)) + 2 * i).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        container.mux(stream.encode())
    return path.read_bytes()


def _frames_held(data: bytes) -> int:
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        return sum(1 for packet in container.demux(stream) if packet.size > 0)


def _read(data: bytes, name: str) -> torch.Tensor:
    decoder = decoder_or_skip(name, fallback="pyav" if name == "decord" else None)
    return VideoClipReader(None, decoder, SAMPLING).decode(data, "clip.mp4")


def _expected(whole: torch.Tensor, total: int, held: int) -> torch.Tensor:
    indices = sample_frame_indices(total, FPS, n_clips=4, num_frames=2, fps=5.0, strategy="fixed")
    flat = [min(i, held - 1) for clip in indices for i in clip]
    return whole[flat].view(4, 2, *whole.shape[1:])


def test_the_rule() -> None:
    assert sampled_frame_count(100, 100) == 100
    assert sampled_frame_count(100, 85) == 100  # at least 80%: the header's duration
    assert sampled_frame_count(100, 79) == 79  # less: the stream's own
    assert sampled_frame_count(0, 42) == 42  # no count in the header (mkv, webm)
    assert sampled_frame_count(2**31, 300) == 300  # a damaged header


@pytest.mark.parametrize("name", ["decord", "torchcodec", "pyav"])
@pytest.mark.parametrize("kept", [0.9, 0.5])
def test_truncated_files_are_sampled_as_the_original(video: bytes, kept: float, name: str) -> None:
    cut = video[: int(len(video) * kept)]
    held = _frames_held(cut)
    assert 0 < held < FRAMES
    whole = build_decoder("pyav", fallback=None).read(video, lambda info: list(range(FRAMES)))
    total = FRAMES if held >= 0.8 * FRAMES else held
    assert (held >= 0.8 * FRAMES) == (kept == 0.9)
    torch.testing.assert_close(_read(cut, name), _expected(whole, total, held), rtol=0, atol=0)
