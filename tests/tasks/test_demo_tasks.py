"""Every demo task trains for an epoch and predicts from its checkpoint, with real parts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from clipbert.cli.predict import predict
from clipbert.cli.train import train
from clipbert.demo.generate import DemoPaths
from clipbert.models.frame_input import FrameInput
from tests.helpers import predict_config

QA_DEMO_TASKS = ["demo_image_qa", "demo_mc", "demo_video_qa"]
ANSWER_TYPES = {
    "demo_image_qa": {"yes/no", "number", "other"},
    "demo_mc": {"color", "shape", "count", "motion"},
    "demo_video_qa": {"color", "shape", "count", "motion"},
}
QUESTIONS_PER_TEST_VIDEO = 4
TEST_VIDEOS = 8


@pytest.mark.parametrize("task", QA_DEMO_TASKS)
def test_demo_task_trains_and_predicts(train_config, tmp_path: Path, task: str) -> None:
    cfg = train_config(f"task={task}", "test=false")
    metrics = train(cfg)
    assert 0.0 <= metrics[cfg.task.monitor] <= 1.0
    best = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"

    out = tmp_path / "predict"
    scores = predict(predict_config(out, f"ckpt_path={best}", "split=test", "num_workers=0"))
    records = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(records) == QUESTIONS_PER_TEST_VIDEO * TEST_VIDEOS
    if task == "demo_image_qa":  # one gold answer per demo question, with score 1
        hits = sum(r["gold_scores"].get(r["prediction"], 0.0) for r in records)
        assert scores["score"] == pytest.approx(hits / len(records))
    else:
        hits = sum(r["prediction"] == r["gold"] for r in records)
        assert scores["acc"] == pytest.approx(hits / len(records))
    assert {r["answer_type"] for r in records} == ANSWER_TYPES[task]
    # The original's result files, for scripts written against it.
    original = json.loads((out / "results_all.json").read_text())
    assert [o["question_id"] for o in original] == [r["question_id"] for r in records]
    answer_kind = str if task == "demo_image_qa" else int  # VQA submissions name the answer
    assert all(isinstance(o["answer"], answer_kind) for o in original)
    original_scores = json.loads((out / "scores.json").read_text())
    assert original_scores["overall_acc"] == round(100 * hits / len(records), 2)


def test_training_transforms_whole_batches_and_evaluation_chunk_by_chunk(
    train_config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The model's mode, set by Lightning, decides: one pass in training (one graph), chunks of
    ``model.eval_frames_per_pass`` frames (8) in validation and test (8 videos x 2 frames)."""
    seen = set()
    chunks = FrameInput.chunks

    def spy(self, frames):
        produced = list(chunks(self, frames))
        seen.add((self.training, torch.is_grad_enabled(), tuple(len(c) for c in produced)))
        return iter(produced)

    monkeypatch.setattr(FrameInput, "chunks", spy)
    train(train_config())  # fit (training and validation), then test
    assert seen == {(True, True, (16,)), (False, False, (8, 8))}


def test_multiple_choice_texts_are_question_then_option(train_config) -> None:
    cfg = train_config("task=demo_mc")
    datamodule = instantiate(cfg.task.datamodule)
    datamodule.prepare_data()
    datamodule.setup("test")
    batch = next(iter(datamodule.test_dataloader()))
    assert batch.texts_per_question == 5
    assert batch.input_ids.shape[0] == 5 * len(batch)
    assert all(len(options) == 5 for options in batch.options)
    first = datamodule.tokenizer.decode(batch.input_ids[0], skip_special_tokens=True)
    assert first == f"{batch.questions[0]} {batch.options[0][0]}"


def test_retrieval_demo_trains_ranks_and_predicts(train_config, tmp_path: Path) -> None:
    # fp32 on both sides: predict.py runs in fp32, and an untrained model's scores are close
    cfg = train_config("task=demo_retrieval", "task.module.ranking_pairs=5", "trainer.precision=32")
    metrics = train(cfg)
    for direction in ("t2v", "v2t"):
        assert 0.0 <= metrics[f"test/r1_{direction}"] <= metrics[f"test/r5_{direction}"] <= 1.0
        assert 1.0 <= metrics[f"test/median_rank_{direction}"] <= TEST_VIDEOS
    assert metrics["test/r10_t2v"] == 1.0  # 8 test videos: the gold is always in the top 10

    out = tmp_path / "predict"
    best = Path(cfg.paths.output_dir) / "checkpoints" / "best.ckpt"
    # on the CPU as trained: on a GPU the close scores of an untrained model can swap ranks
    pcfg = predict_config(
        out, f"ckpt_path={best}", "split=test", "num_workers=0", "accelerator=cpu"
    )
    predicted = predict(pcfg)
    assert predicted["r1_t2v"] == pytest.approx(metrics["test/r1_t2v"])
    rankings = [json.loads(line) for line in (out / "rankings.jsonl").read_text().splitlines()]
    assert len(rankings) == TEST_VIDEOS and len(rankings[0]["top5"]) == 5
    results = json.loads((out / "results.json").read_text())
    assert len(results) == TEST_VIDEOS * TEST_VIDEOS and set(results[0]) == {
        "vid_id",
        "txt_id",
        "score",
    }
    scores = json.loads((out / "scores.json").read_text())
    assert scores["text2video"]["r1"] == round(100 * predicted["r1_t2v"], 2)


