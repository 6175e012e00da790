"""Retrieval evaluation pieces that need no model."""

from __future__ import annotations

import torch

from clipbert.data.annotations import CaptionExample
from clipbert.data.datasets import ImageTextMatchingDataset
from clipbert.tasks.retrieval import scored_part

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


def _captions() -> list[CaptionExample]:
    texts = {
        "v0": "two red circle moving horizontally",
        "v1": "two red circle moving vertically",  # one word away from v0's
        "v2": "one blue square standing still",
        "v3": "three yellow triangle standing still",
    }
    return [CaptionExample(i, video, text) for i, (video, text) in enumerate(texts.items())]


def test_negatives_come_from_other_videos_and_can_be_hard() -> None:
    def read(video_id: str) -> torch.Tensor:
        return torch.zeros(1, 1, 3, 4, 4, dtype=torch.uint8)

    torch.manual_seed(0)
    random_negatives = ImageTextMatchingDataset(_captions(), read, num_negatives=2)
    for _ in range(20):
        item = random_negatives[0]
        assert item["labels"] == [1, 0, 0] and item["texts"][0] == _captions()[0].caption
        assert _captions()[0].caption not in item["texts"][1:]
    hard = ImageTextMatchingDataset(_captions(), read, negative_candidates=50)
    assert all(hard[0]["texts"][1] == _captions()[1].caption for _ in range(10))
