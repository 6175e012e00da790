"""model.init_from: finetune from a checkpoint, loading what fits and keeping the rest fresh."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from clipbert.runs.build import build_task


def test_init_from_loads_what_fits(train_config, tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="clipbert")
    _, source = build_task(train_config())
    path = tmp_path / "source.ckpt"
    torch.save({"state_dict": source.state_dict(), "epoch": 3}, path)

    _, target = build_task(train_config(f"model.init_from={path}", "task.module.min_num_labels=20"))
    theirs, ours = source.state_dict(), target.state_dict()
    assert torch.equal(ours["backbone.cnn.conv1.weight"], theirs["backbone.cnn.conv1.weight"])
    assert torch.equal(ours["head.classifier.0.weight"], theirs["head.classifier.0.weight"])
    # The answer layer is 20 wide now, 13 in the file: it stays freshly initialised.
    assert ours["head.classifier.2.weight"].shape[0] == 20
    assert "shape-mismatched 2" in caplog.text and "head.classifier.2.weight" in caplog.text
