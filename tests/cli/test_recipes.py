"""Every task and experiment config composes and runs one batch (fast_dev_run) on data laid out
as the original's storage, made from the tiny demo: the recipes' wiring, not their numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import pytorch_lightning as pl
from hydra.utils import instantiate

from clipbert.cli.predict import predict
from clipbert.cli.train import train
from clipbert.runs.build import build_task
from clipbert.runs.configs import CONFIG_DIR
from tests.helpers import original_layout_config, predict_config

TASKS = sorted(p.stem for p in (Path(CONFIG_DIR) / "task").glob("*.yaml"))
EXPERIMENTS = sorted(p.stem for p in (Path(CONFIG_DIR) / "experiment").glob("*.yaml"))
INFERENCE_ONLY = {"msrvtt_mc"}  # scored with a retrieval model; no training split


@pytest.mark.parametrize("task", TASKS)
def test_every_task_recipe_runs_a_batch(original_layout: Path, tmp_path: Path, task: str) -> None:
    cfg = original_layout_config(original_layout, tmp_path, f"task={task}")
    if task in INFERENCE_ONLY:
        datamodule, module = build_task(cfg)
        trainer = pl.Trainer(accelerator="cpu", fast_dev_run=True, logger=False)
        (results,) = trainer.test(module, datamodule=datamodule)
        assert 0.0 <= results["test/acc"] <= 1.0
    else:
        metrics = train(cfg)
        assert metrics, task


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_runs_a_batch(
    original_layout: Path, tmp_path: Path, experiment: str
) -> None:
    cfg = original_layout_config(original_layout, tmp_path, f"experiment={experiment}")
    sampling = cfg.task.datamodule.get("train_sampling")  # none for images: one 1-frame clip
    assert sampling is None or sampling.num_frames in (1, 2)
    instantiate(cfg.task.datamodule)  # the data config is complete
    assert train(cfg), experiment


def test_msrvtt_mc_scores_a_retrieval_checkpoint(original_layout: Path, tmp_path: Path) -> None:
    """`predict.py task=msrvtt_mc ckpt_path=<retrieval run>`: the original's MC test files."""
    cfg = original_layout_config(
        original_layout,
        tmp_path,
        "task=msrvtt_ret",
        "test=false",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=1",
        "trainer.limit_val_batches=1",
        "trainer.num_sanity_val_steps=0",
    )
    cfg.trainer.fast_dev_run = False  # a real (one-batch) epoch, so a checkpoint is written
    train(cfg)
    checkpoint = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    out = tmp_path / "mc"
    pcfg = predict_config(
        out,
        f"ckpt_path={checkpoint}",
        "task=msrvtt_mc",
        f"data_root={original_layout}",
        "split=test",
        "num_workers=0",
    )
    metrics = predict(pcfg)
    answers = json.loads((out / "mc_test_results.json").read_text())
    assert len(answers) == 4 * 8 and set(answers.values()) <= set(range(5))
    accuracy = json.loads((out / "mc_test_scores.json").read_text())["mc_accuracy"]
    assert accuracy == f"{100 * metrics['acc']:.2f}"
