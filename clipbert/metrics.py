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


class VQAScore(Metric):
    """VQA score overall and per answer type (``score``, ``score_<type>``), as fractions 0..1.

    Each question earns the soft score of its predicted label in its dense ground-truth target
    (the same (B, num_labels) vector the BCE loss trains on), so a prediction outside the
    annotated answers earns 0; answers outside the vocabulary are simply absent from the target.
    With min(#humans/3, 1)-style scores this is the standard VQA score. Questions whose type is
    not listed count only in the overall score.
    """

    full_state_update = False

    def __init__(self, answer_types: Sequence[str] = ("yes/no", "number", "other")) -> None:
        super().__init__()
        self.answer_types = list(answer_types)
        self._type_index = {name: i for i, name in enumerate(self.answer_types)}
        slots = len(self.answer_types) + 1  # the last slot collects unlisted types
        self.add_state("score_sum", torch.zeros(slots), dist_reduce_fx="sum")
        self.add_state("total", torch.zeros(slots, dtype=torch.long), dist_reduce_fx="sum")

    def update(
        self,
        predicted: torch.Tensor,
        target_scores: torch.Tensor,
        answer_types: Sequence[str | None],
    ) -> None:
        if target_scores.dim() != 2 or predicted.shape != target_scores.shape[:1]:
            raise ValueError(
                f"expected predicted (B,) and target_scores (B, C), got "
                f"{tuple(predicted.shape)} and {tuple(target_scores.shape)}"
            )
        if len(answer_types) != len(predicted):
            # scatter_add_ would silently drop the questions beyond a shorter index
            raise ValueError(f"{len(answer_types)} answer types for {len(predicted)} questions")
        other = len(self.answer_types)
        slots = torch.tensor(
            [self._type_index.get(t, other) for t in answer_types],
            dtype=torch.long,
            device=self.total.device,
        )
        earned = target_scores.gather(1, predicted.long().unsqueeze(1)).squeeze(1)
        self.score_sum.scatter_add_(0, slots, earned.to(self.score_sum))
        self.total.scatter_add_(0, slots, torch.ones_like(slots))

    def compute(self) -> dict[str, torch.Tensor]:
        total = self.total.sum().clamp(min=1)
        metrics = {"score": self.score_sum.sum() / total}
        for name, i in self._type_index.items():
            metrics[f"score_{name}"] = self.score_sum[i] / self.total[i].clamp(min=1)
        return metrics


def _stable_ranks(scores: torch.Tensor) -> torch.Tensor:
    """1-indexed rank of every entry within its row, by a stable descending sort.

    rank = 1 + #(strictly greater in the row) + #(equal with a lower column index). The original
    used an unstable ``torch.sort``, whose tie order is unspecified; ties do occur there because
    scores are rounded to 4 decimals, so we fix the order to make results reproducible.
    """
    order = scores.sort(dim=1, descending=True, stable=True).indices
    positions = torch.arange(1, scores.shape[1] + 1, device=scores.device)
    return torch.empty_like(order).scatter_(1, order, positions.expand_as(order))


def retrieval_ranks(scores: torch.Tensor, text_to_video: torch.Tensor) -> dict[str, torch.Tensor]:
    """1-indexed rank of the gold item per query, for both retrieval directions.

    Args:
        scores: (num_texts, num_videos) matching scores, higher = better match.
        text_to_video: (num_texts,) index of each caption's gold video.

    Returns:
        ``t2v``: (num_texts,) rank of each caption's gold video within its row.
        ``v2t``: (num_captioned_videos,) for each video that has at least one caption, in
        ascending video index, the rank of its best-ranked gold caption within its column.
        Videos without a caption have no gold answer and are left out.

    The original assumed one caption per video and took the last caption of a video as its gold
    (an inverted caption->video dict); with one caption per video both rules agree. Ties are
    broken by a stable descending sort (see ``_stable_ranks``): among equal scores the lower
    index ranks first.
    """
    if scores.dim() != 2 or text_to_video.shape != scores.shape[:1]:
        raise ValueError(
            f"expected scores (T, V) and text_to_video (T,), got "
            f"{tuple(scores.shape)} and {tuple(text_to_video.shape)}"
        )
    num_texts, num_videos = scores.shape
    if num_texts == 0 or num_videos == 0:
        raise ValueError("empty score matrix")
    text_to_video = text_to_video.to(device=scores.device, dtype=torch.long)
    if text_to_video.min() < 0 or text_to_video.max() >= num_videos:
        raise ValueError(f"text_to_video out of range for {num_videos} videos")

    t2v = _stable_ranks(scores).gather(1, text_to_video.unsqueeze(1)).squeeze(1)
    # rank of each caption within its gold video's column, then the best one per video
    caption_ranks = _stable_ranks(scores.t())[
        text_to_video, torch.arange(num_texts, device=scores.device)
    ]
    best = torch.full((num_videos,), num_texts + 1, dtype=torch.long, device=scores.device)
    best.scatter_reduce_(0, text_to_video, caption_ranks, reduce="amin")
    captioned = torch.bincount(text_to_video, minlength=num_videos) > 0
    return {"t2v": t2v, "v2t": best[captioned]}


def _rank_summary(ranks: torch.Tensor, direction: str, ks: Sequence[int]) -> dict[str, float]:
    """R@K (fraction of queries with the gold item in the top K), median and mean rank."""
    metrics = {f"r{k}_{direction}": (ranks <= k).double().mean().item() for k in ks}
    ordered = ranks.sort().values.double()
    n = len(ordered)
    # the mean of the two middle ranks for an even count, as np.median in the original
    metrics[f"median_rank_{direction}"] = ((ordered[(n - 1) // 2] + ordered[n // 2]) / 2).item()
    metrics[f"mean_rank_{direction}"] = ordered.mean().item()
    return metrics


def retrieval_metrics(
    scores: torch.Tensor, text_to_video: torch.Tensor, ks: Sequence[int] = (1, 5, 10)
) -> dict[str, float]:
    """Text->video and video->text R@K (fractions 0..1), median and mean rank (1-indexed).

    Keys (the project's metric vocabulary): ``r1_t2v``, ``r5_t2v``, ``r10_t2v``,
    ``median_rank_t2v``, ``mean_rank_t2v`` and the same with ``_v2t``. A plain function
    rather than a Metric: the score matrix is assembled once, at the end of evaluation. Rank
    rules (ties, several captions per video) as in ``retrieval_ranks``.
    """
    ranks = retrieval_ranks(scores, text_to_video)
    return {
        **_rank_summary(ranks["t2v"], "t2v", ks),
        **_rank_summary(ranks["v2t"], "v2t", ks),
    }
