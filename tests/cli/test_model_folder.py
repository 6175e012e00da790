"""Model folders: `convert.py to=folder`, then Predictor.from_pretrained (local, or a Hub id
through a local Hub cache), `predict.py ckpt_path=<folder>`, and the errors of broken ones."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from clipbert import Predictor
from clipbert.cli.convert import convert
from clipbert.cli.predict import predict
from clipbert.runs.hub import model_folder_path
from clipbert.runs.model_folder import load_model_folder
from tests.helpers import compose_config, predict_config

ASSETS = Path(__file__).resolve().parents[1] / "assets"
VIDEOS = [
    ASSETS / "h264_176x144_29.97fps_lowbitrate.mp4",
    ASSETS / "mjpeg_160x120_10fps_3frames.avi",
    ASSETS / "photo_128x128_tiny.jpg",
]
QUESTIONS = ["what color are the shapes?", "how are they moving?", "how many shapes?"]
TEXT_SUFFIXES = {".json", ".md", ".txt"}
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _export(src: Path, dst: Path, *overrides: str) -> Path:
    return convert(compose_config("convert", [f"src={src}", f"dst={dst}", "to=folder", *overrides]))


def _same_answers(ours: list, theirs: list) -> None:
    for mine, other in zip(ours, theirs, strict=True):
        assert [a.answer for a in mine] == [a.answer for a in other]
        assert [a.prob for a in mine] == pytest.approx([a.prob for a in other], abs=1e-5)


@pytest.fixture(scope="module")
def qa_folder(demo_checkpoint, tmp_path_factory) -> tuple[Path, Path]:
    """The trained demo QA checkpoint and its model folder."""
    checkpoint = demo_checkpoint("demo_video_qa")
    return checkpoint, _export(checkpoint, tmp_path_factory.mktemp("export") / "demo_qa")


def test_a_folder_holds_no_pickle_and_answers_as_its_checkpoint(qa_folder) -> None:
    checkpoint, folder = qa_folder
    files = [path for path in folder.rglob("*") if path.is_file()]
    assert {path.relative_to(folder).as_posix() for path in files} >= {
        "model.safetensors",
        "config.json",
        "ans2label.json",
        "README.md",
        "tokenizer/tokenizer.json",
    }
    for path in files:  # safetensors, and text: nothing a loader could unpickle
        assert path.suffix in TEXT_SUFFIXES or path.name == "model.safetensors", path
        text = path.read_text(encoding="utf-8") if path.suffix in TEXT_SUFFIXES else None
        if path.suffix == ".json":
            json.loads(text)
    trained = torch.load(checkpoint, weights_only=True)["state_dict"]
    weights = load_file(folder / "model.safetensors")
    assert weights.keys() == trained.keys()
    assert all(torch.equal(weights[key], trained[key]) for key in trained)
    assert "answer_vocabulary" not in json.loads((folder / "config.json").read_text())["config"]

    card = (folder / "README.md").read_text()
    assert "demo_video_qa" in card and "val/acc" in card  # metrics.json of the run
    assert "Predictor.from_pretrained" in card and "predict.py ckpt_path=" in card
    assert "predictor.answer(" in card and "predictor.match(" not in card

    expected = Predictor.from_checkpoint(checkpoint).answer(VIDEOS, QUESTIONS)
    _same_answers(Predictor.from_pretrained(folder).answer(VIDEOS, QUESTIONS), expected)
    _same_answers(Predictor.from_checkpoint(folder).answer(VIDEOS, QUESTIONS), expected)


def test_tied_weights_survive_the_folder(demo_checkpoint, tmp_path: Path) -> None:
    """Retrieval with an MLM loss ties its decoder to the word embeddings: safetensors refuses
    shared tensors, so each key is written on its own and tied again when loaded."""
    checkpoint = demo_checkpoint("demo_retrieval")
    folder = _export(checkpoint, tmp_path / "retrieval")
    captions = ["two red circle moving horizontally"] * 2
    expected = Predictor.from_checkpoint(checkpoint).match(VIDEOS[:2], captions)
    assert Predictor.from_pretrained(folder).match(VIDEOS[:2], captions) == pytest.approx(
        expected, abs=1e-5
    )
    assert "predictor.match(" in (folder / "README.md").read_text()


def test_predict_script_reads_a_folder_like_the_checkpoint(
    qa_folder, demo_root: Path, tmp_path: Path
) -> None:
    checkpoint, folder = qa_folder
    common = (f"data_root={demo_root}", "split=test", "num_workers=0", "accelerator=cpu")
    metrics = predict(predict_config(tmp_path / "ckpt", f"ckpt_path={checkpoint}", *common))
    again = predict(predict_config(tmp_path / "folder", f"ckpt_path={folder}", *common))
    assert again == metrics and "acc" in metrics
    lines = [(tmp_path / name / "predictions.jsonl").read_text() for name in ("ckpt", "folder")]
    assert lines[0] == lines[1]


def test_an_existing_destination_is_replaced_only_when_asked(qa_folder, tmp_path: Path) -> None:
    checkpoint, folder = qa_folder
    dst = shutil.copytree(folder, tmp_path / "copy")
    with pytest.raises(FileExistsError, match="overwrite=true"):
        _export(checkpoint, dst)
    (dst / "stale.txt").write_text("from before")
    _export(checkpoint, dst, "overwrite=true")
    assert not (dst / "stale.txt").exists() and (dst / "model.safetensors").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no partial left

    someone_elses = tmp_path / "notes"
    someone_elses.mkdir()
    (someone_elses / "todo.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a clipbert model folder"):
        _export(checkpoint, someone_elses, "overwrite=true")
    assert (someone_elses / "todo.txt").read_text() == "keep me"


def test_a_broken_folder_names_what_is_wrong(qa_folder, tmp_path: Path) -> None:
    _, folder = qa_folder
    no_weights = shutil.copytree(folder, tmp_path / "no_weights")
    (no_weights / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"model\.safetensors is missing.*to=folder"):
        Predictor.from_pretrained(no_weights)
    with pytest.raises(FileNotFoundError, match="no such model folder"):
        Predictor.from_pretrained(tmp_path / "nowhere")

    newer = shutil.copytree(folder, tmp_path / "newer")
    record = json.loads((newer / "config.json").read_text())
    record["clipbert_model_folder"] = 99
    (newer / "config.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match="format version 99"):
        load_model_folder(newer)

    hostile = shutil.copytree(folder, tmp_path / "hostile")
    record = json.loads((hostile / "config.json").read_text())
    record["config"]["model"]["_target_"] = "os.system"
    (hostile / "config.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match=r"config\.json names 'os\.system'"):
        Predictor.from_pretrained(hostile)


def _hub_cache(folder: Path, cache: Path, repo_id: str) -> None:
    """``folder`` laid out as the Hub cache holds a downloaded snapshot of ``repo_id``."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    shutil.copytree(folder, repo / "snapshots" / COMMIT)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)


