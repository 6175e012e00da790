"""The video QA DataModule over a real generated LMDB: batches, sampling, tokenization."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate

from clipbert.data.datasets import IGNORE_LABEL, group_by_video
from clipbert.models.frame_input import FrameInput


def build(train_config, *overrides: str):
    cfg = train_config(*overrides)
    datamodule = instantiate(cfg.task.datamodule)
    datamodule.prepare_data()
    return cfg, datamodule


def test_train_batch_is_uint8_clips_and_padded_text(train_config) -> None:
    cfg, dm = build(train_config, "task.datamodule.train_sampling.n_clips=2")
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    size = cfg.task.datamodule.image_size
    questions_per_video = cfg.task.datamodule.max_texts_per_video
    # Loaders ship uint8 frames at the videos' own size (demo: 160x120); the model resizes.
    assert batch.frames.dtype == torch.uint8
    assert batch.frames.shape == (8, 2, 2, 3, 120, 160)
    assert dm.image_size == size
    assert batch.input_ids.shape == (8 * questions_per_video, cfg.task.datamodule.max_txt_len)
    assert batch.visual_index.tolist() == [v for v in range(8) for _ in range(questions_per_video)]
    assert (batch.input_ids[:, 0] == dm.tokenizer.cls_token_id).all()
    assert batch.attention_mask.sum(1).min() >= 3
    assert set(batch.answer_types) <= {"color", "shape", "count", "motion"}
    assert (batch.labels >= 0).all()


def test_padding_is_right_and_bottom(train_config) -> None:
    """Demo videos are 4:3, so the bottom quarter of each padded frame is zero."""
    cfg, dm = build(train_config)
    dm.setup("validate")
    size = cfg.task.datamodule.image_size
    transform = FrameInput(size, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    frames = transform.resize(next(iter(dm.val_dataloader())).frames)
    assert frames[..., size * 3 // 4 :, :].eq(0).all()
    assert frames[..., : size * 3 // 4 - 1, :].mean() > 10


def test_eval_sampling_is_deterministic(train_config) -> None:
    _, dm = build(train_config)
    dm.setup("validate")
    first = next(iter(dm.val_dataloader())).frames
    second = next(iter(dm.val_dataloader())).frames
    assert torch.equal(first, second)


def test_out_of_vocabulary_training_answers_are_skipped(train_config, tmp_path: Path) -> None:
    cfg, dm = build(train_config)
    lines = (dm.txt_db / "train.jsonl").read_text().splitlines()
    record = json.loads(lines[0])
    record["answer"] = "purple"
    (tmp_path / "train.jsonl").write_text("\n".join([json.dumps(record), *lines[1:]]) + "\n")
    (tmp_path / "val.jsonl").write_text(json.dumps(record) + "\n")
    dm.txt_db = tmp_path
    train = dm.build_dataset("train")
    assert dm.skipped_out_of_vocabulary == 1 and train.num_questions == len(lines) - 1
    val = dm.build_dataset("val")
    assert len(val) == 1 and val[0]["labels"] == [IGNORE_LABEL]

    dm.oov_training = "error"  # the original's behaviour: stop, naming the file and answer
    with pytest.raises(ValueError, match=r"train.jsonl: 1 training answers .*'purple'"):
        dm.build_dataset("train")


def test_questions_of_a_video_share_one_item(train_config) -> None:
    _, dm = build(train_config, "task.datamodule.max_texts_per_video=3")
    dataset = dm.build_dataset("val")
    sizes = sorted({len(group) for group in dataset.groups})
    assert sizes == [1, 3]  # 4 questions per demo video -> chunks of 3 and 1
    item = dataset[0]
    assert len({dataset.groups[0][i].video_id for i in range(3)}) == 1
    assert item["frames"].shape[:2] == (1, 2) and len(item["questions"]) == 3
    short = next(i for i, group in enumerate(dataset.groups) if len(group) == 1)
    assert len(dataset[short]["questions"]) == 1  # evaluation: nothing added

    train = dm.build_dataset("train")
    short = next(i for i, group in enumerate(train.groups) if len(group) == 1)
    padded = train[short]  # training: the chunk is filled with its own question, as the original
    assert padded["question_ids"] == [train.groups[short][0].question_id] * 3


def test_group_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_texts_per_video"):
        group_by_video([], 0)


def test_data_ratio_trains_on_the_same_share_for_every_seed(train_config) -> None:
    _, whole = build(train_config)
    _, share = build(train_config, "task.datamodule.data_ratio=0.25", "seed=7")
    everything = whole.load_examples("train")[0]
    kept = share.load_examples("train")[0]
    assert len(kept) == round(0.25 * len(everything))
    assert kept == [e for e in everything if e in kept]  # a subset, in file order
    _, again = build(train_config, "task.datamodule.data_ratio=0.25", "seed=8")
    assert again.load_examples("train")[0] == kept
    assert share.load_examples("val")[0] == whole.load_examples("val")[0]  # training only
    with pytest.raises(InstantiationException, match="task.datamodule.data_ratio must be in"):
        build(train_config, "task.datamodule.data_ratio=0")
