"""Videos (or images) and texts in, answers out: the trained model outside any dataset.

    predictor = clipbert.Predictor.from_pretrained("msrvtt_qa")  # a model folder, or "org/name"
    predictor = clipbert.Predictor.from_checkpoint("best.ckpt")  # or model_step_N.pt, task=...
    predictor.answer("clip.mp4", "what is the man doing?")               # open-ended QA
    predictor.choose("clip.mp4", "what does he do?", ["run", "jump", ...])  # multiple choice
    predictor.match("clip.mp4", "a man runs on a beach")                 # retrieval score
    predictor.answer(["a.mp4", "b.mp4"], ["who sings?", "what falls?"])  # lists: batched
    answers, clips = predictor.answer("clip.mp4", "why?", per_clip=True)  # what each clip says
    seen = predictor.sampled("clip.mp4")  # the frames the model sees, and their times

Frames are sampled, decoded and resized exactly as the checkpoint's evaluation loader does.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

import torch
from omegaconf import OmegaConf, open_dict
from torch import Tensor

from clipbert.allocator import keep_freed_memory as keep_freed_allocations
from clipbert.data.annotations import option_texts
from clipbert.data.batches import batch_frames
from clipbert.data.decoding import DecodeError, build_decoder, decode_image
from clipbert.data.frame_sampling import FrameSampling
from clipbert.data.readers import VideoClipReader
from clipbert.data.store_tools import guess_extension
from clipbert.data.text import TextTokenizer
from clipbert.models.quantization import check_quantize, quantize_int8
from clipbert.runs.build import rebuild_module
from clipbert.runs.configs import compose_shipped
from clipbert.runs.devices import automatic_precision
from clipbert.runs.hub import model_folder_path
from clipbert.runs.model_folder import load_model_folder
from clipbert.runs.original import load_any_run
from clipbert.runs.record import TrainedRun
from clipbert.tasks.base import CandidateScores, ClipBertTask, question_batch

if TYPE_CHECKING:
    from typing_extensions import Unpack

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"}
DEFAULT_BATCH_SIZE = 8
# Lightning's names, as predict.py's `precision` takes them: autocast dtype (None: fp32)
AUTOCAST_DTYPES = {"32-true": None, "bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}


class PredictorOptions(TypedDict, total=False):
    """The constructor's keyword options, which the ``from_*`` loaders pass on."""

    precision: str
    batch_size: int
    quantize: str | None
    keep_freed_memory: bool


@dataclass(frozen=True)
class Answer:
    """One candidate answer and its probability."""

    answer: str
    prob: float


@dataclass(frozen=True)
class ClipScores:
    """What each of an input's clips says, beside the answer they give together (``per_clip``).

    ``logits`` are the head's logits of each clip (n_clips, C) over the C ``candidates`` (the
    answer vocabulary, the options, or the one caption), or (n_clips, C, 2) where a
    candidate's probability is a no-match/match softmax (retrieval). ``score_agg`` over the
    clips gives ``aggregated``, whose probability the call returned; ``probs`` (n_clips, C) is
    each clip's own probability, as if it were the only clip.
    """

    candidates: list[str]
    logits: Tensor
    aggregated: Tensor
    probs: Tensor
    score_agg: str


@dataclass(frozen=True, eq=False)  # compared and hashed as the object itself
class SampledFrames:
    """The frames the model sees of one file and when each was taken, so that a person can
    check whether the clips caught what a question is about.

    ``frames``: uint8 (n_clips, num_frames, 3, H, W) at the file's own size (the model resizes
    them); ``seconds``: each frame's time in the video (index / the video's frame rate, as
    evaluation reports it), one list per clip. An image (``image``) is one clip of one frame
    at 0.0. It can stand in for its file in the answering calls, which then decode nothing.
    """

    frames: Tensor
    seconds: list[list[float]]
    image: bool = False


Visual = str | Path | SampledFrames  # a file, or one already decoded (``Predictor.sampled``)

# One input's result, without or with ``per_clip``; a call given lists returns a list of them.
Ranked = list[Answer] | tuple[list[Answer], ClipScores]
Matched = float | tuple[float, ClipScores]


