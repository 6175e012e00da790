"""Step checkpoints and the original's inference habits: a model picked by its step
(`predict.py run_dir=RUN step=N`, the original's --output_dir/--inference_model_step), its
answers given by `ans2label=` (--ans2label_path), results kept under the run."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from clipbert.callbacks.model_steps import ModelStepCheckpoints, original_cadence
from clipbert.cli.predict import predict
from clipbert.cli.train import train
from clipbert.runs.selection import available_steps, results_folder, select_checkpoint
from tests.helpers import predict_config, tiny_demo_overrides, train_run_config

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("total", "num_valid", "min_steps", "every"),
    [
        (43_800, 100, 100, 500),  # MSRVTT retrieval: ceil(438 / 100) = 5 hundreds
        (5_000, 10, 50, 500),  # MSRVTT-QA
        (3, 20, 100, 100),  # a short run: saved only at its end
        (7, 2, 1, 4),
    ],
)
def test_cadence_is_the_original_s_valid_steps(total, num_valid, min_steps, every) -> None:
    assert original_cadence(total, num_valid, min_steps) == every


def test_bad_cadence_is_refused() -> None:
    with pytest.raises(ValueError, match="callbacks.model_steps.num_valid"):
        ModelStepCheckpoints("ckpt", num_valid=0)


@pytest.fixture(scope="module")
def stepped_run(tmp_path_factory, demo_root: Path) -> Path:
    """A tiny demo run of 2 epochs x 3 steps, with step checkpoints every 4 steps."""
    run = tmp_path_factory.mktemp("stepped") / "run"
    cfg = train_run_config(
        run,
        *tiny_demo_overrides(demo_root),
        "task.datamodule.batch_size=8",
        "trainer.max_epochs=2",
        "trainer.num_sanity_val_steps=0",
        "test=false",
        "callbacks.model_steps.num_valid=2",
        "callbacks.model_steps.min_valid_steps=1",
    )
    train(cfg)
    return run


def test_training_keeps_numbered_weights_at_the_cadence_and_the_end(stepped_run: Path) -> None:
    assert available_steps(stepped_run) == [3, 6]  # every ceil(6 / 2) = 3 steps; 6 is the end
    checkpoint = torch.load(
        stepped_run / "checkpoints" / "step_3.ckpt", map_location="cpu", weights_only=True
    )
    assert set(checkpoint) == {"state_dict", "hyper_parameters", "clipbert"}  # no optimizer
    last = torch.load(
        stepped_run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True
    )
    final = torch.load(
        stepped_run / "checkpoints" / "step_6.ckpt", map_location="cpu", weights_only=True
    )
    for key, value in last["state_dict"].items():
        torch.testing.assert_close(final["state_dict"][key], value, rtol=0, atol=0)


def test_a_step_is_picked_from_the_run_folder(stepped_run: Path, tmp_path: Path) -> None:
    assert (
        select_checkpoint(None, str(stepped_run), 3) == stepped_run / "checkpoints" / "step_3.ckpt"
    )
    assert select_checkpoint(None, str(stepped_run), None).name == "best.ckpt"
    with pytest.raises(
        FileNotFoundError, match=r"no checkpoint for step 5; the steps it has: 3, 6"
    ):
        select_checkpoint(None, str(stepped_run), 5)
    with pytest.raises(ValueError, match="give ckpt_path=FILE, or run_dir=RUN"):
        select_checkpoint("a.ckpt", str(stepped_run), None)
    with pytest.raises(ValueError, match="step=3 picks a checkpoint in run_dir"):
        select_checkpoint("a.ckpt", None, 3)

    original = tmp_path / "original_run"
    (original / "ckpt").mkdir(parents=True)
    (original / "ckpt" / "model_step_1500.pt").write_bytes(b"")
    assert select_checkpoint(None, str(original), 1500) == original / "ckpt" / "model_step_1500.pt"
    assert available_steps(original) == [1500]


def test_results_folders_never_collide(stepped_run: Path) -> None:
    def folder(**kw) -> str:
        args = {"ckpt_path": None, "run_dir": str(stepped_run), "step": 3, "split": "test"}
        return results_folder(**{**args, **kw})

    assert folder() == str(stepped_run / "predict" / "test_step3")
    names = {
        folder(),
        folder(step=6),
        folder(n_clips=16),
        folder(n_clips=16, score_agg="lse"),
        folder(split="val"),
        folder(txt_db="/data/tango/test.jsonl"),
        folder(step=None),
        folder(video="clip.mp4"),
    }
    assert len(names) == 8
    best = str(stepped_run / "checkpoints" / "best.ckpt")
    assert folder(ckpt_path=best, run_dir=None, step=None) == str(
        stepped_run / "predict" / "test_best"
    )
    assert "/predict/20" in folder(step=99, fallback="/x/predict")  # no such step: dated folder


def test_predict_by_step_with_ans2label_writes_under_the_run(
    stepped_run: Path, demo_root: Path
) -> None:
    """The original's inference command, one for one, as a user types it."""
    ans2label = demo_root / "txt_db" / "demo_video_qa" / "ans2label.json"
    command = [
        sys.executable,
        "predict.py",
        f"run_dir={stepped_run}",
        "step=3",
        "split=test",
        "n_clips=2",
        f"ans2label={ans2label}",
        "num_workers=0",
    ]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    out = stepped_run / "predict" / "test_step3_2clips"
    records = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(records) == 4 * 8
    assert (out / "results_all.json").is_file() and (out / "scores.json").is_file()


def test_ans2label_other_than_the_checkpoint_s_is_refused(
    stepped_run: Path, demo_root: Path, tmp_path: Path
) -> None:
    ans2label = json.loads((demo_root / "txt_db" / "demo_video_qa" / "ans2label.json").read_text())
    ans2label["purple"] = len(ans2label)
    other = tmp_path / "ans2label.json"
    other.write_text(json.dumps(ans2label))
    cfg = predict_config(tmp_path / "out", f"run_dir={stepped_run}", "step=6", f"ans2label={other}")
    with pytest.raises(
        ValueError, match=r"ans2label\.json \(\d+ answers\) is not the answer vocabulary"
    ):
        predict(cfg)


def test_a_missing_checkpoint_file_is_named(tmp_path: Path) -> None:
    cfg = predict_config(tmp_path / "out", f"ckpt_path={tmp_path / 'gone.ckpt'}")
    with pytest.raises(FileNotFoundError, match="gone.ckpt: no such file"):
        predict(cfg)
    shutil.rmtree(tmp_path / "out", ignore_errors=True)
