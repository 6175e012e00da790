"""Readers for the original's text databases: jsonl annotation files and ``ans2label.json``.

Errors name the file and line so a user can fix a broken annotation without reading our code.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


class AnnotationError(ValueError):
    """A malformed annotation file; the message names the file and line."""


@dataclass(frozen=True)
class VideoQAExample:
    """One open-ended question about one video (MSRVTT-QA / TGIF FrameQA shape)."""

    question_id: int | str
    video_id: str
    question: str
    answer: str | None
    answer_type: str | None


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict]]:
    """Yield ``(line_number, object)`` for every non-empty line; a BOM is tolerated."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"annotation file not found: {path}")
    with path.open(encoding="utf-8-sig") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise AnnotationError(f"{path}:{line_number}: invalid JSON ({err.msg})") from None
            if not isinstance(record, dict):
                raise AnnotationError(f"{path}:{line_number}: expected a JSON object per line")
            yield line_number, record


def _text_field(record: dict, key: str, where: str, required: bool = True) -> str | None:
    value = record.get(key)
    if value is None:
        if required:
            raise AnnotationError(f"{where}: missing field '{key}'")
        return None
    if not isinstance(value, str | int):
        kind = type(value).__name__
        raise AnnotationError(f"{where}: field '{key}' must be a string, got {kind}")
    return str(value)


def load_video_qa(path: str | Path) -> list[VideoQAExample]:
    """Read an open-ended video QA jsonl file.

    The video id comes from ``video_id`` (MSRVTT-QA) or ``gif_name`` (TGIF-QA). Without a
    ``question_id`` field the running line index is used, as the original does.
    """
    examples = []
    for index, (line_number, record) in enumerate(iter_jsonl(path)):
        where = f"{path}:{line_number}"
        video_key = "video_id" if "video_id" in record else "gif_name"
        if video_key not in record:
            raise AnnotationError(f"{where}: missing field 'video_id' (or 'gif_name')")
        question_id = record.get("question_id", index)
        examples.append(
            VideoQAExample(
                question_id=question_id,
                video_id=_text_field(record, video_key, where),
                question=_text_field(record, "question", where),
                answer=_text_field(record, "answer", where, required=False),
                answer_type=_text_field(record, "answer_type", where, required=False),
            )
        )
    if not examples:
        raise AnnotationError(f"{path}: no examples (the file is empty)")
    return examples


def load_ans2label(path: str | Path) -> dict[str, int]:
    """Read ``ans2label.json`` and check the labels are 0..n-1 without gaps or repeats."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"answer vocabulary not found: {path}")
    try:
        ans2label = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as err:
        raise AnnotationError(f"{path}:{err.lineno}: invalid JSON ({err.msg})") from None
    if not isinstance(ans2label, dict) or not ans2label:
        raise AnnotationError(f"{path}: expected a non-empty JSON object answer -> label")
    labels = sorted(ans2label.values())
    if labels != list(range(len(labels))):
        raise AnnotationError(
            f"{path}: labels must be the integers 0..{len(labels) - 1} without gaps or repeats"
        )
    return ans2label


def answer_vocabulary(ans2label: dict[str, int]) -> list[str]:
    """Invert ``ans2label`` into a list indexed by label (the original's ``label2ans``)."""
    vocab = [""] * len(ans2label)
    for answer, label in ans2label.items():
        vocab[label] = answer
    return vocab