class Predictor:
    """A trained task module with the frame sampling and text processing of its evaluation
    data. What the task can answer (open questions, options, captions) is the task's to say:
    asking a model for what it cannot score raises ``TypeError``.

    Each call takes one input (a file and its text) or lists of them, and returns one result
    or a list of results in the same order. Lists go through the model ``batch_size`` inputs
    at a time; a file asked several questions in one batch is decoded and encoded once.
    ``precision`` is Lightning's name of it: ``auto`` is bf16 autocast on a GPU that has it
    (fp16 on older ones), fp32 on the CPU. ``quantize="int8"`` (CPU, with fp32 precision) runs
    a copy of the model with int8 linear layers and an int8 CNN that calibrates on the first
    32 frames it sees, answering them in fp32 (:mod:`clipbert.models.quantization`; call
    ``quantize_int8`` yourself and pass the module for other choices). On the CPU it sets
    glibc to keep freed memory for reuse, as ``predict.py`` does (:mod:`clipbert.allocator`;
    process-wide: resident memory stays at its peak); ``keep_freed_memory=False`` leaves malloc
    alone, and evaluation then runs the CNN in passes small enough for glibc to reuse their
    memory.
    """

    def __init__(
        self,
        module: ClipBertTask,
        text_tokenizer: TextTokenizer,
        sampling: FrameSampling,
        decoder: str = "auto",
        device: str | torch.device = "cpu",
        decoder_fallback: str | None = "pyav",
        decode_timeout: float | None = 60.0,
        *,
        precision: str = "auto",
        batch_size: int = DEFAULT_BATCH_SIZE,
        quantize: str | None = None,
        keep_freed_memory: bool = True,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.device = torch.device(device)
        if precision == "auto":
            precision = automatic_precision("gpu" if self.device.type == "cuda" else "cpu")
        if precision not in AUTOCAST_DTYPES:
            raise ValueError(
                f"precision must be auto or one of {', '.join(AUTOCAST_DTYPES)}, got {precision!r}"
            )
        if keep_freed_memory and self.device.type == "cpu":
            keep_freed_allocations()  # what predict.py sets: large activations are reused
        check_quantize(quantize, self.device, precision)
        self.precision = precision
        self.batch_size = batch_size
        self.quantize = quantize
        module = module.eval().to(self.device)
        self.module = quantize_int8(module) if quantize == "int8" else module
        self.text_tokenizer = text_tokenizer
        self.reader = VideoClipReader(
            None, build_decoder(decoder, decoder_fallback, decode_timeout), sampling
        )

    @classmethod
    def from_run(
        cls,
        run: TrainedRun,
        device: str | torch.device = "cpu",
        n_clips: int | None = None,
        score_agg: str | None = None,
        **options: Unpack[PredictorOptions],
    ) -> Predictor:
        """Rebuild the model, tokenizer and evaluation sampling of a loaded run; ``options``
        are the constructor's (``precision``, ``batch_size``, ``quantize``,
        ``keep_freed_memory``), as for ``from_checkpoint`` and ``from_pretrained``."""
        datamodule = OmegaConf.create(run.config).task.datamodule
        sampling = dict(datamodule.get("eval_sampling") or {"n_clips": 1, "num_frames": 1})
        if n_clips is not None:
            sampling["n_clips"] = n_clips
        return cls(
            rebuild_module(run, score_agg=score_agg),
            TextTokenizer(run.tokenizer(), datamodule.max_txt_len),
            FrameSampling(**sampling),
            datamodule.get("decoder", "auto"),
            device,
            datamodule.get("decoder_fallback", "pyav"),
            datamodule.get("decode_timeout", 60.0),
            **options,
        )

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        device: str | torch.device = "cpu",
        n_clips: int | None = None,
        score_agg: str | None = None,
        trusted_targets: Sequence[str] = (),
        *,
        task: str | None = None,
        data_root: str | Path | None = None,
        ans2label: str | Path | None = None,
        **options: Unpack[PredictorOptions],
    ) -> Predictor:
        """A ``train.py`` or ``convert.py`` checkpoint (or model folder), or an original
        ClipBERT ``model_step_N.pt`` with the ``task`` it was fine-tuned for, paired with that
        task's config as ``predict.py task=NAME`` pairs it: its tokenizer and answers are read
        under ``data_root`` (``ans2label``: another answers file, the original's
        ``--ans2label_path``). ``trusted_targets``: classes a recorded config may name beyond
        clipbert's own."""
        cfg = compose_shipped("predict", [f"task={task}"] if task else [])
        with open_dict(cfg):
            cfg.data_root = None if data_root is None else str(data_root)
            cfg.trusted_targets = list(trusted_targets)
        run = load_any_run(path, cfg, None if ans2label is None else str(ans2label))
        return cls.from_run(run, device, n_clips, score_agg, **options)

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path,
        device: str | torch.device = "cpu",
        n_clips: int | None = None,
        score_agg: str | None = None,
        trusted_targets: Sequence[str] = (),
        *,
        revision: str | None = None,
        cache_dir: str | Path | None = None,
        local_files_only: bool = False,
        **options: Unpack[PredictorOptions],
    ) -> Predictor:
        """A model folder (``convert.py to=folder``), local or a Hugging Face Hub repository id
        (``org/name``, at ``revision``) fetched through the Hub cache (``HF_HUB_CACHE``,
        ``cache_dir``); with ``HF_HUB_OFFLINE=1`` or ``local_files_only`` only the cache is
        read."""
        folder = model_folder_path(
            name_or_path, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only
        )
        run = load_model_folder(folder, trusted_targets)
        return cls.from_run(run, device, n_clips, score_agg, **options)

    def with_sampling(self, **changes: object) -> Predictor:
        """This predictor with other frame sampling (``n_clips=8``, as ``from_run`` takes it),
        sharing the model, tokenizer and decoder: trying a setting reloads nothing."""
        other = copy.copy(self)
        sampling = dataclasses.replace(self.reader.sampling, **changes)
        other.reader = VideoClipReader(None, self.reader.decoder, sampling)
        return other

    def sampled(self, visual: Visual) -> SampledFrames:
        """A video or image file -> the frames the model sees of it and their place in the
        video, decoded and sampled exactly as the answering calls decode and sample them.
        Give the result to those calls instead of the file to decode it only once."""
        return self._sample(_existing([visual])[0])

    def frames(self, visual: Visual) -> Tensor:
        """A video or image file -> its sampled uint8 frames (1, n_clips, num_frames, 3, H, W)
        on the device, at the file's own size (the model resizes them).

        An image is one clip of one frame, as the original's image tasks feed it.
        """
        return self._read(_existing([visual])[0]).to(self.device).unsqueeze(0)

    def _read(self, visual: Path | SampledFrames) -> Tensor:
        """uint8 clips of a file (see ``_sample``), or of frames already sampled."""
        return self._sample(visual).frames

    def _sample(self, visual: Path | SampledFrames) -> SampledFrames:
        """The clips of a file and when each frame was taken; a JPEG or PNG under a video
        extension (or a video under an image one) is read as what its bytes are, not as its
        name says. Frames already sampled are taken as they are."""
        if isinstance(visual, SampledFrames):
            return visual
        path = visual
        data = path.read_bytes()
        kind = guess_extension(data)
        as_image = kind in ("jpg", "png") or (
            kind not in ("mp4", "mkv", "avi") and path.suffix.lower() in IMAGE_SUFFIXES
        )
        if not as_image:
            frames, times = self.reader.decode_timed(data, str(path))
            per_clip = frames.shape[1]
            clips = [times[i : i + per_clip] for i in range(0, len(times), per_clip)]
            return SampledFrames(frames, clips)
        try:
            image = decode_image(data).unsqueeze(0)  # (1, 1, 3, H, W)
        except DecodeError as err:
            raise DecodeError(f"{path}: {err}; check the file or convert it") from err
        return SampledFrames(image, [[0.0]], image=True)

    def answer(
        self,
        visual: Visual | Sequence[Visual],
        question: str | Sequence[str],
        top_k: int = 5,
        *,
        per_clip: bool = False,
    ) -> Ranked | list[Ranked]:
        """Open-ended video or image QA: the ``top_k`` answers of the vocabulary, best first
        (a list of such lists for lists of files and questions). ``per_clip``: each result is
        ``(answers, ClipScores)``, the clips' scores over the whole vocabulary."""
        visuals, questions, many = _paired(visual, question, "question")
        scored = self._score(self.module.answer, visuals, [[q] for q in questions], None)
        results = []
        for probs, clips in scored:
            top = probs.topk(min(top_k, probs.numel()))
            pairs = zip(top.indices.tolist(), top.values.tolist(), strict=True)
            answers = [Answer(clips.candidates[i], p) for i, p in pairs]
            results.append((answers, clips) if per_clip else answers)
        return results if many else results[0]

    def choose(
        self,
        visual: Visual | Sequence[Visual],
        question: str | Sequence[str],
        options: Sequence[str] | Sequence[Sequence[str]],
        *,
        per_clip: bool = False,
    ) -> Ranked | list[Ranked]:
        """Multiple choice: each option's probability, best first (for lists, ``options`` holds
        one list of options per question). A retrieval model scores each option as a caption
        (its p(match)), as the MSRVTT multiple-choice test does. ``per_clip``: each result is
        ``(answers, ClipScores)``, the clips' scores in the options' order."""
        visuals, questions, many = _paired(visual, question, "question")
        option_lists = _option_lists(options, len(visuals), many)
        rows = [option_texts(q, opts) for q, opts in zip(questions, option_lists, strict=True)]
        scored = self._score(self.module.choose, visuals, rows, option_lists)
        results = []
        for (probs, clips), opts in zip(scored, option_lists, strict=True):
            ranked = sorted(zip(opts, probs.tolist(), strict=True), key=lambda pair: -pair[1])
            answers = [Answer(option, p) for option, p in ranked]
            results.append((answers, clips) if per_clip else answers)
        return results if many else results[0]

    def match(
        self,
        visual: Visual | Sequence[Visual],
        caption: str | Sequence[str],
        *,
        per_clip: bool = False,
    ) -> Matched | list[Matched]:
        """Retrieval: p(the caption describes the video) (a list of them for lists of files
        and captions). ``per_clip``: each result is ``(p, ClipScores)``."""
        visuals, captions, many = _paired(visual, caption, "caption")
        scored = self._score(self.module.match, visuals, [[c] for c in captions], None)
        results = [(float(p[0]), clips) if per_clip else float(p[0]) for p, clips in scored]
        return results if many else results[0]

    def _score(
        self,
        method: Callable[..., CandidateScores],
        visuals: list[Path | SampledFrames],
        rows: list[list[str]],
        candidates: list[list[str]] | None,
    ) -> list[tuple[Tensor, ClipScores]]:
        """Each input's probabilities and clip scores from the task's ``method``, in
        ``batch_size`` chunks. Inputs of a chunk whose frames differ in clips x frames (an
        image beside a video) or whose text rows differ in number go in separate batches."""
        results: list[tuple[Tensor, ClipScores]] = []
        for start in range(0, len(visuals), self.batch_size):
            chunk = range(start, min(start + self.batch_size, len(visuals)))
            frames = {}
            for i in chunk:
                if visuals[i] not in frames:
                    frames[visuals[i]] = self._read(visuals[i])
            groups: dict[tuple, list[int]] = {}
            for i in chunk:
                key = (tuple(frames[visuals[i]].shape[:-3]), len(rows[i]))
                groups.setdefault(key, []).append(i)
            scored: dict[int, tuple[Tensor, ClipScores]] = {}
            for members in groups.values():
                files = list(dict.fromkeys(visuals[i] for i in members))
                batch = question_batch(
                    batch_frames([frames[f].to(self.device) for f in files]),
                    [text for i in members for text in rows[i]],
                    [files.index(visuals[i]) for i in members],
                    len(rows[members[0]]),
                    self.text_tokenizer,
                    self.device,
                )
                with torch.inference_mode(), self._autocast():
                    scores = method(batch)
                for j, i in enumerate(members):
                    names = candidates[i] if candidates is not None else scores.labels or rows[i]
                    scored[i] = _clip_scores(scores, j, names, self.module.score_agg)
            results += [scored[i] for i in chunk]
        return results

    def _autocast(self) -> contextlib.AbstractContextManager:
        dtype = AUTOCAST_DTYPES[self.precision]
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=dtype)


