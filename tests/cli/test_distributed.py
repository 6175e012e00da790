"""Real processes (DDP over gloo on the CPU): sharded loading, validation metrics and a retrieval
ranking gathered across processes that equal what one process computes."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import pytorch_lightning as pl
from omegaconf import open_dict

from clipbert.cli.predict import predict
from clipbert.runs.build import build_task
from tests.helpers import compose_config, predict_config, run_train, tiny_demo_overrides


def test_two_process_retrieval_ranks_like_one(demo_root: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = run_train(
        "task=demo_retrieval",
        *tiny_demo_overrides(demo_root),
        "task.datamodule.batch_size=4",
        "task.datamodule.eval_batch_size=3",  # 8 videos over 2 processes: padded shards
        "trainer.max_epochs=1",
        "trainer.precision=32-true",
        "trainer.devices=2",
        "trainer.strategy=ddp",
        "trainer.num_sanity_val_steps=0",
        "trainer.log_every_n_steps=1",
        "callbacks.throughput.window_size=2",
        f"hydra.run.dir={run}",
        cwd=tmp_path,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test/broken"] == 0
    with (run / "csv" / "metrics.csv").open() as file:
        rates = [
            float(row["train/samples_per_sec"])
            for row in csv.DictReader(file)
            if row.get("train/samples_per_sec")
        ]
    assert rates and min(rates) > 0  # the job's rate: both processes' videos

    out = tmp_path / "predict"  # one process, the same checkpoint
    single = predict(
        predict_config(out, f"ckpt_path={run / 'checkpoints' / 'best.ckpt'}", "split=test")
    )
    for key in ("r1_t2v", "r5_t2v", "median_rank_t2v", "r1_v2t", "mean_rank_v2t"):
        assert metrics[f"test/{key}"] == single[key], key


def test_ddp_validation_metrics_equal_one_process_validation(
    demo_root: Path, tmp_path: Path
) -> None:
    """Three processes: 8 validation videos shard 3/3/2, so a padded sampler would count a video
    twice; the unpadded shards give exactly the one-process numbers."""
    run = tmp_path / "run"
    overrides = [
        *tiny_demo_overrides(demo_root),
        "task.datamodule.eval_batch_size=2",
        "trainer.max_epochs=1",
        "trainer.num_sanity_val_steps=0",
        "test=false",
    ]
    result = run_train(
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=3",
        *overrides,
        f"hydra.run.dir={run}",
        cwd=tmp_path,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    logged = {}
    with (run / "csv" / "metrics.csv").open() as file:
        for row in csv.DictReader(file):
            logged.update({k: float(v) for k, v in row.items() if k.startswith("val/") and v})
    assert "global batch 24 videos (8 per device x 3 processes" in result.stdout + result.stderr

    cfg = compose_config("train", [*overrides, "trainer=ddp", "trainer.accelerator=cpu"])
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "single")
    datamodule, module = build_task(cfg)
    trainer = pl.Trainer(
        accelerator="cpu", devices=1, precision=cfg.trainer.precision, logger=False
    )
    (single,) = trainer.validate(
        module, datamodule=datamodule, ckpt_path=str(run / "checkpoints" / "last.ckpt")
    )
    assert set(single) == set(logged)
    # The shards' batches differ from one process's (2+1 videos against 2+2), and BLAS and
    # oneDNN pick other kernels for other row counts, so a loss may move by a few 1e-6; a video
    # counted twice would move the mean by (its loss - the mean) / 9, and an accuracy by up to 1/9.
    for key, value in single.items():
        assert logged[key] == pytest.approx(value, rel=1e-5, abs=1e-7), key


@pytest.mark.parametrize("task", ["demo_video_qa", "demo_retrieval"])
def test_predicting_on_two_processes_writes_what_one_writes(
    train_config, tmp_path: Path, task: str
) -> None:
    """`predict.py devices=2`: the processes predict one block of the split each, the first
    writes every prediction once, in the split's order, with the metrics of the whole split."""
    from clipbert.cli.train import train
    from tests.helpers import run_script

    cfg = train_config(f"task={task}", "test=false")
    train(cfg)
    checkpoint = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    single_dir = tmp_path / "one"
    single = predict(predict_config(single_dir, f"ckpt_path={checkpoint}", "num_workers=0"))

    double_dir = tmp_path / "two"
    result = run_script(
        "predict.py",
        f"ckpt_path={checkpoint}",
        "accelerator=cpu",
        "devices=2",
        "num_workers=0",
        "batch_size=3",  # 8 test videos: blocks of 4, batches of 3 and 1
        f"hydra.run.dir={double_dir}",
        cwd=tmp_path,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    double = json.loads((double_dir / "metrics.json").read_text())
    assert double.keys() == single.keys()
    for key, value in single.items():
        assert double[key] == pytest.approx(value, abs=1e-6), key
    name = "predictions.jsonl" if task == "demo_video_qa" else "rankings.jsonl"
    ones = [json.loads(line) for line in (single_dir / name).read_text().splitlines()]
    twos = [json.loads(line) for line in (double_dir / name).read_text().splitlines()]
    assert len(twos) == len(ones)
    key = "question_id" if task == "demo_video_qa" else "caption_id"
    assert [r[key] for r in twos] == [r[key] for r in ones]
    if task == "demo_video_qa":
        assert [r["prediction"] for r in twos] == [r["prediction"] for r in ones]
    else:
        assert [[t["video_id"] for t in r["top5"]] for r in twos] == [
            [t["video_id"] for t in r["top5"]] for r in ones
        ]
