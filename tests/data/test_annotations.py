"""jsonl and ans2label readers: the original's fields, clear errors with file and line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clipbert.data.annotations import (
    AnnotationError,
    answers_by_label,
    load_ans2label,
    load_video_qa,
)


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_msrvtt_and_tgif_shapes(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "qa.jsonl",
        [
            json.dumps(
                {
                    "video_id": "video7",
                    "question": "what is it?",
                    "answer": "dog",
                    "answer_type": "what",
                }
            ),
            "",
            json.dumps({"gif_name": "tumblr_x", "question": "what color?", "answer": "red"}),
        ],
    )
    first, second = load_video_qa(path)
    assert (first.video_id, first.answer_type, first.question_id) == ("video7", "what", 0)
    assert (second.video_id, second.answer_type, second.question_id) == ("tumblr_x", None, 1)


def test_bom_is_tolerated(tmp_path: Path) -> None:
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"video_id": "v", "question": "q"}).encode())
    assert load_video_qa(path)[0].answer is None


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", r"bad.jsonl:2: invalid JSON"),
        ('{"question": "q"}', r"bad.jsonl:2: missing the video id"),
        ('{"video_id": "v"}', r"bad.jsonl:2: missing field 'question'"),
        ('{"video_id": ["v"], "question": "q"}', r"bad.jsonl:2: field 'video_id' must be"),
        ("[1, 2]", r"bad.jsonl:2: expected a JSON object"),
    ],
)
def test_errors_name_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    good = json.dumps({"video_id": "v", "question": "q", "answer": "a"})
    path = write_lines(tmp_path / "bad.jsonl", [good, line])
    with pytest.raises(AnnotationError, match=message):
        load_video_qa(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        load_video_qa(tmp_path / "nope.jsonl")


def test_ans2label_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "ans2label.json"
    path.write_text(json.dumps({"yes": 1, "no": 0, "two": 2}))
    assert answers_by_label(load_ans2label(path)) == ["no", "yes", "two"]


@pytest.mark.parametrize("mapping", [{"a": 0, "b": 2}, {"a": 0, "b": 0}, {}])
def test_ans2label_gaps_and_duplicates(tmp_path: Path, mapping: dict) -> None:
    path = tmp_path / "ans2label.json"
    path.write_text(json.dumps(mapping))
    with pytest.raises(AnnotationError, match="ans2label.json"):
        load_ans2label(path)
