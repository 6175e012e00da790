"""What a prediction report shows, read back from the files ``predict.py`` wrote: each example
with its verdict and confidence, and the split's summary (metrics, per-type accuracy, confused
answers, calibration, gold ranks). Reading the written files, not the model's outputs, keeps
the page equal to ``predictions.jsonl`` / ``rankings.jsonl`` and ``metrics.json`` by
construction."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

CALIBRATION_BINS = 10
CONFUSED_PAIRS = 10


@dataclass
class ReportData:
    """``kind``: ``qa`` (open-ended), ``mc`` (multiple choice) or ``ranking``."""

    kind: str
    examples: list[dict]
    metrics: dict[str, float]
    answer_types: list[str] = field(default_factory=list)
    confused: list[tuple[str, str, int]] = field(default_factory=list)  # gold, predicted, count
    calibration: list[tuple[float, float, int]] = field(default_factory=list)  # conf, acc, n
    gold_ranks: list[int] = field(default_factory=list)


def read_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def record_kind(record: dict) -> str:
    return "mc" if "options" in record else "qa"


def candidates(record: dict) -> list[dict]:
    """A question's scored candidates, best first: ``{"label", "prob"}``."""
    if "scores" in record:  # retrieval's multiple choice: every option's p(match)
        ranked = sorted(enumerate(record["scores"]), key=lambda pair: -pair[1])
        return [{"label": record["options"][i], "prob": p, "option": i} for i, p in ranked]
    if "options" in record:
        return [
            {"label": record["options"][c["option"]], "prob": c["prob"], "option": c["option"]}
            for c in record.get("top5", [])
        ]
    return [{"label": c["answer"], "prob": c["prob"]} for c in record.get("top5", [])]


def verdict(record: dict) -> bool | None:
    """Right or wrong; None without a gold answer. Image QA (soft VQA scores): right when
    the predicted answer earns a score."""
    prediction, gold = record.get("prediction"), record.get("gold")
    if "gold_scores" in record:
        return record["gold_scores"].get(prediction, 0) > 0
    if gold is None:
        return None
    return prediction is not None and prediction == gold


def qa_example(record: dict) -> dict:
    """One question as the page lists it; ``correct`` None when there is no gold answer."""
    scored = candidates(record)
    gold = record.get("gold")
    prediction = record.get("prediction")
    options = record.get("options")
    return {
        "id": str(record["question_id"]),
        "video": record.get("video_id"),
        "text": record["question"],
        "type": record.get("answer_type") or "",
        "candidates": scored,
        "prediction": options[prediction] if options and prediction is not None else prediction,
        "gold": options[gold] if options and isinstance(gold, int) else gold,
        "correct": verdict(record),
        "confidence": scored[0]["prob"] if scored else 0.0,
        "broken": record.get("broken"),
    }


def ranking_example(record: dict) -> dict:
    return {
        "id": str(record["caption_id"]),
        "text": record["caption"],
        "gold": record["gold"],
        "rank": record.get("gold_rank"),
        "top": record["top5"],
        "correct": record["top5"][0]["video_id"] == record["gold"] if record["top5"] else False,
        "confidence": record["top5"][0]["score"] if record["top5"] else 0.0,
    }


def confused_pairs(examples: list[dict]) -> list[tuple[str, str, int]]:
    """The most frequent (gold, predicted) pairs among wrong answers."""
    wrong = Counter(
        (str(e["gold"]), str(e["prediction"]))
        for e in examples
        if e["correct"] is False and e["prediction"] is not None
    )
    return [(gold, predicted, n) for (gold, predicted), n in wrong.most_common(CONFUSED_PAIRS)]


def calibration(examples: list[dict]) -> list[tuple[float, float, int]]:
    """Per confidence bin with examples: mean confidence, accuracy, count."""
    bins: list[list[dict]] = [[] for _ in range(CALIBRATION_BINS)]
    for e in examples:
        if e["correct"] is not None:
            bins[min(int(e["confidence"] * CALIBRATION_BINS), CALIBRATION_BINS - 1)].append(e)
    return [
        (
            sum(e["confidence"] for e in members) / len(members),
            sum(bool(e["correct"]) for e in members) / len(members),
            len(members),
        )
        for members in bins
        if members
    ]


def read_report_data(output_dir: Path) -> ReportData:
    """The report of a prediction folder (``predictions.jsonl`` or ``rankings.jsonl``, and
    ``metrics.json``)."""
    metrics_path = output_dir / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
    rankings = output_dir / "rankings.jsonl"
    if rankings.exists():
        examples = [ranking_example(r) for r in read_jsonl(rankings)]
        ranks = [e["rank"] for e in examples if e["rank"] is not None]
        return ReportData("ranking", examples, metrics, gold_ranks=ranks)
    predictions = output_dir / "predictions.jsonl"
    if not predictions.exists():
        raise FileNotFoundError(
            f"{output_dir} has neither predictions.jsonl nor rankings.jsonl: "
            "give the folder predict.py wrote"
        )
    records = read_jsonl(predictions)
    examples = [qa_example(r) for r in records]
    kind = record_kind(records[0]) if records else "qa"
    types = sorted({e["type"] for e in examples if e["type"]})
    return ReportData(
        kind,
        examples,
        metrics,
        answer_types=types,
        confused=confused_pairs(examples),
        calibration=calibration(examples),
    )
