"""Public annotation releases -> the original ClipBERT's jsonl, and answer vocabularies.

Each converter reads the files as their authors publish them and returns rows in the shape the
datamodules (and the original's loaders) read; ``write_jsonl`` saves them.

- ``msrvtt_qa``: ``{train,val,test}_qa.json`` of MSRVTT-QA (Xu et al. 2017), a JSON list of
  ``{"question", "answer", "video_id": int, "id", "category_id"}``.
- ``tgif_qa``: ``{Train,Test}_{action,transition,frameqa}_question.csv`` of TGIF-QA (Jang et
  al. 2017), tab-separated with a header: ``gif_name, question, [a1..a5], answer, [type],
  vid_id, ...``.
- ``msrvtt_retrieval``: ``MSRVTT_data.json`` (``videos`` with their ``split``, ``sentences``
  with ``video_id`` and ``caption``) or the 1k-A test list ``MSRVTT_JSFUSION_test.csv``
  (``video_id``, ``sentence``).
- ``vqa``: VQA v2 ``v2_OpenEnded_mscoco_*_questions.json`` with, for train/val, the matching
  ``v2_mscoco_*_annotations.json``; soft scores 0.3 per annotator who gave an answer, at most 1.
- ``vg_qa``: Visual Genome's ``question_answers.json``, in the VQA shape.
- ``msrvtt_mc``: JSFusion's MSRVTT multiple-choice test ``MSR_MC_test.csv``.
- the caption releases of :mod:`clipbert.data.caption_converters`: DiDeMo and ActivityNet
  paragraphs, COCO and Visual Genome pre-training captions.
"""

from __future__ import annotations

import csv
import json
import os
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from clipbert.atomic_files import write_text_atomic
from clipbert.data import caption_converters
from clipbert.data.annotations import iter_jsonl
from clipbert.data.release_json import (
    ConversionError,
    load_json,
    open_csv,
    require,
    visual_genome_items,
)

MSRVTT_QA_TYPES = ("what", "who", "how", "where", "when")  # category_id 0..4
FRAMEQA_TYPES = ("object", "number", "color", "location")  # TGIF FrameQA type 0..3
TGIF_TASKS = ("action", "transition", "frameqa")
MSRVTT_SPLITS = {"train": "train", "val": "validate", "test": "test"}


def msrvtt_qa(path: str | os.PathLike) -> list[dict]:
    """MSRVTT-QA rows: ``video_id`` as the store key ``video{N}``; ``answer_type`` from
    ``category_id``, or from the question's first word when a release lacks it."""
    records = load_json(path)
    if not isinstance(records, list):
        raise ConversionError(f"{path}: expected a JSON list of questions")
    rows = []
    for index, record in enumerate(records):
        where = f"{path}: question {index}"
        require(record, ("question", "answer", "video_id"), where)
        if "category_id" in record:
            answer_type = MSRVTT_QA_TYPES[int(record["category_id"])]
        else:
            first = record["question"].split(maxsplit=1)[0].lower() if record["question"] else ""
            answer_type = first if first in MSRVTT_QA_TYPES else "other"
        rows.append(
            {
                "video_id": f"video{record['video_id']}",
                "question": record["question"],
                "answer": record["answer"],
                "answer_type": answer_type,
                "question_id": record.get("id", index),
            }
        )
    return rows


def tgif_qa(path: str | os.PathLike, task: str) -> list[dict]:
    """TGIF-QA rows: Action / Transition with 5 ``options`` and the ``answer`` index;
    FrameQA with the answer string and its ``answer_type``."""
    if task not in TGIF_TASKS:
        raise ValueError(f"task must be one of {', '.join(TGIF_TASKS)}, got {task!r}")
    with open_csv(path) as handle:
        reader = csv.DictReader(handle, delimiter="\t")
        options = [f"a{i}" for i in range(1, 6)]
        needed = ("gif_name", "question", "answer", *(options if task != "frameqa" else ("type",)))
        missing = [k for k in needed if k not in (reader.fieldnames or [])]
        if missing:
            raise ConversionError(
                f"{path}: the header lacks {', '.join(missing)}; is this a TGIF-QA {task} file?"
            )
        rows = []
        for line_number, record in enumerate(reader, start=2):
            row = {"gif_name": record["gif_name"], "question": record["question"]}
            if task == "frameqa":
                row |= {
                    "answer": record["answer"],
                    "answer_type": FRAMEQA_TYPES[int(record["type"])],
                }
            else:
                answer = int(record["answer"])
                if not 0 <= answer < 5:
                    raise ConversionError(f"{path}:{line_number}: answer {answer} is not 0-4")
                row |= {"options": [record[o] for o in options], "answer": answer}
            rows.append({**row, "question_id": line_number - 2})
    return rows


