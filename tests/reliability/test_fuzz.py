"""Fuzzing the jsonl reader and the store -> decoder path with hypothesis (bounded time), and a
decoder that never returns: each ends in our own error naming the input, never another
exception or a hang."""

from __future__ import annotations

import json
import tempfile
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clipbert.data.annotations import AnnotationError, load_video_qa
from clipbert.data.datasets import FrameSampling, VideoClipReader, read_or_mark
from clipbert.data.decoding import DecodeError, TimeLimitedDecoder, VideoDecoder, build_decoder
from clipbert.data.stores import LmdbStore, LmdbWriter
from tests.reliability import media

FUZZ = settings(
    max_examples=60, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
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
def reader(tmp_path_factory: pytest.TempPathFactory) -> VideoClipReader:
    path = tmp_path_factory.mktemp("fuzz_store")
    with LmdbWriter(path) as writer:
        writer.put("good", media.video())
    return VideoClipReader(LmdbStore(path), build_decoder("decord", "pyav", 10.0), SAMPLING)


GOOD = media.video()


@FUZZ
@given(
    st.binary(max_size=2000)
    | st.builds(lambda cut: GOOD[:cut], st.integers(0, len(GOOD)))
    | st.builds(
        lambda at, junk: GOOD[:at] + junk + GOOD[at + len(junk) :],
        st.integers(0, len(GOOD)),
        st.binary(min_size=1, max_size=64),
    )
)
def test_arbitrary_bytes_as_a_video(reader: VideoClipReader, data: bytes) -> None:
    try:
        frames = reader.decode(data, "video 'fuzz'")
    except DecodeError as err:
        assert "video 'fuzz'" in str(err)
    else:
        assert frames.shape[:3] == (1, 2, 3)


def test_missing_and_broken_keys_are_marked_in_evaluation(reader: VideoClipReader) -> None:
    frames, reason = read_or_mark(reader, "no-such-key")
    assert "no-such-key" in reason and frames.shape[:2] == (1, 2)
    frames, reason = read_or_mark(reader, "good")
    assert reason is None and frames.shape[:3] == (1, 2, 3)


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
        frames, reason = read_or_mark(hanging, "good")
    finally:
        stuck.release.set()
    assert "did not finish within 0.3 s (decode_timeout)" in reason
    assert frames.abs().sum() == 0
