"""Pre-training end to end: the original's recipe composes, image, video and mixed corpora train
on data laid out as the original's storage, and a run exports to the original's key layout
and starts every finetuning task through ``model.init_from``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from omegaconf import open_dict

from clipbert.cli.convert import convert
from clipbert.cli.train import train
from clipbert.models.backbone import ClipBertBackbone, build_bert
from clipbert.models.checkpoints import (
    PRETRAINING_HEADS,
    initialize_from,
    to_original_state_dict,
    with_unread_original_keys,
)
from clipbert.models.resnet import resnet50
from clipbert.runs.build import build_task
from clipbert.tasks.pretraining import PretrainTask
from tests.helpers import FIXTURES, compose_config, original_layout_config

EVAL_METRICS = ("mlm_loss", "mlm_acc", "itm_loss", "itm_acc")
# The original's CNN (detectron2 FrozenBN): its checkpoints have no BatchNorm step counters.
ORIGINAL_CNN = ("model.cnn.norm=frozen_bn", "model.cnn.stride_in_1x1=true")


def test_pretrain_coco_vg_composes_the_original_recipe() -> None:
    cfg = compose_config("train", ["task=pretrain_coco_vg"])
    dm, module, model = cfg.task.datamodule, cfg.task.module, cfg.model
    assert (dm.image_size, dm.max_txt_len, dm.batch_size, dm.max_texts_per_video) == (
        768,
        30,
        32,
        2,
    )
    assert (dm.itm_neg_prob, dm.mlm_probability) == (0.5, 0.15)
    assert {name: c.id_key for name, c in dm.corpora.items()} == {
        "coco_cap": "coco_id",
        "vg_cap": "vg_id",
    }
    assert dm.corpora.coco_cap.splits.train == "coco_train_captions.jsonl"
    assert all(c.get("ratio", 1) == 1 for c in dm.corpora.values())  # drawn uniformly
    assert model.random_token_sampling == 100
    assert model.cnn_weights.endswith("pretrained/grid_feat_R-50.pth")
    assert model.bert.pretrained_dir.endswith("pretrained/bert-base-uncased")
    assert (module.optimizer.lr, module.cnn_lr, list(module.optimizer.betas)) == (
        5e-5,
        5e-5,
        [0.9, 0.98],
    )
    assert (module.optimizer.weight_decay, module.cnn_weight_decay, module.warmup_ratio) == (
        1e-3,
        1e-3,
        0.1,
    )
    assert (module.mlm_weight, module.itm_weight, module.mlm_loss_reduction) == (
        1.0,
        1.0,
        "all_positions",
    )
    assert (cfg.trainer.max_epochs, cfg.trainer.accumulate_grad_batches) == (40, 2)
    assert cfg.trainer.gradient_clip_val == 5.0
    assert (cfg.callbacks.model_steps.num_valid, cfg.callbacks.model_steps.min_valid_steps) == (
        200,
        100,
    )
    assert cfg.test is False


@pytest.mark.parametrize(
    ("task", "corpora"),
    [
        ("pretrain_coco_vg", ("coco_cap", "vg_cap")),
        ("pretrain_webvid", ("webvid",)),
        ("pretrain_mixed", ("coco_cap", "vg_cap", "webvid")),
    ],
)
def test_pretraining_trains_a_few_batches(
    original_layout: Path, tmp_path: Path, task: str, corpora: tuple[str, ...]
) -> None:
    cfg = original_layout_config(
        original_layout,
        tmp_path,
        f"task={task}",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=4",
        "trainer.num_sanity_val_steps=0",
        "task.datamodule.image_size=64",
        one_batch=False,
    )
    metrics = train(cfg)
    for name in EVAL_METRICS:
        assert math.isfinite(metrics[f"val/{name}"]), name
        for corpus in corpora:
            assert math.isfinite(metrics[f"val/{name}_{corpus}"]), (name, corpus)
    assert 0.0 <= metrics["val/itm_acc"] <= 1.0 and metrics["val/broken"] == 0.0
    assert (Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt").is_file()


@pytest.fixture(scope="module")
def pretrained_run(original_layout: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A demo_pretrain run of a few batches: its last.ckpt."""
    out = tmp_path_factory.mktemp("pretrain")
    cfg = original_layout_config(
        original_layout,
        out,
        "task=demo_pretrain",
        *ORIGINAL_CNN,
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=3",
        "trainer.limit_val_batches=1",
        "trainer.num_sanity_val_steps=0",
        one_batch=False,
    )
    train(cfg)
    return Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"


def _finetuning_module(original_layout: Path, tmp_path: Path, task: str):
    cfg = original_layout_config(original_layout, tmp_path, f"task={task}", *ORIGINAL_CNN)
    with open_dict(cfg):
        cfg.model.init_from = None
    return build_task(cfg)[1]


