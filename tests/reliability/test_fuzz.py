"""Fuzzing the jsonl reader and the store -> decoder path with hypothesis (bounded time), and a
decoder that never returns: each ends in our own error naming the input, never another
exception, a hang or a dead process."""

from __future__ import annotations

import json
import multiprocessing
import tempfile
import threading
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clipbert.data.annotations import AnnotationError, load_video_qa
from clipbert.data.decoding import DecodeError, TimeLimitedDecoder, VideoDecoder, build_decoder
from clipbert.data.frame_sampling import FrameSampling
from clipbert.data.readers import VideoClipReader, read_or_mark
from clipbert.data.stores import LmdbStore, LmdbWriter
from tests.reliability import media

FUZZ = settings(
    max_examples=60, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
GOOD = media.video()
GOOD_MATROSKA = media.video(fmt="matroska")
SAMPLING = FrameSampling(n_clips=1, num_frames=2, fps=1.0, strategy="fixed")

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=8,
)
records = st.dictionaries(
    st.sampled_from(["video_id", "gif_name", "question", "answer", "question_id", "x"]),
    json_values,
)


def _check_jsonl(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzz.jsonl"
        path.write_bytes(data)
        try:
            examples = load_video_qa(path)
        except AnnotationError as err:
            assert str(err).startswith(str(path)), err
        else:
            assert examples and all(isinstance(e.question, str) for e in examples)


@FUZZ
@given(st.binary(max_size=300))
def test_arbitrary_bytes_as_jsonl(data: bytes) -> None:
    _check_jsonl(data)


@FUZZ
@given(st.lists(records | st.text(max_size=20), min_size=1, max_size=5))
def test_arbitrary_records_as_jsonl(rows: list) -> None:

    text = "\n".join(row if isinstance(row, str) else json.dumps(row) for row in rows)
    _check_jsonl(text.encode("utf-8", "surrogatepass"))


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("fuzz_store")
    with LmdbWriter(path) as writer:
        writer.put("good", media.video())
    return path


@pytest.fixture(scope="module")
def reader(store_path: Path) -> VideoClipReader:
    return _reader(store_path)


def _reader(store_path: Path) -> VideoClipReader:
    return VideoClipReader(LmdbStore(store_path), build_decoder("auto", "pyav", 10.0), SAMPLING)


def _decode_in_child(store_path: Path, data: bytes) -> tuple[str, object]:
    """The child's side: ('frames', shape) or ('error', message); anything else raises."""
    try:
        return "frames", tuple(_reader(store_path).decode(data, "video 'fuzz'").shape)
    except DecodeError as err:
        return "error", str(err)


class DecodingChild:
    """A spawned process that decodes for the test. The decoders are C and C++ libraries: if
    some bytes abort them, the child dies, the example fails with the bytes that did it (and
    hypothesis shrinks them in fresh children) instead of the whole test session dying."""

    def __init__(self, store_path: Path) -> None:
        self.store_path = store_path
        self.pool = self._start()

    def _start(self) -> ProcessPoolExecutor:
        """A new child, warmed up (imports done) outside hypothesis' deadline."""
        pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
        pool.submit(_decode_in_child, self.store_path, GOOD).result(timeout=300)
        return pool

    def decode(self, data: bytes) -> tuple[str, object]:
        try:
            return self.pool.submit(_decode_in_child, self.store_path, data).result(timeout=120)
        except BrokenProcessPool:
            self.pool = self._start()
            raise AssertionError(f"decoding these {len(data)} bytes killed the process") from None


@pytest.fixture(scope="module")
def decoding_child(store_path: Path) -> Iterator[DecodingChild]:
    child = DecodingChild(store_path)
    yield child
    child.pool.shutdown()


@st.composite
def damaged_videos(draw: st.DrawFn, videos: tuple[bytes, ...] = (GOOD, GOOD_MATROSKA)) -> bytes:
    """One of ``videos``, cut short or with bytes overwritten."""
    video = draw(st.sampled_from(videos))
    at = draw(st.integers(0, len(video)))
    if draw(st.booleans()):
        return video[:at]
    junk = draw(st.binary(min_size=1, max_size=64))
    return video[:at] + junk + video[at + len(junk) :]


@FUZZ
@given(st.binary(max_size=2000) | damaged_videos())
def test_arbitrary_bytes_as_a_video(decoding_child: DecodingChild, data: bytes) -> None:
    _check_decoded(decoding_child, data)


@pytest.mark.slow
@settings(
    max_examples=6000,
    deadline=None,
    derandomize=True,  # the same cases every run: a longer, repeatable search than the above
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(damaged_videos(tuple(media.video(fmt=f) for f in ("mp4", "matroska", "avi", "mov"))))
def test_many_damaged_videos_of_four_containers(decoding_child: DecodingChild, data: bytes) -> None:
    _check_decoded(decoding_child, data)


def _check_decoded(decoding_child: DecodingChild, data: bytes) -> None:
    outcome, detail = decoding_child.decode(data)
    if outcome == "error":
        assert "video 'fuzz'" in detail
    else:
        assert detail[:3] == (1, 2, 3)


def test_missing_and_broken_keys_are_marked_in_evaluation(reader: VideoClipReader) -> None:
    frames, reason, times = read_or_mark(reader, "no-such-key")
    assert "no-such-key" in reason and frames.shape[:2] == (1, 2) and times == []
    frames, reason, times = read_or_mark(reader, "good")
    assert reason is None and frames.shape[:3] == (1, 2, 3) and len(times) == 2


class _Stuck(VideoDecoder):
    """A decoder sent into an endless loop by a hostile file."""

    name = "stuck"

    def __init__(self) -> None:
        self.release = threading.Event()

    def read(self, data, select):
        self.release.wait(30)
        raise DecodeError("released")


def test_a_hanging_decode_becomes_a_broken_sample(reader: VideoClipReader) -> None:
    stuck = _Stuck()
    hanging = VideoClipReader(reader.store, TimeLimitedDecoder(stuck, 0.3), SAMPLING)
    try:
        frames, reason, _ = read_or_mark(hanging, "good")
    finally:
        stuck.release.set()
    assert "did not finish within 0.3 s (decode_timeout)" in reason
    assert frames.abs().sum() == 0
