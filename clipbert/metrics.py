"""Task metrics as torchmetrics objects, so they reduce correctly across processes."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchmetrics import Metric


class QAAccuracy(Metric):
    """Accuracy overall and per answer type (``acc``, ``acc_<type>``).

    A gold answer outside the vocabulary (label < 0) can never be predicted, so it counts as
    wrong, as in the original's string comparison. Questions whose type is not listed count
    only in the overall accuracy.
    """

    full_state_update = False

    def __init__(self, answer_types: Sequence[str] = ()) -> None:
        super().__init__()
        self.answer_types = list(answer_types)
        self._type_index = {name: i for i, name in enumerate(self.answer_types)}
        slots = len(self.answer_types) + 1  # the last slot collects unlisted types
        self.add_state("correct", torch.zeros(slots, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", torch.zeros(slots, dtype=torch.long), dist_reduce_fx="sum")

    def update(
        self, predicted: torch.Tensor, target: torch.Tensor, answer_types: Sequence[str | None]
    ) -> None:
        other = len(self.answer_types)
        slots = torch.tensor(
            [self._type_index.get(t, other) for t in answer_types], device=self.correct.device
        )
        hits = ((predicted == target) & (target >= 0)).long()
        self.correct.scatter_add_(0, slots, hits)
        self.total.scatter_add_(0, slots, torch.ones_like(hits))

    def compute(self) -> dict[str, torch.Tensor]:
        total = self.total.sum().clamp(min=1)
        metrics = {"acc": self.correct.sum().float() / total}
        for name, i in self._type_index.items():
            metrics[f"acc_{name}"] = self.correct[i].float() / self.total[i].clamp(min=1)
        return metrics
