"""report.html of predict.py, opened in headless Chromium and checked as a person would: the
thumbnails load, the counts and the accuracy equal the written files, the wrong-only filter
shows exactly the wrong answers; a screenshot is saved."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from clipbert.cli.predict import predict
from tests.browser import screenshot
from tests.helpers import predict_config


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def predicted(demo_checkpoint, task: str, out: Path, *overrides: str) -> Path:
    predict(predict_config(out, f"ckpt_path={demo_checkpoint(task)}", "split=test", *overrides))
    assert (out / "report.html").is_file()
    return out


def open_report(page, folder: Path) -> None:
    page.goto((folder / "report.html").as_uri())
    page.wait_for_selector("body[data-ready=true]")


def shown_ids(page) -> list[str]:
    """The ids of the examples the filters let through, over every page of the list."""
    ids = []
    while True:
        ids += page.locator("article.example").evaluate_all("cards => cards.map(c => c.dataset.id)")
        if page.locator("#next-page").is_disabled():
            return ids
        page.click("#next-page")


def broken_images(page) -> int:
    return page.evaluate(
        "() => [...document.querySelectorAll('img.thumb')]"
        ".filter(img => !img.complete || img.naturalWidth === 0).length"
    )


def test_video_qa_report_matches_the_prediction_files(demo_checkpoint, tmp_path, page) -> None:
    folder = predicted(demo_checkpoint, "demo_video_qa", tmp_path / "qa", "n_clips=2")
    records = read_jsonl(folder / "predictions.jsonl")
    metrics = json.loads((folder / "metrics.json").read_text())
    open_report(page, folder)

    assert int(page.inner_text("#headline-count")) == len(records)
    assert int(page.inner_text("#shown-count")) == len(records)
    shown = float(page.get_attribute("#headline-metric", "data-value"))
    assert shown == pytest.approx(metrics["acc"])
    assert page.inner_text("#headline-metric") == f"{100 * metrics['acc']:.2f}%"
    for name, value in metrics.items():
        row = page.locator(f'#metrics tr[data-metric="{name}"] td.num')
        assert float(row.inner_text()) == pytest.approx(value, abs=5e-5)

    # the frames: 2 clips x the demo's 2 frames per question, all loaded, with their times
    first = page.locator("article.example").first
    assert first.locator(".clip").count() == 2
    assert first.locator("img.thumb").count() == 4
    assert "s" in first.locator("figcaption").first.inner_text()
    assert page.locator("img.thumb").count() > 0 and broken_images(page) == 0

    page.check("#wrong-only")
    wrong = {str(r["question_id"]) for r in records if r["prediction"] != r["gold"]}
    assert int(page.inner_text("#shown-count")) == len(wrong)
    assert set(shown_ids(page)) == wrong
    assert broken_images(page) == 0
    page.uncheck("#wrong-only")

    page.select_option("#answer-type", "color")
    color = [r for r in records if r["answer_type"] == "color"]
    assert int(page.inner_text("#shown-count")) == len(color)
    page.select_option("#answer-type", "")
    page.fill("#search", str(records[3]["question_id"]))
    assert str(records[3]["question_id"]) in shown_ids(page)
    page.fill("#search", "")
    page.fill("#min-confidence", "0.99")
    confident = [r for r in records if r["top5"][0]["prob"] >= 0.99]
    assert int(page.inner_text("#shown-count")) == len(confident)
    assert page.errors == []
    screenshot(page, "report_video_qa")


def test_retrieval_report_shows_ranks_and_top_videos(demo_checkpoint, tmp_path, page) -> None:
    folder = predicted(demo_checkpoint, "demo_retrieval", tmp_path / "ret")
    rankings = read_jsonl(folder / "rankings.jsonl")
    metrics = json.loads((folder / "metrics.json").read_text())
    assert all(1 <= r["gold_rank"] <= len(rankings) for r in rankings)
    assert sum(r["gold_rank"] == 1 for r in rankings) / len(rankings) == pytest.approx(
        metrics["r1_t2v"]
    )
    open_report(page, folder)
    assert int(page.inner_text("#headline-count")) == len(rankings)
    assert float(page.get_attribute("#headline-metric", "data-value")) == pytest.approx(
        metrics["r1_t2v"]
    )
    first = page.locator("article.example").first
    assert first.locator(".strip .video").count() == len(rankings[0]["top5"])
    assert f"rank {rankings[0]['gold_rank']}" in first.inner_text()
    assert broken_images(page) == 0 and page.locator("img.thumb").count() > 0
    page.check("#wrong-only")
    missed = {str(r["caption_id"]) for r in rankings if r["gold_rank"] > 1}
    assert set(shown_ids(page)) == missed
    assert page.errors == []
    screenshot(page, "report_retrieval")


def test_multiple_choice_report_lists_every_option(demo_checkpoint, tmp_path, page) -> None:
    folder = predicted(demo_checkpoint, "demo_mc", tmp_path / "mc")
    records = read_jsonl(folder / "predictions.jsonl")
    open_report(page, folder)
    first = page.locator("article.example").first
    assert first.locator(".candidates li").count() == len(records[0]["options"])
    assert records[0]["options"][records[0]["gold"]] in first.locator(".gold-answer").inner_text()
    assert page.errors == []


def test_report_false_writes_none_and_auto_skips_huge_splits(demo_checkpoint, tmp_path) -> None:
    best = demo_checkpoint("demo_video_qa")
    predict(predict_config(tmp_path / "off", f"ckpt_path={best}", "report=false"))
    assert not (tmp_path / "off" / "report.html").exists()
    predict(predict_config(tmp_path / "big", f"ckpt_path={best}", "report_max_examples=3"))
    assert not (tmp_path / "big" / "report.html").exists()
    assert (tmp_path / "big" / "predictions.jsonl").is_file()
    predict(
        predict_config(tmp_path / "on", f"ckpt_path={best}", "report=true", "report_max_examples=3")
    )
    assert (tmp_path / "on" / "report.html").is_file()
    with pytest.raises(ValueError, match="report must be auto, true or false"):
        predict(predict_config(tmp_path / "bad", f"ckpt_path={best}", "report=maybe"))
    with pytest.raises(ValueError, match="report_thumbnail_height must be null"):
        predict(predict_config(tmp_path / "bad", f"ckpt_path={best}", "report_thumbnail_height=0"))
    with pytest.raises(ValueError, match="report_max_examples must be >= 0"):
        predict(predict_config(tmp_path / "bad", f"ckpt_path={best}", "report_max_examples=-1"))


def test_a_set_thumbnail_height_is_used(demo_checkpoint, tmp_path) -> None:
    out = predicted(demo_checkpoint, "demo_video_qa", tmp_path, "report_thumbnail_height=24")
    page = (out / "report.html").read_text()
    uri = page.split("data:image/jpeg;base64,", 1)[1].split('"', 1)[0]
    assert Image.open(io.BytesIO(base64.b64decode(uri))).height == 24


def test_ten_thousand_examples_keep_one_page_in_the_document(tmp_path, page) -> None:
    """Pages of 50: the document holds one page of cards whatever the split's size."""
    from clipbert.reports.prediction_page import PAGE_SIZE, write_prediction_report
    from clipbert.reports.thumbnails import video_thumbnails

    count = 10_000
    rows = [
        {
            "question_id": i,
            "video_id": f"v{i % 500}",
            "question": f"question {i}?",
            "answer_type": "what",
            "prediction": "a",
            "top5": [{"answer": "a", "prob": 0.7}, {"answer": "b", "prob": 0.3}],
            "gold": "a" if i % 3 else "b",
        }
        for i in range(count)
    ]
    (tmp_path / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "metrics.json").write_text(json.dumps({"acc": 2 / 3, "acc_what": 2 / 3}))
    frames = video_thumbnails(torch.zeros((2, 2, 3, 60, 80), dtype=torch.uint8), [0, 1, 2, 3])
    videos = {f"v{v}": {"clips": frames, "broken": False} for v in range(500)}
    write_prediction_report(tmp_path, videos)
    open_report(page, tmp_path)
    assert page.locator("article.example").count() == PAGE_SIZE
    page.check("#wrong-only")
    assert int(page.inner_text("#shown-count")) == len([i for i in range(count) if i % 3 == 0])
    assert page.locator("article.example").count() == PAGE_SIZE
    page.click("#next-page")
    assert page.locator("article.example").first.get_attribute("data-id") == str(3 * PAGE_SIZE)
    assert broken_images(page) == 0 and page.errors == []
