"""One video (or image) and one text in, answers out: the trained model outside any dataset.

    predictor = clipbert.Predictor.from_checkpoint("best.ckpt")          # or device="cuda"
    predictor.answer("clip.mp4", "what is the man doing?")               # open-ended QA
    predictor.choose("clip.mp4", "what does he do?", ["run", "jump", ...])  # multiple choice
    predictor.match("clip.mp4", "a man runs on a beach")                 # retrieval score

Frames are sampled, decoded and resized exactly as the checkpoint's evaluation loader does.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf

from clipbert.cli.predict import build_module
from clipbert.cli.run_record import load_run
from clipbert.data.collate import TextTokenizer, VideoQABatch
from clipbert.data.datamodule import load_tokenizer
from clipbert.data.datasets import FrameSampling, VideoClipReader
from clipbert.data.decoding import DecodeError, build_decoder, decode_image
from clipbert.data.store_tools import guess_extension
from clipbert.data.transforms import resize_pad
from clipbert.tasks.image_qa import ImageQATask
from clipbert.tasks.retrieval import RetrievalTask
from clipbert.tasks.video_qa import VideoMCTask, VideoQATask

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"}


@dataclass(frozen=True)
class Answer:
    """One candidate answer and its probability."""

    answer: str
    prob: float


class Predictor:
    """A trained task module with the frame and text processing of its evaluation data."""

    def __init__(
        self,
        module: pl.LightningModule,
        text_tokenizer: TextTokenizer,
        image_size: int,
        sampling: FrameSampling,
        decoder: str = "decord",
        device: str | torch.device = "cpu",
        decoder_fallback: str | None = "pyav",
        decode_timeout: float | None = 60.0,
    ) -> None:
        self.device = torch.device(device)
        self.module = module.eval().to(self.device)
        self.text_tokenizer = text_tokenizer
        self.image_size = image_size
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
        with tempfile.TemporaryDirectory() as folder:
            tokenizer = load_tokenizer(run.write_tokenizer(Path(folder)))
        sampling = dict(datamodule.get("eval_sampling") or {"n_clips": 1, "num_frames": 1})
        if n_clips is not None:
            sampling["n_clips"] = n_clips
        return cls(
            build_module(run, score_agg),
            TextTokenizer(tokenizer, datamodule.max_txt_len),
            datamodule.image_size,
            FrameSampling(**sampling),
            datamodule.get("decoder", "decord"),
            device,
            datamodule.get("decoder_fallback", "pyav"),
            datamodule.get("decode_timeout", 60.0),
        )

    def frames(self, visual: str | Path) -> torch.Tensor:
        """A video or image file -> model input (1, n_clips, num_frames, 3, S, S) on the device.

        An image is one clip of one frame, as the original's image tasks feed it.
        """
        path = Path(visual)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file; give the path of a video or image")
        clips = self._decode(path.read_bytes(), path)
        return resize_pad(clips.to(self.device), self.image_size).unsqueeze(0)

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

    def _batch(self, visual: str | Path, texts: list[str], question: str) -> VideoQABatch:
        input_ids, attention_mask = self.text_tokenizer(texts)
        frames = self.frames(visual)
        return VideoQABatch(
            frames=frames,
            input_ids=input_ids.to(self.device),
            attention_mask=attention_mask.to(self.device),
            visual_index=torch.zeros(len(texts), dtype=torch.long, device=self.device),
            labels=torch.zeros(1, dtype=torch.long, device=self.device),
            texts_per_question=len(texts),
            questions=[question],
        )

    @torch.no_grad()
    def answer(self, visual: str | Path, question: str, top_k: int = 5) -> list[Answer]:
        """Open-ended video or image QA: the ``top_k`` answers of the vocabulary."""
        if not isinstance(self.module, VideoQATask) or isinstance(self.module, VideoMCTask):
            raise TypeError(f"{type(self.module).__name__} does not answer open questions")
        logits = self.module(self._batch(visual, [question], question))
        probs = self.module.candidate_logits(logits)[0].float()
        probs = probs.sigmoid() if isinstance(self.module, ImageQATask) else probs.softmax(-1)
        top = probs.topk(min(top_k, probs.numel()))
        vocabulary = self.module.answer_vocabulary
        pairs = zip(top.indices.tolist(), top.values.tolist(), strict=True)
        return [Answer(vocabulary[i], p) for i, p in pairs]

    @torch.no_grad()
    def choose(self, visual: str | Path, question: str, options: list[str]) -> list[Answer]:
        """Multiple choice: each option's probability, best first. A retrieval model scores
        each option as a caption (its p(match)), as the MSRVTT multiple-choice test does."""
        if isinstance(self.module, RetrievalTask):
            texts = [f"{question} {o}".strip() for o in options]
            batch = self._batch(visual, texts, question)
            probs = self.module.option_scores(batch)[0]
        elif isinstance(self.module, VideoMCTask):
            if len(options) != self.module.num_options:
                raise ValueError(f"this model scores {self.module.num_options} options")
            texts = [f"{question} {o}" for o in options]
            probs = self.module(self._batch(visual, texts, question))[0].float().softmax(-1)
        else:
            raise TypeError(f"{type(self.module).__name__} does not score options")
        ranked = sorted(zip(options, probs.tolist(), strict=True), key=lambda pair: -pair[1])
        return [Answer(option, p) for option, p in ranked]

    @torch.no_grad()
    def match(self, visual: str | Path, caption: str) -> float:
        """Retrieval: p(the caption describes the video)."""
        if not isinstance(self.module, RetrievalTask):
            raise TypeError(f"{type(self.module).__name__} does not score captions")
        return float(self.module.option_scores(self._batch(visual, [caption], caption))[0, 0])
