"""Retrieval: evaluation pieces, negatives and the training losses, on tiny models."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from transformers import BertTokenizerFast

from clipbert.data.annotations import CaptionExample
from clipbert.data.batches import PairBatch
from clipbert.data.collate import PairCollator
from clipbert.data.datasets import ImageTextMatchingDataset
from clipbert.data.text import TextTokenizer
from clipbert.demo.generate import write_tokenizer
from clipbert.models.backbone import build_backbone
from clipbert.models.checkpoints import to_original_state_dict
from clipbert.tasks.retrieval import RetrievalTask, sample_hard_negatives, scored_part

NAN = float("nan")


def test_a_limited_evaluation_ranks_only_the_scored_videos() -> None:
    matrix = torch.tensor([[0.9, NAN, 0.1], [0.2, NAN, 0.8], [0.5, NAN, 0.4]])
    text_to_video = torch.tensor([0, 1, 2])
    part, gold = scored_part(matrix, text_to_video)
    assert torch.equal(part, torch.tensor([[0.9, 0.1], [0.5, 0.4]]))  # caption 1: video gone
    assert gold.tolist() == [0, 1]  # video 2 is now column 1


def test_a_complete_matrix_is_kept_as_is() -> None:
    matrix = torch.rand(3, 2)
    part, gold = scored_part(matrix, torch.tensor([0, 1, 1]))
    assert part is matrix and gold.tolist() == [0, 1, 1]


def test_negatives_are_captions_of_other_videos() -> None:
    def read(video_id: str) -> torch.Tensor:
        return torch.zeros(1, 1, 3, 4, 4, dtype=torch.uint8)

    captions = [
        CaptionExample(0, "v0", "two red circle moving horizontally"),
        CaptionExample(1, "v0", "a video of two red circle moving horizontally"),
        CaptionExample(2, "v1", "one blue square standing still"),
        CaptionExample(3, "v2", "three yellow triangle standing still"),
    ]
    torch.manual_seed(0)
    dataset = ImageTextMatchingDataset(captions, read, num_negatives=2)
    drawn = set()
    for _ in range(30):
        item = dataset[0]
        assert item["labels"] == [1, 0, 0] and item["texts"][0] == captions[0].caption
        assert not {captions[0].caption, captions[1].caption} & set(item["texts"][1:])
        drawn.update(item["texts"][1:])
    assert drawn == {captions[2].caption, captions[3].caption}  # drawn afresh each read


def _task(**kwargs: object) -> RetrievalTask:
    backbone = build_backbone(
        {"layers": [1, 1, 1, 1], "stem_width": 8, "width": 4},
        {
            "vocab_size": 20,
            "hidden_size": 16,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "intermediate_size": 32,
            "hidden_dropout_prob": 0.0,
            "attention_probs_dropout_prob": 0.0,
        },
        image_size=None,
    )
    return RetrievalTask(
        backbone, optimizer=torch.optim.AdamW, cnn_lr=1e-4, cnn_weight_decay=0.0, **kwargs
    )


def test_bad_retrieval_settings_are_refused() -> None:
    captions = [CaptionExample(0, "v0", "a"), CaptionExample(1, "v1", "b")]
    with pytest.raises(ValueError, match="num_negatives must be >= 1"):
        ImageTextMatchingDataset(captions, lambda video_id: None, num_negatives=0)
    with pytest.raises(ValueError, match="two videos"):
        ImageTextMatchingDataset(captions[:1], lambda video_id: None)
    with pytest.raises(ValueError, match="ranking_pairs must be >= 1"):
        _task(ranking_pairs=0)
    with pytest.raises(ValueError, match="hard_negatives must be >= 0"):
        _task(hard_negatives=-1)
    with pytest.raises(ValueError, match="mlm_weight must be >= 0"):
        _task(mlm_weight=-1.0)


def test_hard_negatives_follow_the_model_and_skip_the_own_video() -> None:
    log_odds = torch.tensor([[9.0, 0.0, 30.0, 0.0], [0.0, 30.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    allowed = torch.tensor(
        [[True, True, False, True], [True, False, True, True], [False, False, False, True]]
    )
    torch.manual_seed(0)
    for _ in range(20):
        videos, captions = sample_hard_negatives(log_odds, allowed, 1)
        assert videos.tolist() == [0, 1, 2]
        assert captions[0] == 0  # caption 2 scores higher but is the video's own
        assert allowed[videos, captions].all()
    videos, captions = sample_hard_negatives(log_odds, allowed, 2)
    assert videos.tolist() == [0, 0, 1, 1]  # video 2 has a single allowed caption
    assert len(set(captions[:2].tolist())) == 2 and allowed[videos, captions].all()


def _pair_batch() -> PairBatch:
    # videos 0 and 2 are the same video ("a"): video 0 may only be paired with caption of "b"
    return PairBatch(
        frames=torch.rand(3, 1, 1, 3, 64, 64) * 255,
        input_ids=torch.randint(5, 20, (6, 6)),
        attention_mask=torch.ones(6, 6, dtype=torch.long),
        visual_index=torch.tensor([0, 0, 1, 1, 2, 2]),
        labels=torch.tensor([1, 0, 1, 0, 1, 0]),
        video_ids=["a", "b", "a"],
    )


def test_mined_negatives_pair_videos_with_other_videos_captions() -> None:
    torch.manual_seed(0)
    task = _task(hard_negatives=1)
    batch = _pair_batch()
    grid = task.backbone.encode_frames(batch.frames)
    (ids, mask, videos), labels = task._add_hard_negatives(grid, batch)
    assert labels.tolist() == [1, 0, 1, 0, 1, 0, 0, 0, 0]
    assert videos.tolist() == [0, 0, 1, 1, 2, 2, 0, 1, 2]
    positives = batch.input_ids[batch.labels == 1]
    assert torch.equal(ids[6], positives[1]) and torch.equal(ids[8], positives[1])  # only "b"
    assert any(torch.equal(ids[7], positives[c]) for c in (0, 2))
    assert mask.shape == ids.shape


def test_training_step_adds_the_mlm_loss_on_one_cnn_pass(tmp_path: Path) -> None:
    write_tokenizer(tmp_path)
    tokenize = TextTokenizer(BertTokenizerFast.from_pretrained(tmp_path), max_txt_len=12)
    collate = PairCollator(tokenize, mlm_probability=0.5)
    items = [
        {
            "frames": torch.randint(0, 255, (1, 1, 3, 64, 64), dtype=torch.uint8),
            "video_id": f"v{i}",
            "texts": ["one red circle standing still", "two blue square moving vertically"],
            "labels": [1, 0],
        }
        for i in range(3)
    ]
    torch.manual_seed(0)
    batch = collate(items)
    assert batch.mlm_input_ids.shape == (3, 12) and batch.mlm_labels.shape == (3, 12)
    masked = batch.mlm_labels != -100
    positives = batch.input_ids[batch.labels == 1]
    assert masked.any()
    assert torch.equal(batch.mlm_labels[masked], positives[masked])  # targets: the true words
    special = torch.isin(positives, torch.tensor(tokenize.tokenizer.all_special_ids))
    assert not (masked & special).any()  # never [CLS], [SEP] or padding
    assert torch.equal(batch.mlm_input_ids[~masked], positives[~masked])

    task = _task(mlm_weight=1.0)
    vocab_size = task.backbone.bert.config.vocab_size
    batch = replace(
        batch,
        frames=batch.frames.float(),
        input_ids=batch.input_ids % vocab_size,
        mlm_input_ids=batch.mlm_input_ids % vocab_size,
        mlm_labels=batch.mlm_labels.where(~masked, batch.mlm_labels % vocab_size),
    )
    loss = task.training_step(batch, 0)
    loss.backward()
    assert task.mlm_head.decoder.weight is task.backbone.bert.embeddings.word_embeddings.weight
    assert task.mlm_head.transform.dense.weight.grad is not None
    with pytest.raises(ValueError, match="mlm_weight > 0 and task.datamodule.mlm_probability"):
        _task().training_step(batch, 0)
    exported = to_original_state_dict(task.state_dict())  # the original's MLM head names
    assert "transformer.cls.predictions.transform.dense.weight" in exported