def test_a_pretrained_run_starts_finetuning_with_every_key_explained(
    original_layout: Path, pretrained_run: Path, tmp_path: Path
) -> None:
    exported = tmp_path / "clipbert_image_text_pretrained.pt"
    convert(
        compose_config(
            "convert",
            [f"src={pretrained_run}", f"dst={exported}", "to=original"],
        )
    )
    with pytest.raises(ValueError, match="to must be one of clipbert, original, folder"):
        convert(compose_config("convert", [f"src={pretrained_run}", "dst=x.pt", "to=pt"]))
    original = torch.load(exported, weights_only=True)
    assert {k for k in original if k.startswith("transformer.cls.")} == {
        f"transformer.cls.{k}"
        for k in (
            "predictions.bias",
            "predictions.transform.dense.weight",
            "predictions.transform.dense.bias",
            "predictions.transform.LayerNorm.weight",
            "predictions.transform.LayerNorm.bias",
            "predictions.decoder.weight",
            "predictions.decoder.bias",
            "seq_relationship.weight",
            "seq_relationship.bias",
        )
    }
    for source in (pretrained_run, exported):
        qa = _finetuning_module(original_layout, tmp_path / source.suffix, "demo_video_qa")
        report = initialize_from(qa, source)
        assert report.unexpected == [] and report.mismatched == [], source
        assert sorted(report.missing) == [
            f"head.classifier.{i}.{p}" for i in (0, 2) for p in ("bias", "weight")
        ], source
        heads = [k for k in report.dropped if k.startswith(PRETRAINING_HEADS)]
        assert len(heads) == 9, source
        # the export's unread detector heads and 1-D position table are dropped, by name
        assert len(report.dropped) == 9 + (21 if source == exported else 0), source
    weights = torch.load(pretrained_run, weights_only=True)["state_dict"]
    assert torch.equal(
        qa.backbone.bert.encoder.layer[0].output.dense.weight,
        weights["backbone.bert.encoder.layer.0.output.dense.weight"],
    )


def test_retrieval_starts_its_mlm_head_from_the_pretrained_one(
    original_layout: Path, pretrained_run: Path, tmp_path: Path
) -> None:
    retrieval = _finetuning_module(original_layout, tmp_path, "demo_retrieval")
    report = initialize_from(retrieval, pretrained_run)
    assert report.unexpected == [] and report.mismatched == []
    assert not [k for k in report.missing if k.startswith("mlm_head.")]
    weights = torch.load(pretrained_run, weights_only=True)["state_dict"]
    assert torch.equal(
        retrieval.mlm_head.transform.dense.weight,
        weights["head.predictions.transform.dense.weight"],
    )
    assert (
        retrieval.mlm_head.decoder.weight
        is retrieval.backbone.bert.embeddings.word_embeddings.weight
    )


def test_the_export_holds_the_released_checkpoints_key_list() -> None:
    """Keys and shapes of a pre-training model at the fixture's size, exported, equal the
    original's full key list with the pre-training heads in place of the classifier."""
    meta_file = FIXTURES / "meta.json"
    heads_file = FIXTURES / "pretrain" / "state_dict_heads_pretrain_fp16.pt"
    if not heads_file.is_file():
        pytest.skip(f"parity fixture not found at {FIXTURES}")
    meta = json.loads(meta_file.read_text())
    bert = {k: meta["bert_config"][k] for k in ("vocab_size", "hidden_size", "intermediate_size")}
    bert |= {"num_hidden_layers": 2, "num_attention_heads": 2}
    backbone = ClipBertBackbone(resnet50(), build_bert(bert), image_size=None)
    task = PretrainTask(
        backbone,
        optimizer=torch.optim.AdamW,
        cnn_lr=5e-5,
        cnn_weight_decay=1e-3,
    )
    exported = with_unread_original_keys(to_original_state_dict(task.state_dict()))
    released = {
        k: tuple(v["shape"])
        for k, v in meta["full_state_dict_keys"].items()
        if not k.startswith("transformer.classifier.")
    }
    heads = torch.load(heads_file, weights_only=True)
    released |= {k: tuple(v.shape) for k, v in heads.items()}
    assert {k: tuple(v.shape) for k, v in exported.items()} == released


def test_a_pretraining_corpus_reads_its_videos_from_s3(
    train_config, demo_shards: tuple[Path, str], s3_endpoint: str
) -> None:
    cfg = train_config(
        "task=demo_pretrain",
        f"task.datamodule.corpora.demo_videos.vis_db={demo_shards[1]}",
        f"task.datamodule.storage.endpoint_url={s3_endpoint}",
        "trainer.limit_train_batches=4",
        "trainer.limit_val_batches=2",
        "test=false",
    )
    metrics = train(cfg)
    assert metrics["val/broken"] == 0.0
    assert math.isfinite(metrics["val/mlm_loss_demo_videos"])
