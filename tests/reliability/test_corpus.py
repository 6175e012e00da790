"""Every case of the hostile input corpus (corpus.py) through the real component it targets."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from torch.utils.data import Dataset

from clipbert.cli.errors import one_line
from clipbert.data import annotations
from clipbert.data.datasets import ReplaceBroken
from clipbert.data.decoding import build_decoder
from clipbert.data.frame_sampling import FrameSampling
from clipbert.data.readers import ImageReader, VideoClipReader, read_or_mark
from clipbert.data.store_access import open_store
from clipbert.data.stores import LmdbStore, LmdbWriter
from clipbert.predictor import Predictor
from tests.helpers import compose_config, tiny_demo_overrides
from tests.reliability import media
from tests.reliability.corpus import (
    ANS2LABEL,
    CASES,
    CONFIG,
    IMAGE,
    SINGLE,
    STORE,
    VIDEO,
    Case,
)

SAMPLING = FrameSampling(n_clips=1, num_frames=2, fps=1.0, strategy="fixed")


def test_the_corpus_covers_every_category() -> None:
    assert len(CASES) >= 40
    assert len({case.name for case in CASES}) == len(CASES)
    entries = {case.entry for case in CASES}
    assert entries >= {ANS2LABEL, CONFIG, IMAGE, SINGLE, STORE, VIDEO, "load_video_qa"}
    assert {case.outcome for case in CASES} == {"error", "broken", "ok"}


def _run(case: Case, tmp_path: Path) -> object:
    """Feed the case to its entry point; return what it gave."""
    if case.entry.startswith("load_") or case.entry == ANS2LABEL:
        path = tmp_path / ("ans2label.json" if case.entry == ANS2LABEL else "bad.jsonl")
        if (data := case.make()) is not None:
            path.write_bytes(data)
        reader = annotations.load_ans2label if case.entry == ANS2LABEL else None
        return (reader or getattr(annotations, case.entry))(path)
    if case.entry in (VIDEO, IMAGE):
        return _read_stored(case, tmp_path)
    if case.entry == STORE:
        return _open_store(case.make(), tmp_path / "case_store")
    if case.entry == CONFIG:
        cfg = compose_config("train", [*tiny_demo_overrides(tmp_path), *case.make()])
        return instantiate(cfg.task.datamodule)
    path = tmp_path / "case.mp4"
    if (data := case.make()) is not None:
        path.write_bytes(data)
    predictor = Predictor(torch.nn.Identity(), None, SAMPLING, decode_timeout=20.0)
    return predictor.frames(path)


def _open_store(content: object, path: Path) -> bytes:
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, dict):
        path.mkdir()
        for name, data in content.items():
            (path / name).write_bytes(data)
    return open_store(path).get("any")


class _Items(Dataset):
    """Items read straight from a reader, as the task datasets do."""

    def __init__(self, read, keys: list[str]) -> None:
        self.read, self.keys = read, keys

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, index: int) -> dict:
        return {"frames": self.read(self.keys[index]), "key": self.keys[index]}


def _read_stored(case: Case, tmp_path: Path) -> object:
    """Store the case under key 'case' beside a good entry; read it as evaluation and training
    do. A broken case returns the evaluation reason; an ok one the decoded frames."""
    data = case.make()
    good = media.video() if case.entry == VIDEO else media.image()
    with LmdbWriter(tmp_path / "case_store") as writer:
        writer.put("good", good)
        if data is not None:
            writer.put("case", data)
    store = LmdbStore(tmp_path / "case_store")
    if case.entry == VIDEO:
        read = VideoClipReader(store, build_decoder("auto", "pyav", 20.0), SAMPLING)
    else:
        read = ImageReader(store)
    frames, reason, _ = read_or_mark(read, "case")
    if reason is None:
        return frames
    assert frames.abs().sum() == 0  # black placeholder frames stand in for it
    item = ReplaceBroken(_Items(read, ["case", "good"]))[0, 0]
    assert item["key"] == "good" and item["replaced"] >= 1  # training: replaced, counted
    return reason


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_case(case: Case, tmp_path: Path) -> None:
    if case.outcome == "error":
        with pytest.raises(case.error) as caught:
            _run(case, tmp_path)
        message = one_line(caught.value)  # what the command line shows
        assert re.search(case.match, message), message
        assert "Traceback" not in message
        return
    result = _run(case, tmp_path)
    if case.outcome == "broken":
        assert isinstance(result, str) and re.search(case.match, result), result
    elif isinstance(result, torch.Tensor):
        assert result.dtype in (torch.uint8, torch.float32)
        assert tuple(result.shape[-len(case.shape) :]) == case.shape or case.entry == SINGLE
        if case.entry == SINGLE:  # the decoded clips, uint8 at the file's size: the model resizes
            assert result.dim() == 6 and result.shape[-3] == 3 and result.dtype == torch.uint8
    else:
        assert len(result) == case.shape[0]
