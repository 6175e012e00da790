"""QA accuracy and VQA score per answer type (one grouped mean); score columns gathered for
ranking; retrieval ranks and R@K."""

from __future__ import annotations

import pytest
import torch

from clipbert.metrics import (
    GroupedMean,
    ScoreColumns,
    qa_hits,
    retrieval_metrics,
    retrieval_ranks,
    vqa_earned,
)


def test_accuracy_overall_and_per_type() -> None:
    metric = GroupedMean("acc", ["color", "motion"])
    hits = qa_hits(
        torch.tensor([0, 1, 2, 3, 4]),
        torch.tensor([0, 0, 2, -100, 4]),  # the 4th gold answer is outside the vocabulary
    )
    metric.update(hits, ["color", "color", "motion", "motion", "unlisted"])
    values = {k: float(v) for k, v in metric.compute().items()}
    assert values == pytest.approx({"acc": 3 / 5, "acc_color": 0.5, "acc_motion": 0.5})


def test_accumulates_over_updates_and_resets() -> None:
    metric = GroupedMean("acc", ["a"])
    metric.update(qa_hits(torch.tensor([1]), torch.tensor([1])), ["a"])
    metric.update(qa_hits(torch.tensor([1]), torch.tensor([0])), ["a"])
    assert float(metric.compute()["acc_a"]) == 0.5
    metric.reset()
    metric.update(qa_hits(torch.tensor([1]), torch.tensor([1])), ["a"])
    assert float(metric.compute()["acc"]) == 1.0


VQA_TYPES = ["yes/no", "number", "other"]


def _vqa_batch() -> tuple[torch.Tensor, torch.Tensor, list[str | None]]:
    """Seven questions over five labels; the expected score of each is in the comment."""
    target = torch.zeros(7, 5)
    target[0, 0], target[0, 1] = 1.0, 0.3  # predicts 0 -> 1.0
    target[1, 1], target[1, 0] = 0.6, 0.9  # predicts 1 -> 0.6 (not the best answer)
    target[2, 2], target[2, 3] = 0.9, 0.3  # predicts 2 -> 0.9
    target[3, 3] = 1.0  # predicts 4, not a gold answer -> 0
    target[4, 4] = 0.3  # predicts 4 -> 0.3
    target[5, 2] = 1.0  # unlisted type (None), predicts 2 -> 1.0
    # row 6: every gold answer is outside the vocabulary -> all zeros, unlisted type -> 0
    predicted = torch.tensor([0, 1, 2, 4, 4, 2, 0])
    types = ["yes/no", "yes/no", "number", "number", "other", None, "unknown"]
    return predicted, target, types


VQA_EXPECTED = {
    "score": 3.8 / 7,  # the unlisted types count overall only
    "score_yes/no": (1.0 + 0.6) / 2,
    "score_number": (0.9 + 0.0) / 2,
    "score_other": 0.3,
}


def _values(metrics: dict[str, torch.Tensor]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items()}


def _vqa_score(predicted, target, types) -> GroupedMean:
    metric = GroupedMean("score", VQA_TYPES)
    metric.update(vqa_earned(predicted, target), types)
    return metric


def test_vqa_score_soft_scores_per_type() -> None:
    assert _values(_vqa_score(*_vqa_batch()).compute()) == pytest.approx(VQA_EXPECTED)


def test_vqa_score_two_batches_and_merged_states_equal_one_batch() -> None:
    predicted, target, types = _vqa_batch()
    two_updates = _vqa_score(predicted[:3], target[:3], types[:3])
    two_updates.update(vqa_earned(predicted[3:], target[3:]), types[3:])
    assert _values(two_updates.compute()) == pytest.approx(VQA_EXPECTED)

    # the sum states reduce across processes as merge_state does here
    first = _vqa_score(predicted[:4], target[:4], types[:4])
    first.merge_state(_vqa_score(predicted[4:], target[4:], types[4:]))
    assert _values(first.compute()) == pytest.approx(VQA_EXPECTED)


def test_vqa_score_rejects_mismatched_answer_types() -> None:
    predicted, target, types = _vqa_batch()
    with pytest.raises(ValueError, match="answer types"):
        GroupedMean("score", VQA_TYPES).update(vqa_earned(predicted, target), types[:-1])
    with pytest.raises(ValueError, match="target_scores"):
        vqa_earned(predicted[:-1], target)


def test_score_columns_assemble_the_matrix_from_any_order_of_videos() -> None:
    """Columns arrive in batches, in any order, from any process: the matrix puts each video's
    column in its place, and videos never scored stay NaN."""
    matrix = torch.arange(12.0).view(3, 4)  # 3 captions x 4 videos
    columns = ScoreColumns()
    columns.update(torch.tensor([2, 0]), matrix[:, [2, 0]])
    columns.update(torch.tensor([1]), matrix[:, [1]])
    other = ScoreColumns()  # what another process scored, reduced as the gather does
    other.update(torch.tensor([3]), matrix[:, [3]])
    columns.merge_state(other)
    torch.testing.assert_close(columns.matrix(3, 4), matrix)
    partial = ScoreColumns()
    partial.update(torch.tensor([1]), matrix[:, [1]])
    got = partial.matrix(3, 4)
    assert got[:, [0, 2, 3]].isnan().all() and torch.equal(got[:, 1], matrix[:, 1])
    with pytest.warns(UserWarning, match="before the ``update``"):  # torchmetrics says so
        assert ScoreColumns().matrix(3, 4).isnan().all()  # a process that scored nothing
    with pytest.raises(ValueError, match="captions"):
        columns.update(torch.tensor([0, 1]), matrix[:, :1])


