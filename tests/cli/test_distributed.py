"""Two real processes (DDP over gloo on the CPU): sharded loading, and retrieval ranking whose
score matrix is gathered across processes and ranks exactly as one process ranks it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from omegaconf import open_dict

from clipbert.cli.predict import predict
from tests.conftest import TINY_DEMO_SIZES
from tests.helpers import compose_config

REPO = Path(__file__).resolve().parents[2]


def test_two_process_retrieval_ranks_like_one(demo_root: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    sizes = f"+task.datamodule.prepare.sizes={TINY_DEMO_SIZES}".replace("'", "").replace(" ", "")
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "train.py"),
            "task=demo_retrieval",
            f"paths.data_root={demo_root}",
            sizes,
            "+task.datamodule.prepare.progress=false",
            "task.datamodule.num_workers=0",
            "task.datamodule.batch_size=4",
            "task.datamodule.eval_batch_size=3",  # 8 videos over 2 processes: padded shards
            "trainer.max_epochs=1",
            "trainer.precision=32-true",
            "trainer.devices=2",
            "trainer.strategy=ddp",
            "trainer.num_sanity_val_steps=0",
            "trainer.enable_progress_bar=false",
            "callbacks.progress_bar=null",
            f"hydra.run.dir={run}",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test/broken"] == 0

    out = tmp_path / "predict"  # one process, the same checkpoint
    pcfg = compose_config(
        "predict", [f"ckpt_path={run / 'checkpoints' / 'best.ckpt'}", "split=test"]
    )
    with open_dict(pcfg):
        pcfg.paths.output_dir = str(out)
    single = predict(pcfg)
    for key in ("r1_t2v", "r5_t2v", "median_rank_t2v", "r1_v2t", "mean_rank_v2t"):
        assert metrics[f"test/{key}"] == single[key], key