def msrvtt_retrieval(path: str | os.PathLike, split: str = "train") -> list[dict]:
    """MSRVTT caption rows ``{clip_name, caption}`` of one split of ``MSRVTT_data.json``, or
    of the 1k-A test csv (whose rows are the split; ``split`` is then ignored)."""
    if str(path).endswith(".csv"):
        with open_csv(path) as handle:
            reader = csv.DictReader(handle)
            if not {"video_id", "sentence"} <= set(reader.fieldnames or []):
                raise ConversionError(f"{path}: expected the columns video_id and sentence")
            return [{"clip_name": r["video_id"], "caption": r["sentence"]} for r in reader]
    if split not in MSRVTT_SPLITS:
        raise ValueError(f"split must be one of {', '.join(MSRVTT_SPLITS)}, got {split!r}")
    data = load_json(path)
    if not isinstance(data, dict) or not {"videos", "sentences"} <= set(data):
        raise ConversionError(f"{path}: expected MSRVTT_data.json with videos and sentences")
    videos = {v["video_id"] for v in data["videos"] if v.get("split") == MSRVTT_SPLITS[split]}
    return [
        {"clip_name": s["video_id"], "caption": s["caption"]}
        for s in data["sentences"]
        if s["video_id"] in videos
    ]


def soft_score(count: int) -> float:
    """The VQA target of an answer given by ``count`` of the 10 annotators."""
    return min(1.0, round(0.3 * count, 1))


def normalize_answer(answer: str) -> str:
    return " ".join(answer.lower().strip().rstrip(".").split())


def vqa(
    questions_path: str | os.PathLike,
    annotations_path: str | os.PathLike | None = None,
    image_key: str = "{image_id}",
) -> list[dict]:
    """VQA v2 rows ``{question, question_id, image_id, labels, answer_type}``; without
    annotations (the test sets) no ``labels``. ``image_key`` formats the store key, e.g.
    ``COCO_train2014_{image_id:012d}`` for a store built from COCO's file names."""
    questions = load_json(questions_path)
    if not isinstance(questions, dict) or "questions" not in questions:
        raise ConversionError(f"{questions_path}: expected a VQA questions file ('questions')")
    answers: dict[int, dict] = {}
    if annotations_path is not None:
        annotations = load_json(annotations_path)
        if not isinstance(annotations, dict) or "annotations" not in annotations:
            raise ConversionError(f"{annotations_path}: expected a VQA annotations file")
        answers = {a["question_id"]: a for a in annotations["annotations"]}
    rows = []
    for record in questions["questions"]:
        require(record, ("question", "question_id", "image_id"), str(questions_path))
        row = {
            "question": record["question"],
            "question_id": record["question_id"],
            "image_id": image_key.format(image_id=record["image_id"]),
        }
        if annotations_path is not None:
            annotation = answers.get(record["question_id"])
            if annotation is None:
                raise ConversionError(
                    f"{annotations_path}: no annotation for question {record['question_id']}"
                )
            counts = Counter(normalize_answer(a["answer"]) for a in annotation["answers"])
            row["labels"] = {answer: soft_score(n) for answer, n in counts.items()}
            row["answer_type"] = annotation.get("answer_type")
        rows.append(row)
    return rows


