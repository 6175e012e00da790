"""The two workflows of the README this project started from, step by step as its users type
them, on small data in the original's storage layout: RICO screen QA (tall screenshots, image
QA) and TANGO video QA (real videos, an answer vocabulary file), each finetuned, then run on a
split picked by `txt_db`/`vis_db`, by step, with `ans2label`, 1 and 16 clips."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from clipbert.cli.predict import predict
from clipbert.cli.train import train
from clipbert.data.lmdb_builder import build_vis_db
from clipbert.demo.generate import DemoPaths
from clipbert.models.frame_input import resized_shape
from clipbert.runs.selection import available_steps
from tests.helpers import predict_config, run_script, train_run_config

ASSETS = Path(__file__).resolve().parents[1] / "assets"
COLORS = {"red": (220, 40, 40), "green": (40, 190, 60), "blue": (40, 70, 230)}
SCREEN = (90, 200)  # width x height: a phone screenshot's shape
VIDEOS = ("h264_176x144_29.97fps_lowbitrate.mp4", "mjpeg_160x120_10fps_3frames.avi")


def _jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


@pytest.fixture(scope="module")
def storage(tmp_path_factory, demo_root: Path) -> Path:
    """$PATH_TO_STORAGE: txt_db/, vis_db/ (built by our preprocessing), pretrained/."""
    root = tmp_path_factory.mktemp("storage")
    shutil.copytree(DemoPaths.under(demo_root).tokenizer_dir, root / "pretrained" / "tokenizer")

    screens = root / "raw" / "rico"
    screens.mkdir(parents=True)
    rows: dict[str, list[dict]] = {"train": [], "val": [], "test": []}
    for i in range(12):
        color = list(COLORS)[i % 3]
        image = Image.new("RGB", SCREEN, (245, 245, 245))
        ImageDraw.Draw(image).rectangle((10, 140, 80, 170), fill=COLORS[color])  # a button
        image.save(screens / f"screen_{i}.png")
        split = "train" if i < 8 else "val" if i < 10 else "test"
        for q, question in enumerate(("what color is the button?", "which color is shown?")):
            rows[split].append(
                {
                    "question_id": 10 * i + q,
                    "image_id": f"screen_{i}",
                    "question": question,
                    "labels": {color: 1.0},
                    "answer_type": "other",
                }
            )
    for split, split_rows in rows.items():
        _jsonl(root / "txt_db" / "rico" / f"vqa_k_{split}.jsonl", split_rows)
    ans2label = {color: label for label, color in enumerate(COLORS)}
    (root / "txt_db" / "rico" / "ans2label.json").write_text(json.dumps(ans2label))
    build_vis_db(screens, root / "vis_db" / "rico", file_type="image", progress=False)

    videos = root / "raw" / "tango"
    videos.mkdir(parents=True)
    for name in VIDEOS:
        shutil.copy(ASSETS / name, videos / name)
    questions = [
        {"video_id": Path(name).stem, "question": question, "answer": answer}
        for name, answer in zip(VIDEOS, ("cars", "shapes"), strict=True)
        for question in ("what is in the video?", "what do you see?")
    ]
    for split in ("train", "val", "test"):
        _jsonl(root / "txt_db" / "tango" / f"{split}.jsonl", questions)
    (root / "txt_db" / "tango" / "ans2label.json").write_text(
        json.dumps({"cars": 0, "shapes": 1, "people": 2})
    )
    build_vis_db(videos, root / "vis_db" / "tango", file_type="video", progress=False)
    return root


def _finetune(storage: Path, output_dir: Path, task: str, *overrides: str) -> Path:
    """`python train.py task=<task> hydra.run.dir=$OUTPUT_DIR`, with a tiny model from scratch."""
    cfg = train_run_config(
        output_dir,
        f"task={task}",
        f"paths.data_root={storage}",
        "model=tiny",
        "model.init_from=null",
        f"task.datamodule.tokenizer_dir={storage / 'pretrained' / 'tokenizer'}",
        "task.datamodule.image_size=64",
        "task.datamodule.batch_size=2",
        "task.datamodule.eval_batch_size=2",
        "task.datamodule.num_workers=0",
        "task.datamodule.pin_memory=false",
        "trainer.max_steps=4",
        "trainer.num_sanity_val_steps=0",
        "trainer.enable_progress_bar=false",
        "callbacks.progress_bar=null",
        "callbacks.model_steps.num_valid=2",
        "callbacks.model_steps.min_valid_steps=1",
        "test=false",
        *overrides,
    )
    train(cfg)
    return output_dir


def _records(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "predictions.jsonl").read_text().splitlines()]


def test_rico_screen_qa_step_by_step(storage: Path, tmp_path: Path) -> None:
    run = _finetune(storage, tmp_path / "rico", "rico_vqa")
    assert available_steps(run) == [2, 4]
    assert resized_shape(*reversed(SCREEN), 64) == (64, 28)  # tall: the height becomes 64

    # predict.py run_dir=$OUTPUT_DIR step=$STEP txt_db=$TXT_DB vis_db=$IMG_DB batch_size=64
    txt_db = storage / "txt_db" / "rico" / "vqa_k_test.jsonl"
    folder = run / "predict" / "rico-vqa_k_test_step2"
    metrics = predict(
        predict_config(
            folder,
            f"run_dir={run}",
            "step=2",
            f"txt_db={txt_db}",
            f"vis_db={storage / 'vis_db' / 'rico'}",
            "batch_size=64",
            "num_workers=0",
        )
    )
    records = _records(folder)
    assert [r["question_id"] for r in records] == [100, 101, 110, 111]
    assert 0.0 <= metrics["score"] <= 1.0
    submission = json.loads((folder / "results_all.json").read_text())
    assert {s["answer"] for s in submission} <= set(COLORS)  # the VQA submission format


@pytest.mark.parametrize("n_clips", [1, 16])
def test_tango_video_qa_step_by_step(storage: Path, tmp_path: Path, n_clips: int) -> None:
    run = _finetune(
        storage, tmp_path / "tango", "tango_qa", "task.datamodule.train_sampling.n_clips=2"
    )
    ans2label = storage / "txt_db" / "tango" / "ans2label.json"

    # predict.py run_dir=$OUTPUT_DIR step=$STEP split=test n_clips=$N ans2label=$ANS_TO_LABEL,
    # typed as a user does: the results land in the run folder
    result = run_script(
        "predict.py",
        f"run_dir={run}",
        "step=4",
        "split=test",
        f"n_clips={n_clips}",
        f"ans2label={ans2label}",
        "num_workers=0",
        cwd=tmp_path,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    folder = run / "predict" / f"test_step4_{n_clips}clips"
    records = _records(folder)
    assert len(records) == 4
    assert all(r["prediction"] in {"cars", "shapes", "people"} for r in records)
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["acc"] == pytest.approx(sum(r["prediction"] == r["gold"] for r in records) / 4)
    assert (folder / "scores.json").is_file() and (folder / "results_all.json").is_file()
