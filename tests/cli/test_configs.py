"""Hydra composition: defaults, overrides, experiments, and errors before any work starts."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate

from clipbert.runs.build import build_module
from clipbert.runs.configs import CONFIG_DIR
from tests.helpers import compose_config, predict_config

REPO = Path(__file__).resolve().parents[2]
EXPERIMENTS = sorted(p.stem for p in (Path(CONFIG_DIR) / "experiment").glob("*.yaml"))


def test_default_is_the_demo_on_the_machine_s_devices(monkeypatch) -> None:
    monkeypatch.delenv("CLIPBERT_DATA", raising=False)
    cfg = compose_config("train", [])
    assert cfg.task.name == "demo_video_qa"
    assert (cfg.trainer.accelerator, cfg.trainer.precision) == ("auto", "bf16-mixed")
    assert "train.py trainer.accelerator=cpu" in (REPO / "Makefile").read_text()  # make demo
    assert cfg.model.bert.num_hidden_layers == 2  # the demo selects the tiny model
    assert cfg.paths.data_root == "./data"


def test_data_root_follows_env(monkeypatch) -> None:
    monkeypatch.setenv("CLIPBERT_DATA", "/datasets/clipbert")
    cfg = compose_config("train", [])
    assert cfg.task.datamodule.vis_db == "/datasets/clipbert/vis_db/demo_video_qa"


def test_overrides_reach_the_objects() -> None:
    cfg = compose_config("train", ["trainer.max_epochs=1", "model.bert.num_hidden_layers=1"])
    assert cfg.trainer.max_epochs == 1
    module = build_module(
        cfg.model, cfg.task.module, image_size=64, vocab_size=50, answer_vocabulary=["a", "b"]
    )
    assert module.backbone.bert.config.num_hidden_layers == 1


@pytest.mark.parametrize("trainer", ["auto", "cpu", "gpu", "ddp", "ddp_multinode", "fsdp"])
def test_every_lightning_trainer_argument_overrides_without_plus(trainer: str) -> None:
    """Users type Lightning's own names: each Trainer argument is a key of every trainer config
    (the loggers and callbacks have their own config groups)."""
    arguments = set(inspect.signature(pl.Trainer.__init__).parameters) - {"self"}
    cfg = compose_config("train", [f"trainer={trainer}"])
    assert arguments - {"logger", "callbacks"} <= set(cfg.trainer)
    for override in ("trainer.fast_dev_run=true", "trainer.profiler=simple", "trainer.min_steps=3"):
        key, value = override.removeprefix("trainer.").split("=")
        assert str(compose_config("train", [override]).trainer[key]).lower() == value


def test_misspelled_key_is_refused() -> None:
    with pytest.raises(ConfigCompositionException, match="max_epoch"):
        compose_config("train", ["trainer.max_epoch=1"])


def test_misspelled_key_fails_before_any_work(tmp_path: Path) -> None:
    """The real script exits with Hydra's message and creates no data or run folder."""
    result = subprocess.run(
        [sys.executable, str(REPO / "train.py"), "trainer.max_epoch=1"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "max_epoch" in result.stderr
    assert not (tmp_path / "data").exists() and not (tmp_path / "outputs").exists()


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes(experiment: str) -> None:
    datamodule = compose_config("train", [f"experiment={experiment}"]).task.datamodule
    if datamodule._target_.endswith("ImageQADataModule"):  # an image is one 1-frame clip
        assert "train_sampling" not in datamodule
    else:
        assert datamodule.train_sampling.n_clips >= 1


def test_one_frame_experiment_changes_only_frames() -> None:
    base = compose_config("train", [])
    one = compose_config("train", ["experiment=demo_1frame"])
    assert one.task.datamodule.train_sampling.num_frames == 1
    assert one.task.datamodule.eval_sampling.num_frames == 1
    assert one.task.datamodule.train_sampling.fps == base.task.datamodule.train_sampling.fps
    assert one.model == base.model


def test_predict_requires_a_checkpoint_or_a_run(tmp_path: Path) -> None:
    from clipbert.cli.predict import predict

    cfg = predict_config(tmp_path)
    with pytest.raises(ValueError, match=r"give ckpt_path=FILE, or run_dir=RUN"):
        predict(cfg)


@pytest.mark.parametrize(
    ("override", "message"), [("score_agg=median", "score_agg"), ("n_clips=0", "n_clips")]
)
def test_predict_rejects_bad_values_before_loading(
    override: str, message: str, tmp_path: Path
) -> None:
    from clipbert.cli.predict import predict

    cfg = compose_config("predict", [f"ckpt_path={tmp_path / 'missing.ckpt'}", override])
    with pytest.raises(ValueError, match=message):
        predict(cfg)


@pytest.mark.parametrize("name", ["ddp", "ddp_multinode"])
def test_ddp_trainer_configs_build_on_the_cpu(name: str, tmp_path: Path) -> None:
    cfg = compose_config(
        "train",
        [f"trainer={name}", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.num_nodes=1"],
    )
    trainer = instantiate(cfg.trainer, default_root_dir=str(tmp_path))
    assert type(trainer.strategy).__name__ == "DDPStrategy" and trainer.world_size == 2
    assert type(trainer.strategy.checkpoint_io).__name__ == "AtomicCheckpointIO"


def test_multinode_and_fsdp_configs_say_what_they_run() -> None:
    multinode = compose_config("train", ["trainer=ddp_multinode"]).trainer
    assert (multinode.num_nodes, multinode.devices, multinode.strategy) == (2, 8, "ddp")
    fsdp = compose_config("train", ["trainer=fsdp"]).trainer
    strategy = instantiate(fsdp.strategy)  # FSDP itself needs GPUs: only the strategy is built
    assert type(strategy).__name__ == "FSDPStrategy"
    assert [cls.__name__ for cls in strategy.kwargs["auto_wrap_policy"]] == ["BertLayer"]


@pytest.mark.parametrize(
    ("task", "strategy"),
    [
        ("msrvtt_ret", "middle_or_fixed"),
        ("didemo_ret", "middle_or_fixed"),
        ("anet_ret", "middle_or_fixed"),
        ("msrvtt_mc", "middle_or_fixed"),
        ("demo_retrieval", "middle_or_fixed"),
        ("msrvtt_qa", "fixed"),
        ("tgif_frameqa", "fixed"),
    ],
)
def test_evaluation_clip_is_the_original_s(task: str, strategy: str) -> None:
    """Retrieval and the MSRVTT MC test evaluate one clip from delta / 3 (reference 4.3);
    video QA evaluates the clip at frame 0."""
    sampling = compose_config("train", [f"task={task}"]).task.datamodule.eval_sampling
    assert sampling.strategy == strategy
