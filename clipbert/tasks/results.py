"""The files a prediction run writes, shared by the tasks: our readable files, plus the
original's result files so scripts written for the original keep working
(reference/clipbert-original.md section 6.3). Metrics come from the tasks' metric objects."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import torch

from clipbert.atomic_files import write_text_atomic
from clipbert.data.datamodule import RankingTexts
from clipbert.metrics import GroupedMean, retrieval_ranks

TOP_K = 5  # candidates listed per prediction


def write_json(path: Path, value: object) -> Path:
    return write_text_atomic(path, json.dumps(value, indent=2) + "\n")


def write_jsonl(path: Path, rows: Sequence[dict]) -> Path:
    return write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in rows))


def percent(value: float) -> float:
    return round(100 * value, 2)


def rounded(metrics: dict[str, torch.Tensor]) -> dict[str, float]:
    return {k: round(float(v), 6) for k, v in metrics.items()}


def original_qa_result(record: dict, answer: str | int | None) -> dict:
    """A question's entry in the original's ``results_all.json``: its predicted ``answer`` (a
    label, or an option index) and its question, gold answer and answer type."""
    return {
        "question_id": record["question_id"],
        "answer": answer,
        "data": {
            "question": record["question"],
            "answer": record["gold"],
            "answer_type": record["answer_type"],
        },
    }


def write_qa_results(
    records: list[dict],
    output_dir: Path | None,
    metric: GroupedMean,
    original_results: list[dict],
) -> tuple[dict[str, float], list[Path]]:
    """predictions.jsonl and metrics.json; the original's results_all.json and, when every
    question has its gold answer, scores.json. The metrics are those the task's ``metric``
    accumulated over the split; questions on unreadable videos are listed, counted wrong and
    counted in ``broken``. ``output_dir`` None: the metrics only, for the other processes of
    a prediction on several devices, which compute them together while one writes."""
    values: dict[str, float] = {}
    scores: dict | None = None
    if records and all(r["gold"] is not None for r in records):
        values = rounded(metric.compute())
        values["broken"] = sum("broken" in r for r in records)
        counts = Counter(r["answer_type"] for r in records)
        scores = {"overall_acc": percent(values[metric.name])}
        for kind in metric.groups:
            scores[f"{kind}_acc"] = percent(values[f"{metric.name}_{kind}"])
        scores["ratios"] = {
            f"{kind}_ratio": [percent(counts[kind] / len(records)), counts[kind]]
            for kind in metric.groups
        }
    if output_dir is None:
        return values, []
    files = [
        write_jsonl(output_dir / "predictions.jsonl", records),
        write_json(output_dir / "results_all.json", original_results),
    ]
    if scores is not None:
        files.append(write_json(output_dir / "scores.json", scores))
    files.append(write_json(output_dir / "metrics.json", values))
    return values, files


def write_ranking_results(
    matrix: torch.Tensor,
    metrics: dict[str, float],
    broken: dict[str, str],
    output_dir: Path,
    texts: RankingTexts,
) -> list[Path]:
    """rankings.jsonl (each caption's top videos and its gold video's rank), metrics.json and
    broken.json (unreadable videos, scored -1 with every caption); the original's results.json
    (every caption-video score, rounded to 4 decimals as it does) and scores.json."""
    top = matrix.topk(min(TOP_K, matrix.shape[1]), dim=1)
    gold_ranks = retrieval_ranks(matrix, texts.text_to_video)["t2v"].tolist()
    rankings = [
        {
            "caption_id": texts.caption_ids[t],
            "caption": texts.captions[t],
            "gold": texts.video_ids[int(texts.text_to_video[t])],
            "gold_rank": gold_ranks[t],
            "top5": [
                {"video_id": texts.video_ids[v], "score": round(s, 6)}
                for v, s in zip(top.indices[t].tolist(), top.values[t].tolist(), strict=True)
            ],
        }
        for t in range(len(texts))
    ]
    results = [
        {"vid_id": video_id, "txt_id": texts.caption_ids[t], "score": round(float(score), 4)}
        for t, row in enumerate(matrix.tolist())
        for video_id, score in zip(texts.video_ids, row, strict=True)
    ]
    original = {
        name: {
            "r1": percent(metrics[f"r1_{d}"]),
            "r5": percent(metrics[f"r5_{d}"]),
            "r10": percent(metrics[f"r10_{d}"]),
            "medianR": metrics[f"median_rank_{d}"],
            "meanR": metrics[f"mean_rank_{d}"],
        }
        for name, d in (("text2video", "t2v"), ("video2text", "v2t"))
    }
    files = [
        write_jsonl(output_dir / "rankings.jsonl", rankings),
        write_json(output_dir / "results.json", results),
        write_json(output_dir / "scores.json", original),
    ]
    if broken:
        files.append(write_json(output_dir / "broken.json", broken))
    files.append(write_json(output_dir / "metrics.json", metrics))
    return files
