"""One question of the local app, without the page: which of the model's calls the filled-in
boxes ask for, and what to show of its answer. Kept free of gradio so it is tested plainly."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clipbert.predictor import Predictor, SampledFrames


@dataclass(frozen=True)
class Reply:
    """What the page shows: the frames the model saw, each with its caption, and each
    candidate's probability, best first (an answer, an option, or match / no match)."""

    frames: list[tuple[np.ndarray, str]]
    scores: dict[str, float]
    summary: str


def option_lines(text: str) -> list[str]:
    """The options of a box that holds one per line, blank lines left out."""
    return [line.strip() for line in text.splitlines() if line.strip()]


def ask(
    predictor: Predictor,
    visual: str | Path,
    question: str = "",
    options: str = "",
    caption: str = "",
    n_clips: int | None = None,
    top_k: int = 5,
) -> Reply:
    """Answer ``question`` (among ``options``, one per line, when given) or score ``caption``
    about the file, with ``n_clips`` clips per video (None: as the checkpoint evaluates)."""
    question, caption, choices = question.strip(), caption.strip(), option_lines(options)
    if question and caption:
        raise ValueError("give a question or a caption, not both: clear one of the boxes")
    if choices and not question:
        raise ValueError("options need their question")
    if not (question or caption):
        raise ValueError("give a question (with options for multiple choice) or a caption")
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    if n_clips is not None:
        predictor = predictor.with_sampling(n_clips=int(n_clips))
    seen = predictor.sampled(visual)  # decoded once: shown, then answered
    if caption:
        match = predictor.match(seen, caption)
        scores = {"match": match, "no match": 1.0 - match}
    elif choices:
        scores = {a.answer: a.prob for a in predictor.choose(seen, question, choices)}
    else:
        scores = {a.answer: a.prob for a in predictor.answer(seen, question, top_k)}
    return Reply(captioned_frames(seen), scores, sampling_summary(seen, predictor))


def captioned_frames(seen: SampledFrames) -> list[tuple[np.ndarray, str]]:
    """Each frame as an (H, W, 3) image captioned with its clip and its time in the video."""
    frames = seen.frames.numpy()
    if seen.image:
        return [(np.ascontiguousarray(frames[0, 0].transpose(1, 2, 0)), "image")]
    return [
        (np.ascontiguousarray(frame.transpose(1, 2, 0)), f"clip {c + 1} · {time:.2f} s")
        for c, (clip, times) in enumerate(zip(frames, seen.seconds, strict=True))
        for frame, time in zip(clip, times, strict=True)
    ]


def sampling_summary(seen: SampledFrames, predictor: Predictor) -> str:
    """One line on how the frames were taken: clips, frames per clip, sampling, decoder."""
    if seen.image:
        return "an image: one clip of one frame"
    clips, per_clip = seen.frames.shape[:2]
    sampling = predictor.reader.sampling
    return (
        f"{clips} clip{'s' * (clips > 1)} x {per_clip} frame{'s' * (per_clip > 1)} at "
        f"{sampling.fps:g} fps ({sampling.strategy}), decoded by {predictor.reader.decoder.name}"
    )