def test_retrieval_3x3_by_hand() -> None:
    scores = torch.tensor(
        [
            [0.9, 0.5, 0.8],
            [0.8, 0.7, 0.2],
            [0.3, 0.6, 0.4],
        ]
    )
    gold = torch.tensor([0, 1, 2])
    ranks = retrieval_ranks(scores, gold)
    # rows: 0.9 is top; 0.8 > 0.7; 0.6 > 0.4
    assert ranks["t2v"].tolist() == [1, 2, 2]
    # columns: 0.9 is top; 0.7 is top; 0.8 > 0.4
    assert ranks["v2t"].tolist() == [1, 1, 2]
    assert retrieval_metrics(scores, gold) == pytest.approx(
        {
            "r1_t2v": 1 / 3,
            "r5_t2v": 1.0,
            "r10_t2v": 1.0,
            "median_rank_t2v": 2.0,
            "mean_rank_t2v": 5 / 3,
            "r1_v2t": 2 / 3,
            "r5_v2t": 1.0,
            "r10_v2t": 1.0,
            "median_rank_v2t": 1.0,
            "mean_rank_v2t": 4 / 3,
        }
    )


def test_retrieval_recall_at_5_even_median_and_ties() -> None:
    row = torch.tensor([0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1])
    scores = torch.stack([row, row])
    gold = torch.tensor([5, 0])  # ranks 6 and 1
    ranks = retrieval_ranks(scores, gold)
    assert ranks["t2v"].tolist() == [6, 1]
    # the columns tie; the lower text index ranks first: text 1 is 2nd in column 0
    assert ranks["v2t"].tolist() == [2, 1]  # videos 0 and 5; the others have no caption
    metrics = retrieval_metrics(scores, gold)
    assert metrics["r1_t2v"] == metrics["r5_t2v"] == 0.5
    assert metrics["r10_t2v"] == 1.0
    assert metrics["median_rank_t2v"] == 3.5  # mean of the two middle ranks, as np.median
    assert metrics["mean_rank_t2v"] == 3.5


def test_retrieval_ties_use_stable_order() -> None:
    scores = torch.tensor(
        [
            [0.5, 0.5, 0.1],  # gold 1 ties with the lower-index video 0 -> rank 2
            [0.5, 0.5, 0.1],  # gold 0 ties with the higher-index video 1 -> rank 1
            [0.9, 0.5, 0.5],  # gold 2: one strictly greater, one equal before it -> rank 3
        ]
    )
    ranks = retrieval_ranks(scores, torch.tensor([1, 0, 2]))
    assert ranks["t2v"].tolist() == [2, 1, 3]
    # columns: video 0 [0.5, 0.5, 0.9] gold text 1 -> 3; video 1 [0.5, 0.5, 0.5] gold text 0
    # -> 1; video 2 [0.1, 0.1, 0.5] gold text 2 -> 1
    assert ranks["v2t"].tolist() == [3, 1, 1]


def test_retrieval_ranks_match_the_counting_rule_on_random_ties() -> None:
    generator = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 4, (9, 6), generator=generator).float() / 4  # many ties
    gold = torch.randint(0, 6, (9,), generator=generator)
    expected = []
    for t, v in enumerate(gold.tolist()):
        row, s = scores[t], scores[t, v]
        expected.append(1 + int((row > s).sum()) + int((row[:v] == s).sum()))
    assert retrieval_ranks(scores, gold)["t2v"].tolist() == expected


def test_retrieval_v2t_several_captions_take_the_best() -> None:
    scores = torch.tensor(
        [
            [0.9, 0.8],
            [0.2, 0.7],
            [0.95, 0.3],
            [0.1, 0.6],
        ]
    )
    gold = torch.tensor([0, 0, 1, 1])
    # video 0 column [0.9, 0.2, 0.95, 0.1]: texts 0, 1 rank 2, 3 -> 2 (the original's "last
    # caption" rule would give 3); video 1 column [0.8, 0.7, 0.3, 0.6]: texts 2, 3 rank 4, 3 -> 3
    assert retrieval_ranks(scores, gold)["v2t"].tolist() == [2, 3]
    metrics = retrieval_metrics(scores, gold)
    assert metrics["r1_v2t"] == 0.0
    assert metrics["median_rank_v2t"] == metrics["mean_rank_v2t"] == 2.5


def test_retrieval_video_without_caption_is_left_out_of_v2t() -> None:
    scores = torch.tensor([[0.1, 0.9, 0.5], [0.2, 0.3, 0.8]])
    gold = torch.tensor([0, 2])  # video 1 has no caption
    ranks = retrieval_ranks(scores, gold)
    assert ranks["t2v"].tolist() == [3, 1]
    assert ranks["v2t"].tolist() == [2, 1]  # videos 0 and 2 only
    metrics = retrieval_metrics(scores, gold)
    assert metrics["r1_v2t"] == 0.5
    assert metrics["mean_rank_v2t"] == 1.5


def test_retrieval_rejects_bad_inputs() -> None:
    with pytest.raises(ValueError, match="out of range"):
        retrieval_ranks(torch.zeros(2, 2), torch.tensor([0, 2]))
    with pytest.raises(ValueError, match="expected scores"):
        retrieval_ranks(torch.zeros(2, 2), torch.tensor([0]))