def test_a_hub_id_loads_from_the_hub_cache(qa_folder, tmp_path: Path) -> None:
    checkpoint, folder = qa_folder
    cache = tmp_path / "hub"
    _hub_cache(folder, cache, "clipbert-tests/demo-qa")
    predictor = Predictor.from_pretrained(
        "clipbert-tests/demo-qa", cache_dir=cache, local_files_only=True
    )
    expected = Predictor.from_checkpoint(checkpoint).answer(VIDEOS, QUESTIONS)
    _same_answers(predictor.answer(VIDEOS, QUESTIONS), expected)
    with pytest.raises(FileNotFoundError, match="Hugging Face Hub did not give it"):
        Predictor.from_pretrained("clipbert-tests/absent", cache_dir=cache, local_files_only=True)


def test_the_hub_environment_variables_are_honoured(qa_folder, tmp_path: Path) -> None:
    """HF_HUB_CACHE and HF_HUB_OFFLINE=1, read when huggingface_hub is imported: in a new
    process, as a user sets them."""
    _, folder = qa_folder
    cache = tmp_path / "hub"
    _hub_cache(folder, cache, "clipbert-tests/demo-qa")
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    code = (
        "from clipbert.runs.hub import model_folder_path; "
        "print(model_folder_path('clipbert-tests/demo-qa'))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert Path(result.stdout.strip()) == (
        cache / "models--clipbert-tests--demo-qa" / "snapshots" / COMMIT
    )
    assert model_folder_path(folder) == folder  # a local folder is never looked up
