"""What ``predict.py`` writes: our readable files, plus the original's result files so scripts
written for the original keep working (reference/clipbert-original.md section 6.3)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import torch

from clipbert.data.datamodule import RankingTexts
from clipbert.files import write_text_atomic
from clipbert.metrics import QAAccuracy, VQAScore, retrieval_metrics


def _write_json(path: Path, value: object) -> Path:
    return write_text_atomic(path, json.dumps(value, indent=2) + "\n")


def _percent(value: float) -> float:
    return round(100 * value, 2)


def score_qa_records(records: list[dict], answer_types: list[str]) -> dict[str, float]:
    """Accuracy (or the VQA score) overall and per answer type, from the written predictions.

    As the original, a prediction is right when it equals the gold answer string (open-ended;
    an answer outside the vocabulary is never right) or option index (multiple choice). Image
    QA records carry ``gold_scores``: a prediction earns its gold soft score, or 0.
    """
    kinds = [r["answer_type"] for r in records]
    if "gold_scores" in records[0]:
        metric = VQAScore(answer_types)
        earned = torch.tensor([[r["gold_scores"].get(r["prediction"], 0.0)] for r in records])
        metric.update(torch.zeros(len(records), dtype=torch.long), earned, kinds)
    else:
        metric = QAAccuracy(answer_types)
        hits = torch.tensor([int(r["prediction"] == r["gold"]) for r in records])
        metric.update(hits, torch.ones_like(hits), kinds)
    return {k: round(float(v), 6) for k, v in metric.compute().items()}


def write_qa(
    records: list[dict],
    output_dir: Path,
    answer_vocabulary: list[str] | None,
    answer_types: list[str],
) -> tuple[dict[str, float], list[Path]]:
    """predictions.jsonl and metrics.json; the original's results_all.json and scores.json."""
    files = [
        write_text_atomic(
            output_dir / "predictions.jsonl", "".join(json.dumps(r) + "\n" for r in records)
        )
    ]
    image_qa = bool(records) and "gold_scores" in records[0]
    label = {a: i for i, a in enumerate(answer_vocabulary or [])}
    if image_qa:  # the VQA submission format, as the original writes it
        original: list[dict] = [
            {"question_id": r["question_id"], "answer": r["prediction"]} for r in records
        ]
    else:
        original = [
            {
                "question_id": r["question_id"],
                "answer": label.get(r["prediction"]) if answer_vocabulary else r["prediction"],
                "data": {
                    "question": r["question"],
                    "answer": r["gold"],
                    "answer_type": r["answer_type"],
                },
            }
            for r in records
        ]
    files.append(_write_json(output_dir / "results_all.json", original))
    metrics: dict[str, float] = {}
    if records and all(r["gold"] is not None for r in records):
        metrics = score_qa_records(records, answer_types)
        metrics["broken"] = sum("broken" in r for r in records)  # listed, counted wrong
        counts = Counter(r["answer_type"] for r in records)
        name = "score" if image_qa else "acc"
        scores: dict = {"overall_acc": _percent(metrics[name])}
        for kind in answer_types:
            scores[f"{kind}_acc"] = _percent(metrics[f"{name}_{kind}"])
        scores["ratios"] = {
            f"{kind}_ratio": [_percent(counts[kind] / len(records)), counts[kind]]
            for kind in answer_types
        }
        files.append(_write_json(output_dir / "scores.json", scores))
    files.append(_write_json(output_dir / "metrics.json", metrics))
    return metrics, files


def write_retrieval_mc(records: list[dict], output_dir: Path, metrics: dict) -> list[Path]:
    """The original's run_msrvtt_mc.py files: ``{qid: option}`` and the accuracy as text."""
    files = [
        _write_json(
            output_dir / "mc_test_results.json",
            {str(r["question_id"]): r["prediction"] for r in records},
        )
    ]
    if "acc" in metrics:
        accuracy = {"mc_accuracy": f"{100 * metrics['acc']:.2f}"}
        files.append(_write_json(output_dir / "mc_test_scores.json", accuracy))
    return files


def score_matrix(batches: list[dict], num_videos: int) -> torch.Tensor:
    """Assemble predict-step columns into the (num_texts, num_videos) score matrix."""
    indices = torch.cat([b["indices"] for b in batches])
    scores = torch.cat([b["scores"] for b in batches], dim=1)
    matrix = torch.full((scores.shape[0], num_videos), float("nan"))
    matrix[:, indices] = scores
    return matrix


def write_retrieval(
    batches: list[dict], output_dir: Path, texts: RankingTexts, top_k: int = 5
) -> tuple[dict[str, float], list[Path]]:
    """rankings.jsonl (each caption's top videos) and metrics.json; the original's results.json
    (every caption-video score, rounded to 4 decimals as it does) and scores.json."""
    matrix = score_matrix(batches, len(texts.video_ids))
    top = matrix.topk(min(top_k, matrix.shape[1]), dim=1)
    rankings = [
        {
            "caption_id": texts.caption_ids[t],
            "caption": texts.captions[t],
            "gold": texts.video_ids[int(texts.text_to_video[t])],
            "top5": [
                {"video_id": texts.video_ids[v], "score": round(s, 6)}
                for v, s in zip(top.indices[t].tolist(), top.values[t].tolist(), strict=True)
            ],
        }
        for t in range(len(texts))
    ]
    files = [
        write_text_atomic(
            output_dir / "rankings.jsonl", "".join(json.dumps(r) + "\n" for r in rankings)
        )
    ]
    results = [
        {"vid_id": video_id, "txt_id": texts.caption_ids[t], "score": round(float(score), 4)}
        for t, row in enumerate(matrix.tolist())
        for video_id, score in zip(texts.video_ids, row, strict=True)
    ]
    files.append(_write_json(output_dir / "results.json", results))
    metrics = retrieval_metrics(matrix, texts.text_to_video)
    original = {
        name: {
            "r1": _percent(metrics[f"r1_{d}"]),
            "r5": _percent(metrics[f"r5_{d}"]),
            "r10": _percent(metrics[f"r10_{d}"]),
            "medianR": metrics[f"median_rank_{d}"],
            "meanR": metrics[f"mean_rank_{d}"],
        }
        for name, d in (("text2video", "t2v"), ("video2text", "v2t"))
    }
    files.append(_write_json(output_dir / "scores.json", original))
    broken = {video: reason for b in batches for video, reason in b.get("broken", {}).items()}
    if broken:  # scored -1 with every caption: never retrieved, their captions miss
        files.append(_write_json(output_dir / "broken.json", broken))
    metrics["broken"] = len(broken)
    files.append(_write_json(output_dir / "metrics.json", metrics))
    return metrics, files
