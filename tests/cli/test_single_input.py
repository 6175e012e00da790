"""One video or image and one text: the Predictor API and `predict.py video=... question=...`,
on the real media files in tests/assets."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import open_dict

from clipbert import Predictor
from clipbert.cli.predict import predict
from clipbert.cli.train import train
from clipbert.data.decoding import DecodeError
from tests.helpers import predict_config

ASSETS = Path(__file__).resolve().parents[1] / "assets"
VIDEOS = [
    "h264_176x144_29.97fps_lowbitrate.mp4",
    "h264_1920x1080_vfr_72frames.mp4",
    "h264_568x320_rot90_3frames.mov",
    "h264_opus_426x240_30fps.mkv",
    "mjpeg_160x120_10fps_3frames.avi",
]
IMAGES = ["photo_128x128_gray.jpg", "photo_128x128_tiny.jpg", "rgba_200x150.png"]


def _checkpoint(train_config, task: str) -> Path:
    cfg = train_config(f"task={task}", "test=false")
    with open_dict(cfg):
        cfg.paths.output_dir = str(Path(cfg.paths.output_dir).with_name(task))
    train(cfg)
    return Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"


def test_open_ended_answers_for_every_real_video(train_config, capsys) -> None:
    checkpoint = _checkpoint(train_config, "demo_video_qa")
    predictor = Predictor.from_checkpoint(checkpoint, n_clips=2)
    vocabulary = predictor.module.answer_vocabulary
    for name in VIDEOS:
        answers = predictor.answer(
            ASSETS / name, "what color are the shapes?", top_k=len(vocabulary)
        )
        assert {a.answer for a in answers} == set(vocabulary), name
        assert sum(a.prob for a in answers) == pytest.approx(1.0, abs=1e-4)
        assert [a.prob for a in answers] == sorted((a.prob for a in answers), reverse=True)
    with pytest.raises(DecodeError, match="broken_truncated.jpg|could not"):
        predictor.answer(ASSETS / "broken_truncated.jpg", "what shape do you see?")

    cfg = predict_config(
        "unused",
        f"ckpt_path={checkpoint}",
        f"video={ASSETS / VIDEOS[2]}",
        "question=how are the shapes moving?",
        "top_k=3",
    )
    printed = predict(cfg)
    assert len(printed) == 3
    assert "how are the shapes moving?" in capsys.readouterr().out


def test_image_questions_on_real_images(train_config) -> None:
    predictor = Predictor.from_checkpoint(_checkpoint(train_config, "demo_image_qa"))
    for name in IMAGES:
        answers = predictor.answer(ASSETS / name, "how many shapes are there?", top_k=3)
        assert len(answers) == 3 and all(0.0 <= a.prob <= 1.0 for a in answers)  # sigmoid scores


def test_multiple_choice_and_retrieval_scores(train_config) -> None:
    video = ASSETS / VIDEOS[0]
    options = ["red", "green", "blue", "yellow", "circle"]
    chooser = Predictor.from_checkpoint(_checkpoint(train_config, "demo_mc"))
    choices = chooser.choose(video, "what color are the shapes?", options)
    assert sorted(c.answer for c in choices) == sorted(options)
    assert sum(c.prob for c in choices) == pytest.approx(1.0, abs=1e-4)
    with pytest.raises(ValueError, match="5 options"):
        chooser.choose(video, "what color?", options[:3])

    ranker = Predictor.from_checkpoint(_checkpoint(train_config, "demo_retrieval"))
    score = ranker.match(video, "two red circle moving horizontally")
    assert 0.0 <= score <= 1.0
    captions = ranker.choose(
        video, "", ["one red circle standing still", "two blue square moving vertically"]
    )
    assert len(captions) == 2 and captions[0].prob >= captions[1].prob
    with pytest.raises(TypeError, match="does not answer open questions"):
        ranker.answer(video, "what color?")
