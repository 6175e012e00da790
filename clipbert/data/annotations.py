"""Readers for the original's text databases: jsonl annotation files and ``ans2label.json``.

Errors name the file and line so a user can fix a broken annotation without reading our code.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


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

    def texts(self) -> list[str]:
        """The texts the model reads for this question: the question itself."""
        return [self.question]

    @property
    def store_key(self) -> str:
        """The key of the question's video in the visual store."""
        return self.video_id


def option_texts(question: str, options: Sequence[str]) -> list[str]:
    """The text rows of a multiple-choice question, one per option: ``question + " " + option``
    as the original scores them, or the option alone without a question."""
    if not question:
        return list(options)
    return [f"{question} {option}" for option in options]


@dataclass(frozen=True)
class VideoMCExample:
    """One multiple-choice question about one video (TGIF Action / Transition shape).

    Each option is scored as the single text ``question + " " + option``, as the original does;
    without a question (the MSRVTT multiple-choice test) each option is a caption on its own.
    """

    question_id: int | str
    video_id: str
    question: str
    options: tuple[str, ...]
    answer: int | None  # index into options; None on a test split without labels
    answer_type: str | None = None

    def texts(self) -> list[str]:
        """One text per option."""
        return option_texts(self.question, self.options)

    @property
    def store_key(self) -> str:
        """The key of the question's video in the visual store."""
        return self.video_id


@dataclass(frozen=True)
class CaptionExample:
    """One caption (or paragraph) of one video: MSRVTT / DiDeMo / ActivityNet retrieval."""

    caption_id: int | str
    video_id: str
    caption: str

    @property
    def store_key(self) -> str:
        """The key of the caption's video in the visual store."""
        return self.video_id


@dataclass(frozen=True)
class ImageQAExample:
    """One question about one image (VQA 2.0 shape): answers with soft scores."""

    question_id: int | str
    image_id: str
    question: str
    answer_scores: dict[str, float] | None  # answer -> soft score; None on a test split
    answer_type: str | None = None

    def texts(self) -> list[str]:
        """The texts the model reads for this question: the question itself."""
        return [self.question]

    @property
    def store_key(self) -> str:
        """The key of the question's image in the visual store."""
        return self.image_id

    @property
    def answer(self) -> str | None:
        """The highest-scoring gold answer (for readable outputs); None on a split without
        labels, "" for ``labels: {}`` (annotated, but no answer earns credit: any prediction
        scores 0)."""
        if self.answer_scores is None:
            return None
        if not self.answer_scores:
            return ""
        return max(self.answer_scores, key=self.answer_scores.__getitem__)


VIDEO_ID_FIELDS = ("video_id", "gif_name", "clip_name")
BOM = b"\xef\xbb\xbf"


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict]]:
    """Yield ``(line_number, object)`` for every non-empty line; a BOM is tolerated.

    Lines are decoded one by one, so bytes that are not UTF-8 are reported with their line.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"annotation file not found: {path}; check txt_db and the split's file name"
        )
    with path.open("rb") as handle:
        for line_number, raw in enumerate(handle, start=1):
            line = _decode_line(raw[3:] if line_number == 1 and raw[:3] == BOM else raw)
            where = f"{path}:{line_number}"
            if line is None:
                raise AnnotationError(f"{where}: not UTF-8 text; save the file as UTF-8")
            if not line.strip():
                continue
            yield line_number, _json_object(line, where)


def _decode_line(raw: bytes) -> str | None:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _json_object(line: str, where: str) -> dict:
    """One line as a JSON object; anything else is an error naming ``where``."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        raise AnnotationError(
            f"{where}: invalid JSON ({err.msg}); fix or remove the line"
        ) from None
    except RecursionError:
        raise AnnotationError(f"{where}: JSON nested too deeply; fix or remove the line") from None
    if not isinstance(record, dict):
        raise AnnotationError(f"{where}: expected a JSON object per line")
    return record


def _text_field(record: dict, key: str, where: str, required: bool = True) -> str | None:
    value = record.get(key)
    if value is None:
        if required:
            raise AnnotationError(f"{where}: missing field '{key}'")
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        kind = type(value).__name__
        raise AnnotationError(f"{where}: field '{key}' must be a string, got {kind}")
    return str(value)


def _video_id(record: dict, where: str) -> str:
    """The video id from ``video_id`` (MSRVTT), ``gif_name`` (TGIF) or ``clip_name``."""
    for key in VIDEO_ID_FIELDS:
        if key in record:
            return _text_field(record, key, where)
    raise AnnotationError(f"{where}: missing the video id (one of {', '.join(VIDEO_ID_FIELDS)})")


def _question_id(record: dict, index: int, where: str) -> int | str:
    """The file's ``question_id`` or ``qid``, else the running line index (the original's)."""
    value = record.get("question_id", record.get("qid", index))
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise AnnotationError(f"{where}: the question id must be a string or an integer")
    return value


def _read_examples(path: str | Path, parse: Callable[[dict, int, str], T]) -> list[T]:
    """``parse(record, line index, "file:line")`` for every line; an empty file is an error."""
    examples = [
        parse(record, index, f"{path}:{line_number}")
        for index, (line_number, record) in enumerate(iter_jsonl(path))
    ]
    if not examples:
        raise AnnotationError(f"{path}: no examples (the file is empty)")
    return examples


def load_video_qa(path: str | Path) -> list[VideoQAExample]:
    """Read an open-ended video QA jsonl file (MSRVTT-QA, TGIF FrameQA)."""

    def parse(record: dict, index: int, where: str) -> VideoQAExample:
        return VideoQAExample(
            question_id=_question_id(record, index, where),
            video_id=_video_id(record, where),
            question=_text_field(record, "question", where),
            answer=_text_field(record, "answer", where, required=False),
            answer_type=_text_field(record, "answer_type", where, required=False),
        )

    return _read_examples(path, parse)