def vg_qa(path: str | os.PathLike, image_key: str = "{image_id}") -> list[dict]:
    """Visual Genome QA rows in the VQA shape (the original's ``vg_k_trainval.jsonl``) from
    ``question_answers.json`` (images with ``qas`` of ``qa_id``, ``image_id``, ``question``,
    ``answer``): one gold answer each, normalized as VQA's, scored 1."""
    rows = []
    for image, qa, where in visual_genome_items(path, "qas", "question_answers.json"):
        require(qa, ("qa_id", "question", "answer"), where)
        rows.append(
            {
                "question": qa["question"],
                "question_id": qa["qa_id"],
                "image_id": image_key.format(image_id=qa.get("image_id", image.get("id"))),
                "labels": {normalize_answer(qa["answer"]): 1.0},
            }
        )
    return rows


def msrvtt_mc(path: str | os.PathLike) -> list[dict]:
    """The MSRVTT multiple-choice test (JSFusion's ``MSR_MC_test.csv``: tab-separated ``key``,
    ``vid_key`` ``msr<N>``, five candidate captions ``a1``..``a5``, the 0-based ``answer``) as
    the original's ``msrvtt_retrieval_mc_test.jsonl``: ``{qid, clip_name, options, answer}``."""
    options = [f"a{i}" for i in range(1, 6)]
    with open_csv(path) as handle:
        reader = csv.DictReader(handle, delimiter="\t")
        missing = [k for k in ("vid_key", "answer", *options) if k not in (reader.fieldnames or [])]
        if missing:
            raise ConversionError(
                f"{path}: the header lacks {', '.join(missing)}; is this MSR_MC_test.csv?"
            )
        rows = []
        for line_number, record in enumerate(reader, start=2):
            answer = int(record["answer"])
            if not 0 <= answer < 5:
                raise ConversionError(f"{path}:{line_number}: answer {answer} is not 0-4")
            video = record["vid_key"]
            rows.append(
                {
                    "qid": record.get("key") or line_number - 2,
                    "clip_name": "video" + video.removeprefix("msr"),
                    "options": [record[o] for o in options],
                    "answer": answer,
                }
            )
    return rows


def build_ans2label(files: Iterable[str | os.PathLike], top_k: int) -> dict[str, int]:
    """``ans2label`` of the ``top_k`` most frequent answers of jsonl files (ties by first
    appearance); VQA rows count every answer in their ``labels``."""
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    counts: Counter[str] = Counter()
    for path in files:
        for _, record in iter_jsonl(path):
            if "labels" in record:
                counts.update(record["labels"])
            elif isinstance(record.get("answer"), str):
                counts[record["answer"]] += 1
    return {answer: label for label, (answer, _) in enumerate(counts.most_common(top_k))}


CAPTION_SOURCES = {
    "didemo_paragraphs": caption_converters.didemo_paragraphs,
    "anet_paragraphs": caption_converters.anet_paragraphs,
    "coco_captions": caption_converters.coco_captions,
    "vg_captions": caption_converters.vg_captions,
    "webvid_captions": caption_converters.webvid_captions,
    "msrvtt_mc": msrvtt_mc,
}
SOURCES = (
    "msrvtt_qa",
    "tgif_action",
    "tgif_transition",
    "tgif_frameqa",
    "msrvtt_retrieval",
    "vqa",
    "vg_qa",
    "cc3m_captions",
    *CAPTION_SOURCES,
)


def convert(
    source: str,
    src: str | os.PathLike,
    *,
    split: str = "train",
    answers: str | os.PathLike | None = None,
    image_key: str = "{image_id}",
) -> list[dict]:
    """Rows of one release file; ``source`` names its format (``SOURCES``)."""
    if source == "msrvtt_qa":
        return msrvtt_qa(src)
    if source.startswith("tgif_") and source.removeprefix("tgif_") in TGIF_TASKS:
        return tgif_qa(src, source.removeprefix("tgif_"))
    if source == "msrvtt_retrieval":
        return msrvtt_retrieval(src, split)
    if source == "vqa":
        return vqa(src, answers, image_key)
    if source == "vg_qa":
        return vg_qa(src, image_key)
    if source == "cc3m_captions":
        return caption_converters.cc3m_captions(src, image_key)
    if source in CAPTION_SOURCES:
        return CAPTION_SOURCES[source](src)
    raise ValueError(f"source must be one of {', '.join(SOURCES)}, got {source!r}")


def write_jsonl(rows: Iterable[dict], path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_text_atomic(path, "".join(json.dumps(row) + "\n" for row in rows))
