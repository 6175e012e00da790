"""Broken inputs through the real commands: exit status 1, one line on stderr naming the file
or key and what to do, no traceback."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.helpers import run_script, run_train, tiny_demo_overrides


def _assert_clear_error(result: subprocess.CompletedProcess, *names: str) -> None:
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr + result.stdout
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and all(name in last for name in names), last


def test_preprocess_vocab_names_the_bad_line(tmp_path: Path) -> None:
    bad = tmp_path / "train.jsonl"
    bad.write_bytes(b'{"video_id": "v", "question": "q", "answer": "a"}\n{"video_id": 3\n')
    result = run_script(
        "preprocess.py",
        "mode=vocab",
        f"annotations=[{bad}]",
        f"dst={tmp_path / 'a.json'}",
        cwd=tmp_path,
        timeout=300,
    )
    _assert_clear_error(result, f"{bad}:2: invalid JSON", "fix or remove the line")


def test_preprocess_check_names_the_missing_store(tmp_path: Path) -> None:
    annotations = tmp_path / "a.jsonl"
    annotations.write_text('{"video_id": "v", "question": "q"}\n')
    store = tmp_path / "vis_db" / "nothing_here"
    result = run_script(
        "preprocess.py",
        "mode=check",
        f"dst={store}",
        f"annotations=[{annotations}]",
        cwd=tmp_path,
        timeout=300,
    )
    _assert_clear_error(result, f"{store} does not exist", "set the vis_db path")


def test_predict_names_the_missing_checkpoint(tmp_path: Path) -> None:
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"")
    result = run_script(
        "predict.py",
        f"ckpt_path={tmp_path / 'best.ckpt'}",
        f"video={video}",
        "question=what?",
        f"paths.output_dir={tmp_path / 'out'}",
        cwd=tmp_path,
        timeout=300,
    )
    _assert_clear_error(result, str(tmp_path / "best.ckpt"))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("task.datamodule.train_sampling.n_clips=0", "train_sampling: n_clips must be"),
        ("task.datamodule.batch_size=-8", "task.datamodule.batch_size must be >= 1"),
    ],
)
def test_train_refuses_a_bad_setting_before_any_work(
    tmp_path: Path, override: str, message: str
) -> None:
    result = run_train(
        *tiny_demo_overrides(tmp_path / "data"),
        override,
        f"paths.output_dir={tmp_path / 'o'}",
        cwd=tmp_path,
        timeout=300,
    )
    _assert_clear_error(result, message)
    assert not (tmp_path / "data" / "vis_db").exists()  # refused before generating the demo


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, demo_root: Path) -> Path:
    """The best checkpoint of a one-epoch tiny demo run."""
    run = tmp_path_factory.mktemp("trained")
    result = run_train(
        *tiny_demo_overrides(demo_root),
        "trainer.max_epochs=1",
        "test=false",
        f"hydra.run.dir={run}",
        cwd=run,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return run / "checkpoints" / "best.ckpt"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "clip.mp4"),
        (bytes(range(256)) * 64, "clip.mp4"),
        (b"\xff\xd8\xff\xe0 a JPEG cut short", "clip.mp4"),
    ],
    ids=["empty", "random_bytes", "truncated_jpeg_named_mp4"],
)
def test_predict_one_broken_video_names_it(
    trained: Path, tmp_path: Path, content: bytes, message: str
) -> None:
    video = tmp_path / "clip.mp4"
    video.write_bytes(content)
    result = run_script(
        "predict.py",
        f"ckpt_path={trained}",
        f"video={video}",
        "question=what color is it?",
        f"hydra.run.dir={tmp_path / 'out'}",
        cwd=tmp_path,
        timeout=300,
    )
    _assert_clear_error(result, message)


def test_predict_on_a_split_names_the_bad_annotation_line(trained: Path, tmp_path: Path) -> None:
    annotations = tmp_path / "test.jsonl"
    annotations.write_bytes(b'{"video_id": "v", "question": "q", "answer": "red"}\n\xff\xfe\n')
    result = run_script(
        "predict.py",
        f"ckpt_path={trained}",
        "split=test",
        f"txt_db={annotations}",
        f"hydra.run.dir={tmp_path / 'out'}",
        cwd=tmp_path,
        timeout=300,
    )
    _assert_clear_error(result, f"{annotations}:2", "UTF-8")