def _clip_scores(
    scores: CandidateScores, row: int, candidates: list[str], score_agg: str
) -> tuple[Tensor, ClipScores]:
    """Question ``row``'s probabilities and clip scores, as float32 on the CPU."""
    return scores.probs[row].float().cpu(), ClipScores(
        candidates=list(candidates),
        logits=scores.clip_logits[row].float().cpu(),
        aggregated=scores.logits[row].float().cpu(),
        probs=scores.clip_probs[row].float().cpu(),
        score_agg=score_agg,
    )


def _is_many(value: object) -> bool:
    return isinstance(value, list | tuple)


def _paired(
    visual: Visual | Sequence[Visual], text: str | Sequence[str], name: str
) -> tuple[list[Path | SampledFrames], list[str], bool]:
    """The files and texts of a call as two lists of equal length, and whether the call gave
    lists (then it returns a list)."""
    many = _is_many(visual)
    if not many:
        if _is_many(text):
            raise ValueError(
                f"{name} is a list but visual is one file: give visual as a list too, one file "
                f"per {name} (a file repeated is decoded once per batch)"
            )
        return _existing([visual]), [text], False
    if not _is_many(text):
        raise ValueError(f"visual is a list of {len(visual)} files: give {name} as a list too")
    if len(visual) != len(text):
        raise ValueError(
            f"visual has {len(visual)} files but {name} has {len(text)} items: give one {name} "
            "per file"
        )
    return _existing(visual), list(text), True


def _option_lists(
    options: Sequence[str] | Sequence[Sequence[str]], count: int, many: bool
) -> list[list[str]]:
    """One list of options per question: ``options`` itself for one question, else its
    items, which must be lists."""
    if not many:
        return [list(options)]
    if len(options) != count or not all(_is_many(item) for item in options):
        raise ValueError(
            f"options: give one list of options per file ({count} lists), got {len(options)} items"
        )
    return [list(item) for item in options]


def _existing(visuals: Sequence[Visual]) -> list[Path | SampledFrames]:
    """The files as paths, all checked before any is decoded: a long list fails at once on a
    missing file, not after the files before it were scored. Sampled frames stay as they are."""
    paths = [v if isinstance(v, SampledFrames) else Path(v) for v in visuals]
    missing = [str(p) for p in paths if isinstance(p, Path) and not p.is_file()]
    if missing:
        listed = ", ".join(missing[:3]) + (
            f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        )
        raise FileNotFoundError(f"{listed}: no such file; give the path of a video or image")
    return paths
