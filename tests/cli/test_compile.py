"""``model.compile=true`` through the entry points: Lightning trains and tests the compiled
model, its checkpoint is an ordinary one, and ``predict.py compile=true`` agrees with eager."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from clipbert.cli.predict import predict
from clipbert.cli.train import train
from tests.helpers import predict_config

pytestmark = pytest.mark.slow  # compiling the model for training, evaluation and prediction


def _probabilities(out: Path) -> list[list[float]]:
    records = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    return [[entry["prob"] for entry in record["top5"]] for record in records]


def test_compiled_training_and_prediction(train_config, tmp_path: Path) -> None:
    compiled_frames = torch._dynamo.utils.counters["frames"]
    before = compiled_frames["ok"]
    cfg = train_config("model.compile=true")
    metrics = train(cfg)
    assert compiled_frames["ok"] - before >= 3  # the CNN, grid encoder and BERT encoder
    assert 0.0 <= metrics["test/acc"] <= 1.0

    best = Path(cfg.paths.output_dir) / "checkpoints" / "best.ckpt"
    state = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
    assert not any("_orig_mod" in key for key in state)  # names as an eager run writes them

    outputs = {}
    for compile in ("false", "true"):
        out = tmp_path / f"predict_{compile}"
        before = compiled_frames["ok"]
        predict(predict_config(out, f"ckpt_path={best}", f"compile={compile}", "accelerator=cpu"))
        assert (compiled_frames["ok"] > before) == (compile == "true")
        outputs[compile] = out
    eager, compiled = (_probabilities(outputs[c]) for c in ("false", "true"))
    torch.testing.assert_close(torch.tensor(compiled), torch.tensor(eager), rtol=0, atol=1e-4)
