"""Reading public annotation releases: their JSON and CSV files, with errors that name them.
Shared by the converters (``release_converters``, ``caption_converters``)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TextIO


class ConversionError(ValueError):
    """An annotation file is not in the shape its converter expects."""


def load_json(path: str | os.PathLike) -> object:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise FileNotFoundError(f"annotation file not found: {path}") from None
    except json.JSONDecodeError as err:
        raise ConversionError(f"{path}: not valid JSON ({err.msg}, line {err.lineno})") from None


def open_csv(path: str | os.PathLike) -> TextIO:
    if not Path(path).is_file():
        raise FileNotFoundError(f"annotation file not found: {path}")
    return Path(path).open(newline="", encoding="utf-8-sig")


def require(record: object, keys: Sequence[str], where: str) -> None:
    """``record`` must be an object holding ``keys``; the error names where it is."""
    if not isinstance(record, dict):
        raise ConversionError(f"{where}: expected an object, got {type(record).__name__}")
    missing = [k for k in keys if k not in record]
    if missing:
        raise ConversionError(f"{where}: missing {', '.join(missing)}")


def visual_genome_items(
    path: str | os.PathLike, items: str, release: str
) -> Iterator[tuple[dict, dict, str]]:
    """(image, item, where) for every item (``qas``, ``regions``) of every image of a Visual
    Genome file: a JSON list of images, each with a list of items."""
    images = load_json(path)
    if not isinstance(images, list):
        raise ConversionError(f"{path}: expected {release}'s list of images")
    for index, image in enumerate(images):
        where = f"{path}: image {index}"
        require(image, (items,), where)
        for item in image[items]:
            yield image, item, where
