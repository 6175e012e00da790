"""Retrieval evaluation pieces that need no model."""

from __future__ import annotations

import pytest
import torch

from clipbert.data.annotations import CaptionExample
from clipbert.data.datasets import ImageTextMatchingDataset
from clipbert.models.backbone import build_backbone
from clipbert.tasks.retrieval import RetrievalTask, scored_part

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


def test_bad_retrieval_settings_are_refused() -> None:
    captions = [CaptionExample(0, "v0", "a"), CaptionExample(1, "v1", "b")]
    with pytest.raises(ValueError, match="num_negatives must be >= 1"):
        ImageTextMatchingDataset(captions, lambda video_id: None, num_negatives=0)
    with pytest.raises(ValueError, match="two videos"):
        ImageTextMatchingDataset(captions[:1], lambda video_id: None)
    backbone = build_backbone(
        {"layers": [1, 1, 1, 1], "stem_width": 8, "width": 4},
        {
            "vocab_size": 20,
            "hidden_size": 16,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "intermediate_size": 32,
        },
    )
    with pytest.raises(ValueError, match="ranking_pairs must be >= 1"):
        RetrievalTask(
            backbone,
            ranking_pairs=0,
            optimizer=torch.optim.AdamW,
            cnn_lr=1e-4,
            cnn_weight_decay=0.0,
        )