def load_video_mc(path: str | Path, num_options: int = 5) -> list[VideoMCExample]:
    """Read a multiple-choice video QA jsonl file (TGIF Action / Transition).

    ``options`` must hold exactly ``num_options`` strings and ``answer`` (when present) an
    index into them.
    """

    def parse(record: dict, index: int, where: str) -> VideoMCExample:
        options = record.get("options")
        if (
            not isinstance(options, list)
            or len(options) != num_options
            or not all(isinstance(option, str) for option in options)
        ):
            raise AnnotationError(f"{where}: 'options' must be a list of {num_options} strings")
        answer = record.get("answer")
        if answer is not None and (
            isinstance(answer, bool) or not isinstance(answer, int) or not 0 <= answer < num_options
        ):
            raise AnnotationError(f"{where}: 'answer' must be an option index 0..{num_options - 1}")
        return VideoMCExample(
            question_id=_question_id(record, index, where),
            video_id=_video_id(record, where),
            question=_text_field(record, "question", where, required=False) or "",
            options=tuple(options),
            answer=answer,
            answer_type=_text_field(record, "answer_type", where, required=False),
        )

    return _read_examples(path, parse)


def load_captions(path: str | Path) -> list[CaptionExample]:
    """Read a retrieval jsonl file (``clip_name`` or ``video_id``, and ``caption``).

    The caption id is the file's ``id`` when present, else the running line index, as the
    original assigns it.
    """

    def parse(record: dict, index: int, where: str) -> CaptionExample:
        return CaptionExample(
            caption_id=record.get("id", index),
            video_id=_video_id(record, where),
            caption=_text_field(record, "caption", where),
        )

    return _read_examples(path, parse)


def load_keyed_captions(
    path: str | Path, id_key: str, text_key: str = "caption"
) -> list[CaptionExample]:
    """Read a caption jsonl whose visual id is field ``id_key``: the original's pre-training
    files (``coco_id`` / ``vg_id`` and ``caption``) and those ``convert.py`` makes of other
    releases. Numeric ids become the store's string keys (``str(coco_id)``)."""

    def parse(record: dict, index: int, where: str) -> CaptionExample:
        return CaptionExample(
            caption_id=record.get("id", index),
            video_id=_text_field(record, id_key, where),
            caption=_text_field(record, text_key, where),
        )

    return _read_examples(path, parse)


def load_image_qa(path: str | Path) -> list[ImageQAExample]:
    """Read an image QA jsonl file: ``image_id``, ``question``, ``question_id``, optional
    ``labels`` (answer -> soft score, e.g. 0.3/0.6/0.9/1.0) and ``answer_type``."""

    def parse(record: dict, index: int, where: str) -> ImageQAExample:
        if "image_id" not in record:
            raise AnnotationError(f"{where}: missing field 'image_id'")
        labels = record.get("labels")
        if labels is not None and (
            not isinstance(labels, dict) or not all(_is_score(v) for v in labels.values())
        ):
            raise AnnotationError(f"{where}: 'labels' must map answers to scores in [0, 1]")
        return ImageQAExample(
            question_id=_question_id(record, index, where),
            image_id=_text_field(record, "image_id", where),
            question=_text_field(record, "question", where),
            answer_scores=None if labels is None else {str(k): float(v) for k, v in labels.items()},
            answer_type=_text_field(record, "answer_type", where, required=False),
        )

    return _read_examples(path, parse)


def _is_score(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and 0 <= value <= 1


def load_ans2label(path: str | Path) -> dict[str, int]:
    """Read ``ans2label.json`` and check the labels are 0..n-1 without gaps or repeats.

    A repeated answer would silently keep only its last label, so it is an error too.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"answer vocabulary not found: {path}; build it with `python preprocess.py "
            "mode=vocab` or point task.datamodule.ans2label at it"
        )
    try:
        ans2label = json.loads(path.read_bytes().decode("utf-8-sig"), object_pairs_hook=_unique)
    except UnicodeDecodeError as err:
        raise AnnotationError(
            f"{path}: not UTF-8 text (byte {err.start}); save it as UTF-8"
        ) from None
    except json.JSONDecodeError as err:
        raise AnnotationError(f"{path}:{err.lineno}: invalid JSON ({err.msg})") from None
    except RecursionError:
        raise AnnotationError(f"{path}: JSON nested too deeply") from None
    except _RepeatedKey as err:
        raise AnnotationError(
            f"{path}: the answer {err.args[0]!r} appears twice; keep one label per answer"
        ) from None
    if not isinstance(ans2label, dict) or not ans2label:
        raise AnnotationError(f"{path}: expected a non-empty JSON object answer -> label")
    if not all(type(label) is int for label in ans2label.values()):
        raise AnnotationError(f"{path}: every label must be an integer")
    labels = sorted(ans2label.values())
    if labels != list(range(len(labels))):
        raise AnnotationError(
            f"{path}: labels must be the integers 0..{len(labels) - 1} without gaps or repeats; "
            "rebuild it with `python preprocess.py mode=vocab`"
        )
    return ans2label


class _RepeatedKey(Exception):
    """An object key seen twice while parsing (``json`` would keep the last silently)."""


def _unique(pairs: list[tuple[str, object]]) -> dict[str, object]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        raise _RepeatedKey(next(k for k, _ in pairs if k in seen or seen.add(k)))
    return result


def answers_by_label(ans2label: dict[str, int]) -> list[str]:
    """Invert ``ans2label`` into a list indexed by label (the original's ``label2ans``)."""
    vocab = [""] * len(ans2label)
    for answer, label in ans2label.items():
        vocab[label] = answer
    return vocab
