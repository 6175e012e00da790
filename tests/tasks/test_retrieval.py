"""Retrieval evaluation pieces that need no model."""

from __future__ import annotations

import torch

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
