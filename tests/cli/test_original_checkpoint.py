"""An original-layout checkpoint through predict.py (with task=...) and convert.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from clipbert.cli.convert import convert
from clipbert.cli.predict import predict
from clipbert.models.checkpoints import to_original_state_dict
from clipbert.runs.build import build_task
from tests.helpers import compose_config, predict_config

REPO = Path(__file__).resolve().parents[2]
# The original's CNN: detectron2 FrozenBN, stride in the 1x1 conv.
ORIGINAL_CNN = ("model.cnn.norm=frozen_bn", "model.cnn.stride_in_1x1=true", "model.cnn.freeze_at=2")


@pytest.fixture
def original_checkpoint(train_config, tmp_path: Path):
    """A demo model saved as the original code saves one: fp16, ``module.``-prefixed, flat.

    Returns the path and the model's own top-5 predictions on the test split.
    """
    cfg = train_config(*ORIGINAL_CNN, "+task.datamodule.predict_split=test")
    pl.seed_everything(0)
    datamodule, module = build_task(cfg)
    with torch.no_grad():
        for buffer in module.backbone.cnn.buffers():  # non-trivial FrozenBN statistics
            buffer.uniform_(0.5, 1.5)
        for tensor in module.state_dict().values():  # what survives the fp16 save
            tensor.copy_(tensor.half().float())
    original = to_original_state_dict(module.state_dict())
    path = tmp_path / "model_step_100.pt"
    torch.save({"module." + k: v.half() for k, v in original.items()}, path)
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False)
    batches = trainer.predict(module.eval(), datamodule=datamodule)
    return path, [record["top5"] for batch in batches for record in batch]


def _predict(demo_root: Path, out: Path, *overrides: str) -> tuple[dict, list[dict]]:
    """predict.py on the CPU, like the reference (on a GPU near-equal answers could swap)."""
    cfg = predict_config(
        out, f"data_root={demo_root}", "split=test", "num_workers=0", "accelerator=cpu", *overrides
    )
    metrics = predict(cfg)
    lines = (out / "predictions.jsonl").read_text().splitlines()
    return metrics, [json.loads(line) for line in lines]


def test_predict_and_convert_an_original_checkpoint(
    original_checkpoint, demo_root: Path, tmp_path: Path
) -> None:
    path, expected = original_checkpoint
    metrics, records = _predict(
        demo_root, tmp_path / "p1", f"ckpt_path={path}", "task=demo_video_qa"
    )  # the demo's model config says batch_norm and stride in the 3x3: overridden for a .pt
    assert len(records) == 4 * 8 and 0.0 <= metrics["acc"] <= 1.0
    for ours, theirs in zip((r["top5"] for r in records), expected, strict=True):
        assert [a["answer"] for a in ours] == [a["answer"] for a in theirs]
        assert [a["prob"] for a in ours] == pytest.approx([a["prob"] for a in theirs], abs=1e-5)

    ckpt = tmp_path / "converted.ckpt"
    convert(
        compose_config(
            "convert",
            [f"src={path}", f"dst={ckpt}", "task=demo_video_qa", f"data_root={demo_root}"],
        )
    )
    record = torch.load(ckpt, weights_only=True)["clipbert"]
    assert record["config"]["task"]["name"] == "demo_video_qa"
    again, again_records = _predict(demo_root, tmp_path / "p2", f"ckpt_path={ckpt}")
    assert again == metrics
    assert [r["top5"] for r in again_records] == [r["top5"] for r in records]

    with pytest.raises(FileExistsError, match="overwrite=true"):
        convert(compose_config("convert", [f"src={path}", f"dst={ckpt}", "task=demo_video_qa"]))


def test_original_checkpoint_errors_say_what_to_do(
    original_checkpoint, demo_root: Path, tmp_path: Path
) -> None:
    path, _ = original_checkpoint
    with pytest.raises(ValueError, match="task=msrvtt_qa"):
        _predict(demo_root, tmp_path / "p", f"ckpt_path={path}")
    sd = torch.load(path, weights_only=True)
    pretrained = tmp_path / "clipbert_image_text_pretrained.pt"
    torch.save({k: v for k, v in sd.items() if ".classifier." not in k}, pretrained)
    with pytest.raises(ValueError, match="model.init_from"):
        _predict(demo_root, tmp_path / "p", f"ckpt_path={pretrained}", "task=demo_video_qa")
    other = tmp_path / "other.pt"
    torch.save({"encoder.weight": torch.zeros(2)}, other)
    with pytest.raises(ValueError, match="neither a clipbert checkpoint"):
        _predict(demo_root, tmp_path / "p", f"ckpt_path={other}", "task=demo_video_qa")


def test_predict_script_runs_an_original_checkpoint(
    original_checkpoint, demo_root: Path, tmp_path: Path
) -> None:
    """The command users type: `python predict.py task=NAME ckpt_path=model_step_N.pt`."""
    path, _ = original_checkpoint
    out = tmp_path / "out"
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "predict.py"),
            "task=demo_video_qa",
            f"ckpt_path={path}",
            f"data_root={demo_root}",
            "num_workers=0",
            f"hydra.run.dir={out}",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert len((out / "predictions.jsonl").read_text().splitlines()) == 4 * 8
    assert "acc_motion" in result.stdout
