"""Task metrics as torchmetrics objects, so they reduce correctly across processes."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat


class GroupedMean(Metric):
    """The mean of per-question values, overall and per group (``name``, ``name_<group>``).

    With 1/0 values (:func:`qa_hits`) it is accuracy per answer type; with the soft score each
    prediction earns (:func:`vqa_earned`) it is the VQA score per answer type. Questions whose
    group is not listed count only in the overall mean. Sums reduce across processes.
    """

    full_state_update = False

    def __init__(self, name: str, groups: Sequence[str] = ()) -> None:
        super().__init__()
        self.name = name
        self.groups = list(groups)
        self._group_index = {group: i for i, group in enumerate(self.groups)}
        slots = len(self.groups) + 1  # the last slot collects unlisted groups
        self.add_state("value_sum", torch.zeros(slots, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("total", torch.zeros(slots, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, values: torch.Tensor, groups: Sequence[str | None]) -> None:
        if values.dim() != 1 or len(groups) != len(values):
            # scatter_add_ would silently drop the values beyond a shorter index
            raise ValueError(f"{len(groups)} answer types for {tuple(values.shape)} values")
        other = len(self.groups)
        slots = torch.tensor(
            [self._group_index.get(g, other) for g in groups],
            dtype=torch.long,
            device=self.total.device,
        )
        self.value_sum.scatter_add_(0, slots, values.to(self.value_sum))
        self.total.scatter_add_(0, slots, torch.ones_like(slots))

    def compute(self) -> dict[str, torch.Tensor]:
        metrics = {self.name: (self.value_sum.sum() / self.total.sum().clamp(min=1)).float()}
        for group, i in self._group_index.items():
            metrics[f"{self.name}_{group}"] = (
                self.value_sum[i] / self.total[i].clamp(min=1)
            ).float()
        return metrics


def qa_hits(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 where the prediction is the gold label, else 0. A gold answer outside the vocabulary
    (label < 0) can never be predicted, so it counts as wrong, as in the original's string
    comparison."""
    return ((predicted == target) & (target >= 0)).long()


def vqa_earned(predicted: torch.Tensor, target_scores: torch.Tensor) -> torch.Tensor:
    """The soft score each question earns: its predicted label's entry in its dense gold
    target (the (B, num_labels) vector the BCE loss trains on), so a prediction outside the
    annotated answers earns 0. With min(#humans/3, 1)-style scores this is the VQA score."""
    if target_scores.dim() != 2 or predicted.shape != target_scores.shape[:1]:
        raise ValueError(
            f"expected predicted (B,) and target_scores (B, C), got "
            f"{tuple(predicted.shape)} and {tuple(target_scores.shape)}"
        )
    return target_scores.gather(1, predicted.long().unsqueeze(1)).squeeze(1)


class ScoreColumns(Metric):
    """Columns of the caption x video score matrix, as the evaluation scores them.

    Each update adds the scores of some videos against every caption; across processes the
    columns are concatenated (uneven shards are fine), so ``compute`` returns the whole
    matrix's columns in every process: the video indices and their scores
    (videos, captions). States are flat float tensors so that a process that scored nothing
    still joins the gather.
    """

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("video_indices", default=[], dist_reduce_fx="cat")
        self.add_state("scores", default=[], dist_reduce_fx="cat")

    def update(self, video_indices: torch.Tensor, scores: torch.Tensor) -> None:
        """``scores`` (captions, videos) of the videos ``video_indices`` (videos,)."""
        if scores.dim() != 2 or scores.shape[1] != len(video_indices):
            raise ValueError(
                f"expected scores (captions, {len(video_indices)}), got {tuple(scores.shape)}"
            )
        self.video_indices.append(video_indices.float())  # exact below 2**24 videos
        self.scores.append(scores.float().t().flatten())

    def compute(self) -> tuple[torch.Tensor, torch.Tensor]:
        if not len(self.video_indices):  # a list before the gather, a tensor after it
            return torch.zeros(0, dtype=torch.long), torch.zeros(0, 0)
        indices = dim_zero_cat(self.video_indices).long()
        return indices, dim_zero_cat(self.scores).view(len(indices), -1)

    def matrix(self, num_texts: int, num_videos: int) -> torch.Tensor:
        """The (num_texts, num_videos) matrix on the CPU; unscored videos are NaN columns."""
        indices, scores = self.compute()
        indices = indices.cpu().reshape(-1)  # torchmetrics squeezes a one-element result
        matrix = torch.full((num_texts, num_videos), float("nan"))
        if len(indices):
            matrix[:, indices] = scores.cpu().reshape(len(indices), num_texts).t()
        return matrix


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
