"""Every task and experiment config composes and runs one batch (fast_dev_run) on data laid out
as the original's storage, made from the tiny demo: the recipes' wiring, not their numbers."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import open_dict

from clipbert.cli.predict import predict
from clipbert.cli.train import train
from clipbert.demo.generate import DemoPaths
from clipbert.runs.build import build_task
from clipbert.runs.configs import CONFIG_DIR
from tests.helpers import compose_config, predict_config

TASKS = sorted(p.stem for p in (Path(CONFIG_DIR) / "task").glob("*.yaml"))
EXPERIMENTS = sorted(p.stem for p in (Path(CONFIG_DIR) / "experiment").glob("*.yaml"))
INFERENCE_ONLY = {"msrvtt_mc"}  # scored with a retrieval model; no training split


def _copy_jsonl(
    src: Path, dst: Path, drop: tuple[str, ...] = (), rename: dict[str, str] | None = None
) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    rows = [json.loads(line) for line in src.read_text().splitlines()]
    rename = rename or {}
    dst.write_text(
        "".join(
            json.dumps({rename.get(k, k): v for k, v in r.items() if k not in drop}) + "\n"
            for r in rows
        )
    )


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if not dst.exists():
        os.symlink(src, dst)


@pytest.fixture(scope="session")
def original_layout(demo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's files under the names and folders the original's tasks expect."""
    demo = DemoPaths.under(demo_root)
    root = tmp_path_factory.mktemp("original_layout")
    txt = root / "txt_db"
    _link(demo.tokenizer_dir, root / "pretrained" / "bert-base-uncased")
    for path in (
        demo.txt_db,
        demo.vis_db,
        demo.image_txt_db,
        demo.image_vis_db,
        demo.tokenizer_dir,
    ):
        _link(path, root / path.relative_to(demo_root))  # the demo tasks' own folders
    for store in ("msrvtt", "tgif", "didemo", "anet", "tango"):
        _link(demo.vis_db, root / "vis_db" / store)
    _link(demo.image_vis_db, root / "vis_db" / "coco_train2014_val2014")
    _link(demo.image_vis_db, root / "vis_db" / "rico")
    _link(demo.image_vis_db, root / "vis_db" / "vg")
    _link(demo.vis_db, root / "vis_db" / "webvid")
    for split in ("train", "val", "test"):
        _copy_jsonl(demo.split(split), txt / "msrvtt_qa" / f"{split}.jsonl")
        _copy_jsonl(demo.split(split), txt / "tango" / f"{split}.jsonl")
        _copy_jsonl(demo.image_txt_db / f"{split}.jsonl", txt / "rico" / f"vqa_k_{split}.jsonl")
        _copy_jsonl(demo.split(split), txt / "tgif_qa" / f"frameqa_{split}.jsonl")
        for kind in ("action", "transition"):
            _copy_jsonl(demo.mc_split(split), txt / "tgif_qa" / f"{kind}_{split}.jsonl")
        for name in ("msrvtt_retrieval", "didemo_retrieval"):
            _copy_jsonl(demo.retrieval_split(split), txt / name / f"{split}.jsonl")
        for corpus in ("coco", "vg"):  # the original's pre-training captions
            _copy_jsonl(
                demo.image_caption_split(split),
                txt / "pretrain" / f"{corpus}_{split}_captions.jsonl",
                rename={"image_id": f"{corpus}_id"},
            )
        webvid = txt / "webvid" / f"{split}.jsonl"
        _copy_jsonl(demo.retrieval_split(split), webvid, rename={"clip_name": "video_id"})
    _copy_jsonl(demo.retrieval_split("train"), txt / "anet_retrieval" / "train.jsonl")
    _copy_jsonl(demo.retrieval_split("val"), txt / "anet_retrieval" / "dev.jsonl")
    _copy_jsonl(
        demo.mc_split("test"),
        txt / "msrvtt_retrieval_mc" / "msrvtt_retrieval_mc_test.jsonl",
        drop=("question",),  # the original's MC test file: candidate captions only
    )
    images = demo.image_txt_db
    _copy_jsonl(images / "train.jsonl", txt / "vqa" / "vqa_k_trainval.jsonl")
    _copy_jsonl(images / "val.jsonl", txt / "vqa" / "vg_k_trainval.jsonl")
    _copy_jsonl(images / "test.jsonl", txt / "vqa" / "vqa_k_test.jsonl")
    for name, file in (
        ("msrvtt_qa", "train_ans2label.json"),
        ("tgif_qa", "frameqa_trainval_ans2label.json"),
        ("tango", "ans2label.json"),
    ):
        (txt / name / file).write_text(demo.ans2label.read_text())
    for name, file in (("vqa", "trainval_ans2label.json"), ("rico", "ans2label.json")):
        (txt / name / file).write_text((images / "ans2label.json").read_text())
    return root


def _config(root: Path, tmp_path: Path, *overrides: str):
    cfg = compose_config(
        "train",
        [
            f"paths.data_root={root}",
            "model=tiny",
            "model.init_from=null",
            "model.cnn_weights=null",  # pre-training starts from grid-feat R50 and BERT files
            "model.bert.pretrained_dir=null",
            "debug=fdr",
            "task.datamodule.num_workers=0",
            "task.datamodule.pin_memory=false",
            "task.datamodule.batch_size=2",
            "task.datamodule.eval_batch_size=2",
            "trainer.enable_progress_bar=false",
            "callbacks.progress_bar=null",
            "callbacks.lr_monitor=null",
            "logger=[]",
            *overrides,
        ],
    )
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "run")
        cfg.task.datamodule.pop("prepare", None)
    return cfg


@pytest.mark.parametrize("task", TASKS)
def test_every_task_recipe_runs_a_batch(original_layout: Path, tmp_path: Path, task: str) -> None:
    cfg = _config(original_layout, tmp_path, f"task={task}")
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
    cfg = _config(original_layout, tmp_path, f"experiment={experiment}")
    sampling = cfg.task.datamodule.get("train_sampling")  # none for images: one 1-frame clip
    assert sampling is None or sampling.num_frames in (1, 2)
    instantiate(cfg.task.datamodule)  # the data config is complete
    assert train(cfg), experiment


def test_msrvtt_mc_scores_a_retrieval_checkpoint(original_layout: Path, tmp_path: Path) -> None:
    """`predict.py task=msrvtt_mc ckpt_path=<retrieval run>`: the original's MC test files."""
    cfg = _config(
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
