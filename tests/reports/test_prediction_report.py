"""The pieces of report.html: thumbnails, the data read back from prediction files, the page."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from clipbert.reports.prediction_data import calibration, read_report_data, verdict
from clipbert.reports.prediction_page import embedded_json, write_prediction_report
from clipbert.reports.thumbnails import thumbnail_height, video_thumbnails


def image_of(uri: str) -> Image.Image:
    assert uri.startswith("data:image/jpeg;base64,")
    return Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))


def test_thumbnails_keep_aspect_clip_grouping_and_times() -> None:
    clips = torch.randint(0, 256, (3, 2, 3, 120, 160), dtype=torch.uint8)
    times = [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]
    thumbs = video_thumbnails(clips, times)
    assert [len(clip) for clip in thumbs] == [2, 2, 2]
    assert [f["t"] for clip in thumbs for f in clip] == times
    image = image_of(thumbs[0][0]["src"])
    assert image.size == (75, thumbnail_height(6)) == (75, 56)  # 160x120 at 56 px high
    # no times (an unreadable video's placeholder): frames without one, never an error
    assert all(f["t"] is None for clip in video_thumbnails(clips, []) for f in clip)


def test_thumbnails_shrink_as_frames_grow_and_never_enlarge() -> None:
    heights = [thumbnail_height(n) for n in (1, 4, 8, 16, 32)]
    assert heights == sorted(heights, reverse=True) and heights[-1] >= 32
    tiny = torch.zeros((1, 1, 3, 20, 30), dtype=torch.uint8)
    assert image_of(video_thumbnails(tiny, [0.0])[0][0]["src"]).size == (30, 20)


def test_a_sixteen_clip_video_costs_tens_of_kilobytes() -> None:
    """1,000 such videos stay within a few tens of MB."""
    frames = torch.randint(0, 256, (16, 2, 3, 240, 320), dtype=torch.uint8)
    size = sum(len(f["src"]) for clip in video_thumbnails(frames, []) for f in clip)
    assert size < 60_000


def test_verdicts() -> None:
    assert verdict({"prediction": "red", "gold": "red"}) is True
    assert verdict({"prediction": "red", "gold": "blue"}) is False
    assert verdict({"prediction": None, "gold": "blue", "broken": "x"}) is False
    assert verdict({"prediction": "red", "gold": None}) is None
    assert verdict({"prediction": 2, "gold": 2, "options": ["a", "b", "c"]}) is True
    soft = {"prediction": "2", "gold": "two", "gold_scores": {"two": 1.0, "2": 0.3}}
    assert verdict(soft) is True


def test_calibration_bins() -> None:
    examples = [
        {"confidence": 0.05, "correct": False},
        {"confidence": 0.95, "correct": True},
        {"confidence": 1.0, "correct": False},
        {"confidence": 0.5, "correct": None},
    ]
    assert calibration(examples) == [(0.05, 0.0, 1), (0.975, 0.5, 2)]


def test_embedded_json_cannot_close_its_script() -> None:
    text = embedded_json({"q": "</script><script>alert(1)</script>"})
    assert "</" not in text and json.loads(text)["q"].startswith("</script>")


def write_predictions(folder: Path, records: list[dict], metrics: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (folder / "metrics.json").write_text(json.dumps(metrics))


def test_the_page_escapes_text_and_reads_every_record(tmp_path: Path) -> None:
    records = [
        {
            "question_id": i,
            "video_id": "v0",
            "question": "<b>what</b> & why?",
            "answer_type": "what",
            "prediction": "a",
            "top5": [{"answer": "a", "prob": 0.6}, {"answer": "<i>b</i>", "prob": 0.4}],
            "gold": "a" if i % 2 else "<i>b</i>",
        }
        for i in range(5)
    ]
    write_predictions(tmp_path, records, {"acc": 0.4, "acc_what": 0.4, "broken": 0})
    data = read_report_data(tmp_path)
    assert data.kind == "qa" and len(data.examples) == 5 and data.answer_types == ["what"]
    assert data.confused == [("<i>b</i>", "a", 3)]
    page = write_prediction_report(tmp_path, {}).read_text()
    assert "<b>what</b>" not in page.split('id="report-data"')[0]  # escaped in the summary
    assert "&lt;i&gt;b&lt;/i&gt;" in page  # the confused pair, escaped


def test_a_folder_without_predictions_says_what_to_give(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="neither predictions.jsonl nor rankings.jsonl"):
        read_report_data(tmp_path)
