"""On a CUDA device: train in bf16 and fp16 mixed precision, then predict on the GPU and on the
CPU from the same checkpoint. Skipped without a GPU (CI has none); RESULTS.md records the runs
on a lent one."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from clipbert.cli.predict import predict
from clipbert.cli.train import train
from tests.helpers import predict_config

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def _predict(ckpt: Path, out: Path, accelerator: str) -> list[dict]:
    cfg = predict_config(out, f"ckpt_path={ckpt}", "split=test", f"accelerator={accelerator}")
    assert predict(cfg)["broken"] == 0
    return [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("precision", ["bf16-mixed", "16-mixed"])
def test_train_on_gpu_then_predict_as_on_the_cpu(
    train_config, tmp_path: Path, precision: str
) -> None:
    """The shipped recipe as it is: under fp16 its fused AdamW is built unfused, so that the
    gradient scaler unscales before clipping (tests/tasks/test_base.py)."""
    cfg = train_config("trainer=gpu", f"trainer.precision={precision}")
    metrics = train(cfg)
    assert metrics and all(math.isfinite(value) for value in metrics.values()), metrics
    assert 0.0 <= metrics["test/acc"] <= 1.0
    best = Path(cfg.paths.output_dir) / "checkpoints" / "best.ckpt"

    on_gpu = _predict(best, tmp_path / "gpu", "gpu")
    on_cpu = _predict(best, tmp_path / "cpu", "cpu")
    assert [r["question_id"] for r in on_gpu] == [r["question_id"] for r in on_cpu]
    for gpu, cpu in zip(on_gpu, on_cpu, strict=True):  # fp32 on both (tf32 off): same answers
        assert gpu["prediction"] == cpu["prediction"] or (
            abs(gpu["top5"][0]["prob"] - gpu["top5"][1]["prob"]) < 1e-3
        ), (gpu, cpu)
        assert abs(gpu["top5"][0]["prob"] - cpu["top5"][0]["prob"]) < 1e-3, (gpu, cpu)
