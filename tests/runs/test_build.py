"""The run layer rebuilds a trained module from its record alone, checkpoints of older releases
included, and sizes the model by its data."""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import OmegaConf, open_dict

from clipbert.runs.build import build_module, rebuild_module
from clipbert.runs.configs import MOVED_TARGETS
from clipbert.runs.record import TrainedRun, load_run
from tests.helpers import compose_config

ANSWERS = ["red", "green", "blue"]
IMAGE_SIZE = 64


def _demo_run(tmp_path: Path) -> tuple[TrainedRun, torch.nn.Module]:
    """A run of the demo recipe as train.py records it: the resolved config, the weights."""
    cfg = compose_config("train", ["task=demo_video_qa"])
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path)
        cfg.task.datamodule.image_size = IMAGE_SIZE
    torch.manual_seed(0)
    module = build_module(
        cfg.model, cfg.task.module, image_size=IMAGE_SIZE, vocab_size=30, answer_vocabulary=ANSWERS
    ).eval()
    run = TrainedRun(
        state_dict=module.state_dict(),
        hyper_parameters=dict(module.hparams),
        config=OmegaConf.to_container(cfg, resolve=True),
        bert_config=module.backbone.bert.config.to_dict(),
        tokenizer_files={},
    )
    return run, module


def _outputs(module: torch.nn.Module) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    frames = torch.randint(0, 256, (2, 1, 2, 3, 48, 64), dtype=torch.uint8, generator=generator)
    ids = torch.randint(5, 30, (2, 6), generator=generator)
    with torch.no_grad():
        return module.backbone(frames, ids, torch.ones_like(ids))


def test_a_run_rebuilds_with_the_same_outputs(tmp_path: Path) -> None:
    run, module = _demo_run(tmp_path)
    rebuilt = rebuild_module(load_run(run.save(tmp_path / "run.ckpt")))
    assert rebuilt.answer_vocabulary == ANSWERS and not rebuilt.training
    assert rebuilt.backbone.image_size == IMAGE_SIZE  # the size its data was read at
    torch.testing.assert_close(_outputs(rebuilt), _outputs(module), rtol=0, atol=0)
    assert rebuild_module(run, image_size=96).backbone.image_size == 96  # another task's data


def test_a_checkpoint_of_an_older_release_still_rebuilds(tmp_path: Path) -> None:
    """Before the package was restructured, runs recorded the callbacks under their old module
    paths and the benchmark-only ``model.clip_order``; such checkpoints load and rebuild."""
    run, module = _demo_run(tmp_path)
    moved_back = {new: old for old, new in MOVED_TARGETS.items()}
    config = run.config
    for callback in config["callbacks"].values():
        callback["_target_"] = moved_back.get(callback["_target_"], callback["_target_"])
    plugin = config["trainer"]["plugins"][0]
    plugin["_target_"] = moved_back[plugin["_target_"]]
    config["model"]["clip_order"] = "batched"
    rebuilt = rebuild_module(load_run(run.save(tmp_path / "old.ckpt")))
    torch.testing.assert_close(_outputs(rebuilt), _outputs(module), rtol=0, atol=0)
