"""The Predictor for real use: lists of inputs batched through the model (equal to one by one),
each clip's scores beside the aggregated ones, precision, an original .pt, and bad inputs."""

from __future__ import annotations

import platform
from pathlib import Path

import pytest
import torch

from clipbert import Predictor
from clipbert.cli.convert import convert
from clipbert.models.heads import aggregate_clip_logits
from tests.helpers import compose_config

ASSETS = Path(__file__).resolve().parents[1] / "assets"
SMALL = ASSETS / "h264_176x144_29.97fps_lowbitrate.mp4"
ROTATED = ASSETS / "h264_568x320_rot90_3frames.mov"
MJPEG = ASSETS / "mjpeg_160x120_10fps_3frames.avi"
IMAGE = ASSETS / "photo_128x128_tiny.jpg"
OPTIONS = ["red", "green", "blue", "yellow", "circle"]
# The original's CNN (FrozenBN, stride in the 1x1 conv), which an original .pt always gets.
ORIGINAL_CNN = ("model.cnn.norm=frozen_bn", "model.cnn.stride_in_1x1=true", "model.cnn.freeze_at=2")


def _same(batched: list, single: list) -> None:
    for mine, other in zip(batched, single, strict=True):
        assert [a.answer for a in mine] == [a.answer for a in other]
        assert [a.prob for a in mine] == pytest.approx([a.prob for a in other], abs=1e-5)


@pytest.fixture(scope="module")
def qa(demo_checkpoint) -> Predictor:
    return Predictor.from_checkpoint(demo_checkpoint("demo_video_qa"), n_clips=2, batch_size=2)


def test_lists_answer_as_one_call_each(qa: Predictor, demo_checkpoint) -> None:
    """Five inputs in chunks of two: videos of different sizes in one batch, an image beside
    videos (a batch of its own), and one video asked twice (decoded once)."""
    visuals = [SMALL, ROTATED, IMAGE, SMALL, MJPEG]
    questions = ["what color?", "how do they move?", "how many?", "what shape?", "what color?"]
    single = [qa.answer(v, q, top_k=4) for v, q in zip(visuals, questions, strict=True)]
    _same(qa.answer(visuals, questions, top_k=4), single)
    assert qa.answer((SMALL,), ("what color?",), top_k=4) == [single[0]]  # tuples too
    assert qa.answer([], []) == []

    chooser = Predictor.from_checkpoint(demo_checkpoint("demo_mc"), batch_size=3)
    questions = ["what color?", "which shape?", "what color?", "how many?"]
    visuals = [SMALL, MJPEG, ROTATED, SMALL]
    single = [chooser.choose(v, q, OPTIONS) for v, q in zip(visuals, questions, strict=True)]
    _same(chooser.choose(visuals, questions, [OPTIONS] * 4), single)

    ranker = Predictor.from_checkpoint(demo_checkpoint("demo_retrieval"), batch_size=2)
    captions = ["two red circle moving", "one blue square", "a green triangle"]
    single = [ranker.match(v, c) for v, c in zip(visuals[:3], captions, strict=True)]
    assert ranker.match(visuals[:3], captions) == pytest.approx(single, abs=1e-5)
    options = [["one red circle", "two blue square"], ["a", "b", "c"]]  # unequal counts
    single = [ranker.choose(SMALL, "", o) for o in options]
    _same(ranker.choose([SMALL, SMALL], ["", ""], options), single)


def test_per_clip_scores_aggregate_to_what_is_returned(qa: Predictor, demo_checkpoint) -> None:
    vocabulary = qa.module.answer_vocabulary
    answers, clips = qa.answer(SMALL, "what color?", top_k=len(vocabulary), per_clip=True)
    assert answers == qa.answer(SMALL, "what color?", top_k=len(vocabulary))
    assert clips.candidates == vocabulary
    assert clips.logits.shape == clips.probs.shape == (2, len(vocabulary))
    aggregated = aggregate_clip_logits(clips.logits[None], clips.score_agg)[0]
    assert torch.allclose(aggregated, clips.aggregated, atol=1e-6)
    probs = clips.aggregated.softmax(dim=-1)
    for answer in answers:
        assert answer.prob == pytest.approx(float(probs[vocabulary.index(answer.answer)]), abs=1e-6)
    assert torch.allclose(clips.probs.sum(dim=-1), torch.ones(2), atol=1e-5)
    batched = qa.answer([SMALL, MJPEG], ["what color?", "what?"], per_clip=True)
    assert [len(result) for result in batched] == [2, 2]
    assert torch.allclose(batched[0][1].logits, clips.logits, atol=1e-5)

    ranker = Predictor.from_checkpoint(demo_checkpoint("demo_retrieval"), n_clips=3)
    p, clips = ranker.match(SMALL, "two red circle moving", per_clip=True)
    assert clips.logits.shape == (3, 1, 2) and clips.probs.shape == (3, 1)
    aggregated = aggregate_clip_logits(clips.logits[None], clips.score_agg)[0]
    assert torch.allclose(aggregated, clips.aggregated, atol=1e-6)
    assert p == pytest.approx(float(clips.aggregated.softmax(dim=-1)[0, 1]), abs=1e-6)


