"""QA accuracy per answer type."""

from __future__ import annotations

import pytest
import torch

from clipbert.metrics import QAAccuracy


def test_accuracy_overall_and_per_type() -> None:
    metric = QAAccuracy(["color", "motion"])
    metric.update(
        torch.tensor([0, 1, 2, 3, 4]),
        torch.tensor([0, 0, 2, -100, 4]),  # the 4th gold answer is outside the vocabulary
        ["color", "color", "motion", "motion", "unlisted"],
    )
    values = {k: float(v) for k, v in metric.compute().items()}
    assert values == pytest.approx({"acc": 3 / 5, "acc_color": 0.5, "acc_motion": 0.5})


def test_accumulates_over_updates_and_resets() -> None:
    metric = QAAccuracy(["a"])
    metric.update(torch.tensor([1]), torch.tensor([1]), ["a"])
    metric.update(torch.tensor([1]), torch.tensor([0]), ["a"])
    assert float(metric.compute()["acc_a"]) == 0.5
    metric.reset()
    metric.update(torch.tensor([1]), torch.tensor([1]), ["a"])
    assert float(metric.compute()["acc"]) == 1.0
