"""One video (or image) and one text in, answers out: the trained model outside any dataset.

    predictor = clipbert.Predictor.from_checkpoint("best.ckpt")          # or device="cuda"
    predictor.answer("clip.mp4", "what is the man doing?")               # open-ended QA
    predictor.choose("clip.mp4", "what does he do?", ["run", "jump", ...])  # multiple choice
    predictor.match("clip.mp4", "a man runs on a beach")                 # retrieval score

Frames are sampled, decoded and resized exactly as the checkpoint's evaluation loader does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import OmegaConf

from clipbert.data.decoding import DecodeError, build_decoder, decode_image
from clipbert.data.frame_sampling import FrameSampling
from clipbert.data.readers import VideoClipReader
from clipbert.data.store_tools import guess_extension
from clipbert.data.text import TextTokenizer
from clipbert.runs.build import rebuild_module
from clipbert.runs.record import load_run
from clipbert.tasks.base import ClipBertTask

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"}


@dataclass(frozen=True)
class Answer:
    """One candidate answer and its probability."""

    answer: str
    prob: float


class Predictor:
    """A trained task module with the frame sampling and text processing of its evaluation
    data. What the task can answer (open questions, options, captions) is the task's to say:
    asking a model for what it cannot score raises ``TypeError``."""

    def __init__(
        self,
        module: ClipBertTask,
        text_tokenizer: TextTokenizer,
        sampling: FrameSampling,
        decoder: str = "decord",
        device: str | torch.device = "cpu",
        decoder_fallback: str | None = "pyav",
        decode_timeout: float | None = 60.0,
    ) -> None:
        self.device = torch.device(device)
        self.module = module.eval().to(self.device)
        self.text_tokenizer = text_tokenizer
        self.reader = VideoClipReader(
            None, build_decoder(decoder, decoder_fallback, decode_timeout), sampling
        )

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        device: str | torch.device = "cpu",
        n_clips: int | None = None,
        score_agg: str | None = None,
        trusted_targets: Sequence[str] = (),
    ) -> Predictor:
        """Rebuild the model, tokenizer and evaluation sampling a ``train.py`` checkpoint holds
        (``trusted_targets``: classes its config may name beyond clipbert's own)."""
        run = load_run(path, trusted_targets)
        datamodule = OmegaConf.create(run.config).task.datamodule
        sampling = dict(datamodule.get("eval_sampling") or {"n_clips": 1, "num_frames": 1})
        if n_clips is not None:
            sampling["n_clips"] = n_clips
        return cls(
            rebuild_module(run, score_agg=score_agg),
            TextTokenizer(run.tokenizer(), datamodule.max_txt_len),
            FrameSampling(**sampling),
            datamodule.get("decoder", "decord"),
            device,
            datamodule.get("decoder_fallback", "pyav"),
            datamodule.get("decode_timeout", 60.0),
        )

    def frames(self, visual: str | Path) -> torch.Tensor:
        """A video or image file -> its sampled uint8 frames (1, n_clips, num_frames, 3, H, W)
        on the device, at the file's own size (the model resizes them).

        An image is one clip of one frame, as the original's image tasks feed it.
        """
        path = Path(visual)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file; give the path of a video or image")
        return self._decode(path.read_bytes(), path).to(self.device).unsqueeze(0)

    def _decode(self, data: bytes, path: Path) -> torch.Tensor:
        """uint8 clips of a file; a JPEG or PNG under a video extension (or a video under an
        image one) is read as what its bytes are, not as its name says."""
        kind = guess_extension(data)
        as_image = kind in ("jpg", "png") or (
            kind not in ("mp4", "mkv", "avi") and path.suffix.lower() in IMAGE_SUFFIXES
        )
        if not as_image:
            return self.reader.decode(data, str(path))
        try:
            return decode_image(data).unsqueeze(0)  # (1, 1, 3, H, W)
        except DecodeError as err:
            raise DecodeError(f"{path}: {err}; check the file or convert it") from err

    def answer(self, visual: str | Path, question: str, top_k: int = 5) -> list[Answer]:
        """Open-ended video or image QA: the ``top_k`` answers of the vocabulary."""
        pairs = self.module.answer(self.frames(visual), question, self.text_tokenizer, top_k)
        return [Answer(answer, prob) for answer, prob in pairs]

    def choose(self, visual: str | Path, question: str, options: list[str]) -> list[Answer]:
        """Multiple choice: each option's probability, best first. A retrieval model scores
        each option as a caption (its p(match)), as the MSRVTT multiple-choice test does."""
        probs = self.module.choose(self.frames(visual), question, options, self.text_tokenizer)
        ranked = sorted(zip(options, probs, strict=True), key=lambda pair: -pair[1])
        return [Answer(option, p) for option, p in ranked]

    def match(self, visual: str | Path, caption: str) -> float:
        """Retrieval: p(the caption describes the video)."""
        return self.module.match(self.frames(visual), caption, self.text_tokenizer)
