"""Public caption releases -> the original ClipBERT's caption jsonl.

- ``didemo_paragraphs``: DiDeMo's ``{train,val,test}_data.json`` (LocalizingMoments), a JSON
  list of moments ``{"video": "<file name with extension>", "description", "times", ...}``.
  One row per video, its descriptions joined in file order (the paragraph-to-video task).
- ``anet_paragraphs``: ActivityNet Captions' ``train.json`` / ``val_1.json`` / ``val_2.json``,
  ``{"v_<id>": {"duration", "timestamps", "sentences"}}``. One row per video, its sentences
  joined in order.
- ``coco_captions``: COCO's ``captions_{train,val}2014.json`` (``annotations`` with
  ``image_id`` and ``caption``): the pre-training rows ``{coco_id, caption}``.
- ``vg_captions``: Visual Genome's ``region_descriptions.json`` (images with ``regions`` of
  ``image_id`` and ``phrase``): the pre-training rows ``{vg_id, caption}``, empty phrases left
  out.
- ``webvid_captions``: a WebVid-style CSV (``results_2M_train.csv``: a header with
  ``videoid`` and ``name``, the caption): video pre-training rows ``{video_id, caption}``.
- ``cc3m_captions``: a Conceptual Captions-style TSV (``Train_GCC-training.tsv``: caption, tab,
  image URL; no header, or ``caption`` / ``url``): image pre-training rows ``{image_id,
  caption}``, ``image_id`` being ``image_key`` formatted with the row's 0-based index
  (img2dataset names its files ``{image_id:09d}``).

Video ids become store keys as ``preprocess.py`` makes them: the file stem.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from clipbert.data.release_json import (
    ConversionError,
    load_json,
    open_csv,
    require,
    visual_genome_items,
)


def _paragraph(sentences: list[str]) -> str:
    """Sentences as one text with single spaces (ActivityNet's carry leading spaces)."""
    return " ".join(" ".join(sentence.split()) for sentence in sentences if sentence.strip())


def didemo_paragraphs(path: str | os.PathLike) -> list[dict]:
    """DiDeMo paragraph rows ``{clip_name, caption}``, one per video, videos in file order."""
    moments = load_json(path)
    if not isinstance(moments, list):
        raise ConversionError(f"{path}: expected DiDeMo's JSON list of moments")
    by_video: dict[str, list[str]] = {}
    for index, moment in enumerate(moments):
        require(moment, ("video", "description"), f"{path}: moment {index}")
        by_video.setdefault(Path(moment["video"]).stem, []).append(moment["description"])
    return [{"clip_name": v, "caption": _paragraph(texts)} for v, texts in by_video.items()]


def anet_paragraphs(path: str | os.PathLike) -> list[dict]:
    """ActivityNet Captions paragraph rows ``{clip_name, caption}``; the ids keep their ``v_``
    prefix, as the videos' file names do."""
    videos = load_json(path)
    if not isinstance(videos, dict):
        raise ConversionError(f"{path}: expected ActivityNet Captions' {{video id: ...}} object")
    rows = []
    for video_id, record in videos.items():
        require(record, ("sentences",), f"{path}: video {video_id}")
        rows.append({"clip_name": video_id, "caption": _paragraph(record["sentences"])})
    return rows


def coco_captions(path: str | os.PathLike) -> list[dict]:
    """COCO caption rows ``{coco_id, caption}`` (the image's store key is ``str(coco_id)``)."""
    data = load_json(path)
    if not isinstance(data, dict) or "annotations" not in data:
        raise ConversionError(f"{path}: expected a COCO captions file ('annotations')")
    rows = []
    for index, annotation in enumerate(data["annotations"]):
        require(annotation, ("image_id", "caption"), f"{path}: annotation {index}")
        rows.append({"coco_id": annotation["image_id"], "caption": annotation["caption"].strip()})
    return rows


def vg_captions(path: str | os.PathLike) -> list[dict]:
    """Visual Genome region caption rows ``{vg_id, caption}``; empty phrases are left out."""
    rows = []
    for image, region, _ in visual_genome_items(path, "regions", "region_descriptions.json"):
        phrase = " ".join(str(region.get("phrase", "")).split())
        if phrase:
            rows.append({"vg_id": region.get("image_id", image.get("id")), "caption": phrase})
    return rows


def webvid_captions(path: str | os.PathLike) -> list[dict]:
    """WebVid rows ``{video_id, caption}`` (the video's store key is its ``videoid``, the stem
    of the downloaded ``<videoid>.mp4``); rows without a caption are left out."""
    with open_csv(path) as handle:
        reader = csv.DictReader(handle)
        missing = [k for k in ("videoid", "name") if k not in (reader.fieldnames or [])]
        if missing:
            raise ConversionError(
                f"{path}: the header lacks {', '.join(missing)}; expected WebVid's CSV "
                "(videoid, name, ...)"
            )
        rows = []
        for record in reader:
            caption = " ".join((record["name"] or "").split())
            if caption:
                rows.append({"video_id": record["videoid"].strip(), "caption": caption})
    return rows


def cc3m_captions(path: str | os.PathLike, image_key: str = "{image_id}") -> list[dict]:
    """Conceptual Captions rows ``{image_id, caption}``, the id formatted from the row index."""
    rows = []
    with open_csv(path) as handle:
        records = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        first_row = 1
        for line_number, record in enumerate(records, start=1):
            if line_number == 1 and [field.lower() for field in record] == ["caption", "url"]:
                first_row = 2  # a header, as img2dataset's input files have
                continue
            if len(record) != 2:
                raise ConversionError(
                    f"{path}:{line_number}: expected caption<TAB>url, got {len(record)} fields"
                )
            caption = " ".join(record[0].split())
            if caption:
                image_id = image_key.format(image_id=line_number - first_row)
                rows.append({"image_id": image_id, "caption": caption})
    return rows
