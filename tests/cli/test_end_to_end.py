"""train(cfg) then predict(cfg) on a tiny generated demo: the whole path with real parts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from clipbert.cli.predict import predict
from clipbert.cli.train import train
from tests.helpers import predict_config


def test_train_then_predict(train_config, tmp_path: Path, capsys) -> None:
    cfg = train_config("trainer.max_epochs=2")
    metrics = train(cfg)
    run = Path(cfg.paths.output_dir)

    for key in ("val/acc", "test/acc", "test/acc_motion", "test/acc_color"):
        assert 0.0 <= metrics[key] <= 1.0, key
    assert json.loads((run / "metrics.json").read_text())["test/acc"] == metrics["test/acc"]
    assert (run / "csv" / "metrics.csv").is_file()
    best = run / "checkpoints" / "best.ckpt"
    assert best.is_file() and (run / "checkpoints" / "last.ckpt").is_file()

    # The checkpoint is self-contained and loads without unpickling code.
    record = torch.load(best, map_location="cpu", weights_only=True)["clipbert"]
    assert record["config"]["task"]["name"] == "demo_video_qa"
    assert {"tokenizer.json", "vocab.txt"} & set(record["tokenizer_files"])

    out = tmp_path / "predict"
    pred_metrics = predict(predict_config(out, f"ckpt_path={best}", "split=test", "n_clips=2"))
    assert not torch.backends.cudnn.allow_tf32  # tf32=false (default): parity with fp32

    lines = (out / "predictions.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == 4 * 8  # one question of each of the 4 types per test video
    first = records[0]
    assert set(first) >= {"question_id", "question", "prediction", "top5", "gold"}
    assert len(first["top5"]) == 5 and first["prediction"] == first["top5"][0]["answer"]
    probs = [entry["prob"] for entry in first["top5"]]
    assert probs == sorted(probs, reverse=True)
    saved = json.loads((out / "metrics.json").read_text())
    assert saved == pred_metrics
    assert set(saved) == {"acc", "acc_color", "acc_shape", "acc_count", "acc_motion", "broken"}
    assert saved["broken"] == 0
    hits = sum(r["prediction"] == r["gold"] for r in records)
    assert abs(saved["acc"] - hits / len(records)) < 1e-6
    assert "n_clips=2" in capsys.readouterr().out


def test_predict_refuses_an_answer_vocabulary_other_than_the_checkpoints(
    train_config, demo_root: Path, tmp_path: Path
) -> None:
    """Labels are positions in ans2label: another file would score against the wrong answers."""
    cfg = train_config("test=false")
    train(cfg)
    moved = tmp_path / "data"
    shutil.copytree(demo_root, moved)
    ans2label = moved / "txt_db" / "demo_video_qa" / "ans2label.json"
    labels = json.loads(ans2label.read_text())
    first, second = sorted(labels, key=labels.get)[:2]
    labels[first], labels[second] = labels[second], labels[first]
    ans2label.write_text(json.dumps(labels))
    pcfg = predict_config(
        tmp_path / "predict",
        f"ckpt_path={Path(cfg.paths.output_dir) / 'checkpoints' / 'best.ckpt'}",
        f"data_root={moved}",
    )
    with pytest.raises(ValueError, match=r"ans2label\.json .*differ at label 0"):
        predict(pcfg)
