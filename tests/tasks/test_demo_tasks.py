"""Every demo task trains for an epoch and predicts from its checkpoint, with real parts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra.utils import instantiate
from omegaconf import open_dict

from clipbert.cli import CONFIG_DIR
from clipbert.cli.predict import predict
from clipbert.cli.train import train
from tests.helpers import compose_config

DEMO_TASKS = sorted(p.stem for p in (Path(CONFIG_DIR) / "task").glob("demo_*.yaml"))
QUESTIONS_PER_TEST_VIDEO = 4
TEST_VIDEOS = 8


@pytest.mark.parametrize("task", DEMO_TASKS)
def test_demo_task_trains_and_predicts(train_config, tmp_path: Path, task: str) -> None:
    cfg = train_config(f"task={task}", "test=false")
    metrics = train(cfg)
    assert 0.0 <= metrics["val/acc"] <= 1.0
    best = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"

    out = tmp_path / "predict"
    pcfg = compose_config("predict", [f"ckpt_path={best}", "split=test", "num_workers=0"])
    with open_dict(pcfg):
        pcfg.paths.output_dir = str(out)
    scores = predict(pcfg)
    records = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(records) == QUESTIONS_PER_TEST_VIDEO * TEST_VIDEOS
    hits = sum(r["prediction"] == r["gold"] for r in records)
    assert scores["acc"] == pytest.approx(hits / len(records))
    assert {r["answer_type"] for r in records} == {"color", "shape", "count", "motion"}


def test_multiple_choice_texts_are_question_then_option(train_config) -> None:
    cfg = train_config("task=demo_mc")
    datamodule = instantiate(cfg.task.datamodule)
    datamodule.prepare_data()
    datamodule.setup("test")
    batch = next(iter(datamodule.test_dataloader()))
    assert batch.texts_per_question == 5
    assert batch.input_ids.shape[0] == 5 * len(batch)
    assert all(len(options) == 5 for options in batch.options)
    first = datamodule.tokenizer.decode(batch.input_ids[0], skip_special_tokens=True)
    assert first == f"{batch.questions[0]} {batch.options[0][0]}"
