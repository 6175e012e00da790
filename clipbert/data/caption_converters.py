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

Video ids become store keys as ``preprocess.py`` makes them: the file stem.
"""

from __future__ import annotations

import os
from pathlib import Path

from clipbert.data.release_json import (
    ConversionError,
    load_json,
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
