"""The pre-training task on videos of several clips: each clip scored, the logits aggregated
over clips; MLM scored on the masked tokens only."""

from __future__ import annotations

import pytest
import torch

from clipbert.data.batches import PretrainBatch
from clipbert.tasks.pretraining import PretrainTask
from tests.models.test_backbone import frames, texts, tiny_backbone


def _task(score_agg: str = "mean", reduction: str = "all_positions") -> PretrainTask:
    return PretrainTask(
        tiny_backbone(image_size=64),
        optimizer=torch.optim.AdamW,
        cnn_lr=1e-3,
        cnn_weight_decay=0.0,
        score_agg=score_agg,
        mlm_loss_reduction=reduction,
    ).eval()


def _batch(clips: int) -> PretrainBatch:
    input_ids, attention_mask = texts(4)
    mlm_labels = torch.full_like(input_ids, -100)
    mlm_labels[[0, 1, 3], [2, 3, 1]] = input_ids[[0, 1, 3], [2, 3, 1]]
    return PretrainBatch(
        frames=frames(2, clips, size=64),
        input_ids=input_ids,
        attention_mask=attention_mask,
        visual_index=torch.tensor([0, 0, 1, 1]),
        mlm_labels=mlm_labels,
        itm_labels=torch.tensor([1, 0, 0, 1]),
    )


@pytest.mark.parametrize("score_agg", ["mean", "lse"])
def test_clips_are_scored_alone_and_their_logits_aggregated(score_agg: str) -> None:
    task, batch = _task(score_agg), _batch(clips=3)
    with torch.no_grad():
        together = task(batch)
        alone = [task(_one_clip(batch, clip)) for clip in range(3)]
    expected_itm = torch.stack([out.itm_scores for out in alone])
    expected_mlm = torch.stack([out.mlm_scores for out in alone])
    reduce = (lambda x: x.mean(0)) if score_agg == "mean" else (lambda x: x.logsumexp(0))
    assert torch.allclose(together.itm_scores, reduce(expected_itm), atol=1e-5)
    assert torch.allclose(together.mlm_scores, reduce(expected_mlm), atol=1e-5)
    assert together.mlm_scores.shape[0] == 3  # the masked tokens only


def _one_clip(batch: PretrainBatch, clip: int) -> PretrainBatch:
    return PretrainBatch(
        frames=batch.frames[:, clip : clip + 1],
        input_ids=batch.input_ids,
        attention_mask=batch.attention_mask,
        visual_index=batch.visual_index,
        mlm_labels=batch.mlm_labels,
        itm_labels=batch.itm_labels,
    )


def test_mlm_losses_are_those_of_the_masked_tokens_and_bad_options_refused() -> None:
    batch = _batch(clips=1)
    with torch.no_grad():
        out = _task()(batch)
    losses = out.mlm_token_losses
    assert losses.shape == (3,)
    assert torch.isclose(
        torch.nn.functional.cross_entropy(out.mlm_scores, batch.mlm_labels[batch.mlm_labels >= 0]),
        losses.mean(),
    )
    with pytest.raises(ValueError, match="mlm_loss_reduction"):
        _task(reduction="sum")


def test_both_losses_off_is_refused() -> None:
    with pytest.raises(ValueError, match="not both 0"):
        PretrainTask(
            tiny_backbone(),
            optimizer=torch.optim.AdamW,
            cnn_lr=1e-3,
            cnn_weight_decay=0.0,
            mlm_weight=0.0,
            itm_weight=0.0,
        )
