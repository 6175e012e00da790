"""Fixtures of the command-line tests: the demo's files laid out as the original's storage, and
demo models trained once per session."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from omegaconf import open_dict

from clipbert.demo.generate import DemoPaths
from tests.browser import browser, page  # noqa: F401
from tests.helpers import compose_config, tiny_demo_overrides


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


@pytest.fixture(scope="session")
def demo_checkpoint(
    demo_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> Callable[..., Path]:
    """Factory: ``demo_checkpoint(task, *overrides)`` is the ``best.ckpt`` of a train.py run of
    that demo task (one training batch, one validation batch: about a second), in its run
    folder beside ``metrics.json``; each is trained once per session."""
    from clipbert.cli.train import train

    made: dict[tuple[str, ...], Path] = {}

    def make(task: str, *overrides: str) -> Path:
        key = (task, *overrides)
        if key not in made:
            cfg = compose_config(
                "train",
                [
                    *tiny_demo_overrides(demo_root),
                    f"task={task}",
                    "task.datamodule.batch_size=8",
                    "task.datamodule.eval_batch_size=8",
                    "trainer.max_epochs=1",
                    "trainer.limit_train_batches=1",
                    "trainer.limit_val_batches=1",
                    "trainer.num_sanity_val_steps=0",
                    "test=false",
                    "logger=[]",
                    "callbacks.lr_monitor=null",
                    *overrides,
                ],
            )
            with open_dict(cfg):
                cfg.paths.output_dir = str(tmp_path_factory.mktemp(f"run_{task}"))
            train(cfg)
            made[key] = Path(cfg.paths.output_dir) / "checkpoints" / "best.ckpt"
        return made[key]

    return make