def test_precision(qa: Predictor, demo_checkpoint) -> None:
    """fp32 on the CPU unless asked; bf16 autocast where asked gives near answers."""
    assert qa.precision == "32-true"  # on the CPU
    checkpoint = demo_checkpoint("demo_video_qa")
    bf16 = Predictor.from_checkpoint(checkpoint, n_clips=2, precision="bf16-mixed")
    fp32 = Predictor.from_checkpoint(checkpoint, n_clips=2, precision="32-true")
    near = bf16.answer(SMALL, "what color?", top_k=3)
    exact = fp32.answer(SMALL, "what color?", top_k=3)
    assert [a.prob for a in near] == pytest.approx([a.prob for a in exact], abs=0.05)
    with pytest.raises(ValueError, match="precision must be auto or one of"):
        Predictor.from_checkpoint(checkpoint, precision="fp8")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_bf16_on_the_gpu_answers_as_fp32_on_the_cpu(demo_checkpoint) -> None:
    checkpoint = demo_checkpoint("demo_video_qa")
    gpu = Predictor.from_checkpoint(checkpoint, "cuda", n_clips=2)
    assert gpu.precision == ("bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed")
    cpu = Predictor.from_checkpoint(checkpoint, n_clips=2)
    visuals, questions = [SMALL, MJPEG, IMAGE], ["what color?", "what?", "how many?"]
    pairs = zip(gpu.answer(visuals, questions), cpu.answer(visuals, questions), strict=True)
    for near, exact in pairs:
        assert [a.prob for a in near] == pytest.approx([a.prob for a in exact], abs=0.05)


def test_an_original_checkpoint_with_its_task(demo_checkpoint, demo_root: Path, tmp_path) -> None:
    """An original-layout .pt carries weights only: the task's config gives the rest."""
    checkpoint = demo_checkpoint("demo_video_qa", *ORIGINAL_CNN)
    original = tmp_path / "model_step_1.pt"
    convert(compose_config("convert", [f"src={checkpoint}", f"dst={original}", "to=original"]))
    expected = Predictor.from_checkpoint(checkpoint, n_clips=2)
    predictor = Predictor.from_checkpoint(
        original, n_clips=2, task="demo_video_qa", data_root=demo_root
    )
    visuals, questions = [SMALL, MJPEG], ["what color?", "how do they move?"]
    _same(predictor.answer(visuals, questions), expected.answer(visuals, questions))
    with pytest.raises(ValueError, match="task=msrvtt_qa"):
        Predictor.from_checkpoint(original)


def test_bad_inputs_name_the_argument(qa: Predictor, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="visual has 2 files but question has 3 items"):
        qa.answer([SMALL, MJPEG], ["a?", "b?", "c?"])
    with pytest.raises(ValueError, match="question is a list but visual is one file"):
        qa.answer(SMALL, ["a?", "b?"])
    with pytest.raises(ValueError, match="give caption as a list too"):
        qa.match([SMALL, MJPEG], "a caption")
    with pytest.raises(ValueError, match=r"options: give one list of options per file \(2 lists\)"):
        qa.choose([SMALL, MJPEG], ["a?", "b?"], OPTIONS)
    with pytest.raises(FileNotFoundError, match="missing.mp4: no such file"):
        qa.answer([SMALL, tmp_path / "missing.mp4"], ["a?", "b?"])
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        Predictor(qa.module, qa.text_tokenizer, qa.reader.sampling, batch_size=0)


def test_a_cpu_predictor_keeps_freed_memory_unless_told_not_to(demo_checkpoint, monkeypatch):
    """As predict.py does; without it, evaluation passes stay within glibc's own reuse."""
    import clipbert.allocator as allocator

    monkeypatch.setattr(allocator, "_keeping", False)
    Predictor.from_checkpoint(demo_checkpoint("demo_video_qa"), keep_freed_memory=False)
    assert not allocator.keeps_freed_memory()
    Predictor.from_checkpoint(demo_checkpoint("demo_video_qa"))
    assert allocator.keeps_freed_memory() == (platform.libc_ver()[0] == "glibc")


def test_sampled_frames_answer_as_their_file(qa: Predictor) -> None:
    seen = qa.sampled(SMALL)
    assert [len(clip) for clip in seen.seconds] == [seen.frames.shape[1]] * seen.frames.shape[0]
    _same([qa.answer(seen, "what color?")], [qa.answer(SMALL, "what color?")])