def test_ranking_scores_equal_pairwise_scores(train_config) -> None:
    """Scoring caption blocks against cached video tokens = scoring each pair on its own."""
    from clipbert.runs.build import build_task

    cfg = train_config("task=demo_retrieval", "task.module.ranking_pairs=3")
    datamodule, module = build_task(cfg)
    module.eval()
    datamodule.setup("test")
    texts = datamodule.ranking_texts("test")
    batch = next(iter(datamodule.test_dataloader()))
    matrix = module.score_videos(batch.frames, texts)
    assert matrix.shape == (len(texts), len(batch))
    with torch.no_grad():
        for t in (0, 5):
            for v in (0, 3):
                pooled = module.backbone(
                    batch.frames[v : v + 1],
                    texts.input_ids[t : t + 1],
                    texts.attention_mask[t : t + 1],
                )
                probs = module.head(pooled).squeeze(1).softmax(-1)[0, 1]
                assert matrix[t, v].item() == pytest.approx(probs.item(), abs=1e-5)
    # An unreadable video scores -1 with every caption: never retrieved, its captions miss.
    batch.broken[1] = "video 'x': could not decode"
    marked = module.video_scores(batch, texts)
    assert marked[:, 1].eq(-1).all() and torch.allclose(marked[:, 0], matrix[:, 0])


def test_evaluation_lists_unreadable_videos_and_counts_them_wrong(
    train_config, demo_root: Path, tmp_path: Path
) -> None:
    """A corrupt file and a video missing from the store: not replaced, listed, counted wrong."""
    cfg = train_config("test=false")
    train(cfg)
    demo = DemoPaths.under(demo_root)
    store = tmp_path / "videos"  # a folder store: the test videos, one of them corrupt
    store.mkdir()
    for video in demo.raw.glob("demo_test_*.mp4"):
        (store / video.name).write_bytes(video.read_bytes())
    (store / "demo_test_0000.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not a real video")
    rows = [json.loads(line) for line in demo.split("test").read_text().splitlines()]
    rows[-1]["video_id"] = "missing_video"
    questions = tmp_path / "questions.jsonl"
    questions.write_text("".join(json.dumps(r) + "\n" for r in rows))

    out = tmp_path / "predict"
    checkpoint = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    overrides = [f"txt_db={questions}", f"vis_db={store}", "num_workers=0"]
    metrics = predict(predict_config(out, f"ckpt_path={checkpoint}", *overrides))
    records = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    broken = [r for r in records if "broken" in r]
    assert len(records) == len(rows) and metrics["broken"] == len(broken) == 5  # 4 + 1
    assert all(r["prediction"] is None for r in broken)
    assert "missing_video" in broken[-1]["broken"]
    hits = sum(r["prediction"] == r["gold"] for r in records)
    assert metrics["acc"] == pytest.approx(hits / len(records))


def test_image_questions_annotated_with_empty_labels(
    train_config, demo_root: Path, tmp_path: Path
) -> None:
    """`labels: {}` (no answer earned credit): evaluation still scores the split, counting the
    question 0; training skips it, or trains it towards all-zero scores as the original."""
    source = DemoPaths.under(demo_root).image_txt_db
    txt_db = tmp_path / "txt_db"
    txt_db.mkdir()
    for name in ("train.jsonl", "val.jsonl", "test.jsonl", "ans2label.json"):
        lines = (source / name).read_text().splitlines()
        if name.endswith(".jsonl"):
            emptied = [{**json.loads(line), "labels": {}} for line in lines[:3]]
            lines = [json.dumps(record) for record in emptied] + lines[3:]
        (txt_db / name).write_text("\n".join(lines) + "\n")
    overrides = [
        "task=demo_image_qa",
        "test=false",
        f"task.datamodule.txt_db={txt_db}",
        f"task.datamodule.ans2label={txt_db / 'ans2label.json'}",
    ]
    skipping = instantiate(train_config(*overrides).task.datamodule)
    train_questions = len((txt_db / "train.jsonl").read_text().splitlines())
    assert skipping.build_dataset("train").num_questions == train_questions - 3
    assert skipping.skipped_empty_labels == 3

    cfg = train_config(*overrides, "task.datamodule.empty_labels=train")
    training = instantiate(cfg.task.datamodule)
    dataset = training.build_dataset("train")
    assert dataset.num_questions == train_questions
    assert dataset.groups[0][0].answer_scores == {}  # trained towards all-zero scores
    train(cfg)

    out = tmp_path / "predict"
    checkpoint = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    scores = predict(predict_config(out, f"ckpt_path={checkpoint}", "split=test", "num_workers=0"))
    records = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    emptied = [r for r in records if r["gold_scores"] == {}]
    assert len(emptied) == 3 and all(r["gold"] == "" for r in emptied)
    hits = sum(r["gold_scores"].get(r["prediction"], 0.0) for r in records)
    assert scores["score"] == pytest.approx(hits / len(records))
    assert (out / "scores.json").is_file()
