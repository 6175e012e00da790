"""A small synthetic video-QA dataset, generated deterministically from a seed.

Each video shows 1-3 identical shapes of one colour on a dark or light grey background, either
still or moving as a rigid group horizontally or vertically. Every video gets one question about
colour, shape, count and motion, and captions that name all five attributes. Colour, shape and
count can be read from any single frame; motion needs two frames taken at different times, so
the data checks that sparse multi-frame sampling works.

The files follow the original ClipBERT storage layout (raw videos, an LMDB ``vis_db`` built by the
project's own preprocessing, a jsonl ``txt_db`` with ``ans2label.json``, a WordPiece vocabulary),
so the demo exercises exactly the code paths a real dataset uses.
"""

from __future__ import annotations

import fcntl
import itertools
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from clipbert.atomic_files import write_text_atomic
from clipbert.data.lmdb_builder import build_vis_db

log = logging.getLogger("clipbert.demo")

GENERATOR_VERSION = 7
DATASET_NAME = "demo_video_qa"
IMAGE_DATASET_NAME = "demo_image_qa"
TOKENIZER_NAME = "demo_tokenizer"

WIDTH = 160
HEIGHT = 120
FPS = 10
NUM_FRAMES = 30  # 3 s at FPS
MARGIN = 2  # px kept free at the frame border
GAP = 3  # px kept free between two shapes
SIZE_RANGE = (22, 30)  # shape side / diameter in px
TRAVEL_RANGE = (0.45, 0.55)  # distance travelled over the video, as a fraction of the side
NOISE_STD = 3.0  # static background noise, grey levels

SPLITS = ("train", "val", "test")
DEFAULT_SIZES: Mapping[str, int] = {"train": 1440, "val": 80, "test": 120}

COLORS: Mapping[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 190, 60),
    "blue": (40, 70, 230),
    "yellow": (235, 215, 40),
}
SHAPES = ("circle", "square", "triangle")
COUNT_WORDS = ("one", "two", "three")
MOTIONS = ("still", "horizontally", "vertically")
TONES: Mapping[str, tuple[int, int]] = {"dark": (40, 90), "light": (150, 200)}  # grey levels
ANSWER_TYPES = ("color", "shape", "count", "motion")
ANSWER_VALUES: Mapping[str, tuple[str, ...]] = {
    "color": tuple(COLORS),
    "shape": SHAPES,
    "count": COUNT_WORDS,
    "motion": MOTIONS,
}

TEMPLATES: Mapping[str, tuple[str, ...]] = {
    "color": (
        "what color are the shapes?",
        "what colour are the objects?",
        "which color do the shapes have?",
    ),
    "shape": (
        "what shape do you see?",
        "what shape are the objects?",
        "which shape is shown in the video?",
    ),
    "count": (
        "how many shapes are there?",
        "how many objects are in the video?",
        "what is the number of shapes?",
    ),
    "motion": (
        "how are the shapes moving?",
        "in which direction do the objects move?",
        "how do the shapes move in the video?",
    ),
}

NUM_OPTIONS = 5
CAPTION_TEMPLATES = (
    "{count} {color} {shape} {motion} on a {tone} background",
    "a video of {count} {color} {shape} {motion} on a {tone} background",
    "there are {count} {color} {shape} {motion} on a {tone} background",
)
MOTION_PHRASES: Mapping[str, str] = {
    "still": "standing still",
    "horizontally": "moving horizontally",
    "vertically": "moving vertically",
}
IMAGE_CAPTION_TEMPLATES = (  # the video captions' words, without motion
    "{count} {color} {shape} on a {tone} background",
    "there are {count} {color} {shape} on a {tone} background",
)
CAPTIONS_PER_TRAIN_VIDEO = 2

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
_WORD = re.compile(r"\w+|[^\w\s]")


@dataclass(frozen=True)
class DemoPaths:
    """Where the demo dataset lives under a data root (the original's storage layout)."""

    root: Path
    txt_db: Path
    vis_db: Path
    raw: Path
    tokenizer_dir: Path
    ans2label: Path
    image_txt_db: Path  # image QA: still frames of the same kind of scenes (the VQA shape)
    image_vis_db: Path
    image_raw: Path

    @classmethod
    def under(cls, root: str | Path) -> DemoPaths:
        root = Path(root)
        txt_db = root / "txt_db" / DATASET_NAME
        return cls(
            root=root,
            txt_db=txt_db,
            vis_db=root / "vis_db" / DATASET_NAME,
            raw=root / "raw" / DATASET_NAME,
            tokenizer_dir=root / "pretrained" / TOKENIZER_NAME,
            ans2label=txt_db / "ans2label.json",
            image_txt_db=root / "txt_db" / IMAGE_DATASET_NAME,
            image_vis_db=root / "vis_db" / IMAGE_DATASET_NAME,
            image_raw=root / "raw" / IMAGE_DATASET_NAME,
        )

    def split(self, name: str) -> Path:
        """The open-ended jsonl file of one split."""
        return self.txt_db / f"{name}.jsonl"

    def mc_split(self, name: str) -> Path:
        """The multiple-choice jsonl file of one split (same videos and questions)."""
        return self.txt_db / f"mc_{name}.jsonl"

    def image_caption_split(self, name: str) -> Path:
        """The captions of one split's images, ``{image_id, caption}`` (pre-training)."""
        return self.image_txt_db / f"captions_{name}.jsonl"

    def retrieval_split(self, name: str) -> Path:
        """The captions of one split's videos (2 per training video, 1 per evaluation video)."""
        return self.txt_db / f"ret_{name}.jsonl"

    @property
    def marker(self) -> Path:
        return self.txt_db / ".demo_complete.json"

    def pieces(self) -> tuple[Path, ...]:
        """The directories that are swapped in as a whole once generation succeeds."""
        return (
            self.raw,
            self.vis_db,
            self.txt_db,
            self.tokenizer_dir,
            self.image_raw,
            self.image_vis_db,
            self.image_txt_db,
        )


@dataclass(frozen=True)
class VideoSpec:
    """Everything needed to draw one video; the group origin moves linearly from start to end."""

    video_id: str
    shape: str
    color: str
    count: int
    motion: str
    direction: int  # +1 / -1 along the motion axis, 0 when still
    size: int
    offsets: tuple[tuple[int, int], ...]  # (x, y) of each shape's top-left corner in the group
    start: tuple[float, float]  # (x, y) of the group origin in the first frame
    end: tuple[float, float]  # ... and in the last frame
    tone: str  # "dark" or "light" background, named in the captions
    background: int  # its grey level

    def origin(self, frame_index: int) -> tuple[int, int]:
        """Group origin in one frame: constant velocity, rounded to whole pixels."""
        a = frame_index / (NUM_FRAMES - 1)
        x = self.start[0] + a * (self.end[0] - self.start[0])
        y = self.start[1] + a * (self.end[1] - self.start[1])
        return round(x), round(y)


# ----------------------------------------------------------------------------- sampling


def _balanced(rng: np.random.Generator, n_classes: int, n: int) -> np.ndarray:
    """Class indices with every class as often as possible (counts differ by at most one)."""
    return rng.permutation(np.resize(np.arange(n_classes), n))


def _distinct_balanced(
    rng: np.random.Generator, n_classes: Sequence[int], n: int
) -> list[tuple[int, ...]]:
    """n distinct combinations of class indices (n <= #combinations), every column balanced.

    Starts from independent balanced columns and swaps one column's values between two rows
    (which keeps every column balanced) whenever that turns a repeated row into an unused
    combination without repeating another.
    """
    columns = [_balanced(rng, k, n).tolist() for k in n_classes]
    rows = [tuple(row) for row in zip(*columns, strict=True)]
    counts = Counter(rows)
    for _ in range(1000 * n):
        repeated = [i for i, row in enumerate(rows) if counts[row] > 1]
        if not repeated:
            return rows
        i, j = int(rng.choice(repeated)), int(rng.integers(n))
        column = int(rng.integers(len(n_classes)))
        new_i = rows[i][:column] + (rows[j][column],) + rows[i][column + 1 :]
        new_j = rows[j][:column] + (rows[i][column],) + rows[j][column + 1 :]
        counts.subtract([rows[i], rows[j]])
        if new_i != new_j and counts[new_i] == 0 and counts[new_j] == 0:
            rows[i], rows[j] = new_i, new_j
        counts.update([rows[i], rows[j]])
    raise RuntimeError(f"no balanced design of {n} distinct combinations of {n_classes} found")


def balanced_design(rng: np.random.Generator, n_classes: Sequence[int], n: int) -> np.ndarray:
    """(n, attributes) class indices, shuffled: every column balanced (class counts differ by at
    most one) and no combination used more than ceil(n / #combinations) times.

    Independent balanced columns repeat combinations by chance (a 120-video split drawn that way
    has only ~80 distinct ones); then captions cannot tell their videos apart and retrieval's
    R@1 is capped far below 1. Here whole copies of the full factorial come first, and the rest
    is a distinct balanced set, or a full copy less one when the rest is over half a copy (the
    complement of a balanced set is balanced too).
    """
    combinations = list(itertools.product(*(range(k) for k in n_classes)))
    copies, rest = divmod(n, len(combinations))
    rows = combinations * copies
    if 2 * rest <= len(combinations):
        rows += _distinct_balanced(rng, n_classes, rest) if rest else []
    else:
        left_out = set(_distinct_balanced(rng, n_classes, len(combinations) - rest))
        rows += [row for row in combinations if row not in left_out]
    return np.array(rows)[rng.permutation(n)]


def _layout(
    rng: np.random.Generator, count: int, size: int, box: tuple[int, int]
) -> tuple[tuple[int, int], ...] | None:
    """Non-overlapping shape positions inside box (w, h), normalised to a tight group; None if
    random placement keeps failing (the caller then draws a smaller size or travel)."""
    for _ in range(50):
        xs = rng.integers(0, box[0] - size + 1, count)
        ys = rng.integers(0, box[1] - size + 1, count)
        apart = all(
            abs(int(xs[i] - xs[j])) >= size + GAP or abs(int(ys[i] - ys[j])) >= size + GAP
            for i in range(count)
            for j in range(i)
        )
        if apart:
            return tuple(
                (int(x - xs.min()), int(y - ys.min())) for x, y in zip(xs, ys, strict=True)
            )
    return None


def _path(
    rng: np.random.Generator, axis: int, extent: tuple[int, int], travel: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """A straight path of the group origin along one axis that keeps the group inside the frame.

    The start is drawn so that the whole path fits; the direction sign is chosen by the caller.
    """
    frame = np.array([WIDTH, HEIGHT], dtype=float)
    hi = frame - MARGIN - np.array(extent, dtype=float)  # last valid origin on each axis
    start = np.array([rng.uniform(MARGIN, hi[0]), rng.uniform(MARGIN, hi[1])])
    start[axis] = rng.uniform(MARGIN, hi[axis] - travel[axis])
    end = start.copy()
    end[axis] += travel[axis]
    return start, end


def sample_spec(
    rng: np.random.Generator,
    video_id: str,
    shape: str,
    color: str,
    count: int,
    motion: str,
    tone: str,
) -> VideoSpec:
    """Draw size, layout, path and grey level for a video with the given attributes.

    Every group fits a box that could travel along either axis, and a still group is frozen at a
    random point of such a path, so one frame's layout and position say nothing about motion.
    """
    while True:
        size = int(rng.integers(SIZE_RANGE[0], SIZE_RANGE[1] + 1))
        fraction = rng.uniform(*TRAVEL_RANGE)
        travel = (fraction * WIDTH, fraction * HEIGHT)
        box = (int(WIDTH - travel[0]) - 2 * MARGIN, int(HEIGHT - travel[1]) - 2 * MARGIN)
        offsets = _layout(rng, count, size, box)
        if offsets is not None:
            break
    extent = (max(x for x, _ in offsets) + size, max(y for _, y in offsets) + size)
    axis = int(rng.integers(2)) if motion == "still" else MOTIONS.index(motion) - 1
    start, end = _path(rng, axis, extent, travel)
    direction = int(rng.choice([-1, 1]))
    if direction < 0:
        start, end = end, start
    if motion == "still":
        start = end = start + rng.uniform() * (end - start)
        direction = 0
    low, high = TONES[tone]
    background = int(rng.integers(low, high + 1))
    return VideoSpec(
        video_id=video_id,
        shape=shape,
        color=color,
        count=count,
        motion=motion,
        direction=direction,
        size=size,
        offsets=offsets,
        start=(float(start[0]), float(start[1])),
        end=(float(end[0]), float(end[1])),
        tone=tone,
        background=background,
    )


def design_split(seed: int, split: str, n: int) -> list[VideoSpec]:
    """The videos of one split: balanced shape, colour, count, motion and background classes,
    each combination as rare as the split's size allows (see ``balanced_design``)."""
    split_index = SPLITS.index(split)
    attributes = (SHAPES, tuple(COLORS), COUNT_WORDS, MOTIONS, tuple(TONES))
    design = balanced_design(
        np.random.default_rng([seed, split_index, 0]), [len(a) for a in attributes], n
    )
    specs = []
    for i, (s, c, k, m, t) in enumerate(design.tolist()):
        rng = np.random.default_rng([seed, split_index, i + 1])
        video_id = f"demo_{split}_{i:04d}"
        specs.append(
            sample_spec(
                rng, video_id, SHAPES[s], attributes[1][c], k + 1, MOTIONS[m], attributes[4][t]
            )
        )
    return specs


# ----------------------------------------------------------------------------- rendering


def shape_mask(shape: str, size: int) -> np.ndarray:
    """A (size, size) boolean mask of the shape, touching all four sides of its box."""
    yy, xx = np.mgrid[0:size, 0:size].astype(float) + 0.5
    centre = size / 2
    if shape == "circle":
        return (xx - centre) ** 2 + (yy - centre) ** 2 <= centre**2
    if shape == "square":
        return np.ones((size, size), dtype=bool)
    if shape == "triangle":  # apex up, base at the bottom
        return np.abs(xx - centre) <= yy / 2
    raise ValueError(f"unknown shape {shape!r}")


def render_video(spec: VideoSpec, rng: np.random.Generator) -> np.ndarray:
    """Draw all frames of a video as a (T, H, W, 3) uint8 RGB array; rng draws the noise."""
    noise = rng.normal(0.0, NOISE_STD, (HEIGHT, WIDTH, 1))
    background = np.clip(spec.background + noise, 0, 255).astype(np.uint8)
    frames = np.repeat(np.broadcast_to(background, (HEIGHT, WIDTH, 3))[None], NUM_FRAMES, axis=0)
    mask = shape_mask(spec.shape, spec.size)
    color = np.array(COLORS[spec.color], dtype=np.uint8)
    for t in range(NUM_FRAMES):
        ox, oy = spec.origin(t)
        for dx, dy in spec.offsets:
            x, y = ox + dx, oy + dy
            frames[t, y : y + spec.size, x : x + spec.size][mask] = color
    return frames


def write_mp4(frames: np.ndarray, path: str | Path, fps: int = FPS) -> None:
    """Encode RGB frames as H.264 (yuv420p) mp4 with reproducible bytes: one encoder thread, and
    no macroblock tree (x264's mbtree code reads uninitialised memory, so its output varied
    with the state of the process's heap)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width = frames.shape[2]
        stream.height = frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "18", "preset": "fast", "threads": "1", "x264-params": "mbtree=0"}
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


# ----------------------------------------------------------------------------- text


def answers(spec: VideoSpec) -> dict[str, str]:
    """The answer of each answer type for a video."""
    return {
        "color": spec.color,
        "shape": spec.shape,
        "count": COUNT_WORDS[spec.count - 1],
        "motion": spec.motion,
    }


def questions(spec: VideoSpec, rng: np.random.Generator) -> list[dict[str, str]]:
    """One question per answer type, phrased by a template the rng picks."""
    return [
        {
            "video_id": spec.video_id,
            "question": str(rng.choice(TEMPLATES[kind])),
            "answer": answer,
            "answer_type": kind,
        }
        for kind, answer in answers(spec).items()
    ]


def multiple_choice(
    question: dict[str, str], rng: np.random.Generator
) -> dict[str, str | int | list[str]]:
    """The question with 5 options: every answer of its type, filled up with answers of other
    types, shuffled (TGIF Action / Transition shape: ``options`` and an ``answer`` index)."""
    kind = question["answer_type"]
    own = list(ANSWER_VALUES[kind])
    others = [a for other, values in ANSWER_VALUES.items() if other != kind for a in values]
    fill = [str(a) for a in rng.choice(others, NUM_OPTIONS - len(own), replace=False)]
    options = [str(a) for a in rng.permutation(own + fill)]
    return {
        "video_id": question["video_id"],
        "question": question["question"],
        "options": options,
        "answer": options.index(question["answer"]),
        "answer_type": kind,
    }


def captions(spec: VideoSpec, rng: np.random.Generator, n: int) -> list[str]:
    """``n`` captions naming every attribute of the video (MSRVTT retrieval shape)."""
    values = {**answers(spec), "motion": MOTION_PHRASES[spec.motion], "tone": spec.tone}
    templates = rng.choice(CAPTION_TEMPLATES, n, replace=False)
    return [str(template).format(**values) for template in templates]


IMAGE_QUESTION_TYPES: Mapping[str, str] = {  # demo answer type -> VQA answer type
    "color": "other",
    "shape": "other",
    "count": "number",
}
YES_NO_TEMPLATE = "are the shapes {color}?"


def image_captions(spec: VideoSpec, rng: np.random.Generator, n: int) -> list[str]:
    """``n`` captions of a still image of the scene: count, colour, shape and background."""
    values = {**answers(spec), "tone": spec.tone}
    templates = rng.choice(IMAGE_CAPTION_TEMPLATES, n, replace=False)
    return [str(template).format(**values) for template in templates]


def image_questions(spec: VideoSpec, image_id: str, rng: np.random.Generator) -> list[dict]:
    """Colour, shape, count and one yes/no question about a still image (VQA shape: soft
    ``labels`` and the VQA answer types)."""
    rows = [
        {
            "image_id": image_id,
            "question": str(rng.choice(TEMPLATES[kind])),
            "labels": {answer: 1.0},
            "answer_type": IMAGE_QUESTION_TYPES[kind],
        }
        for kind, answer in answers(spec).items()
        if kind in IMAGE_QUESTION_TYPES
    ]
    asked = (
        spec.color
        if rng.uniform() < 0.5
        else str(rng.choice([c for c in COLORS if c != spec.color]))
    )
    rows.append(
        {
            "image_id": image_id,
            "question": YES_NO_TEMPLATE.format(color=asked),
            "labels": {"yes" if asked == spec.color else "no": 1.0},
            "answer_type": "yes/no",
        }
    )
    return rows


def image_answers() -> list[str]:
    return sorted([*COLORS, *SHAPES, *COUNT_WORDS, "yes", "no"])


def _generate_images(staging: DemoPaths, seed: int, sizes: Mapping[str, int], bar: tqdm) -> None:
    """Still images (the first frame of scenes drawn like the videos) with VQA-shaped questions
    and captions (2 per training image, 1 per evaluation image)."""
    for directory in (staging.image_raw, staging.image_txt_db):
        directory.mkdir(parents=True)
    question_id = 0
    for split_index, split in enumerate(SPLITS):
        rows, caption_rows = [], []
        n_captions = CAPTIONS_PER_TRAIN_VIDEO if split == "train" else 1
        for i, spec in enumerate(design_split(seed + 1, split, sizes[split])):
            rng = np.random.default_rng([seed + 1, split_index, i + 1, 1])
            image_id = spec.video_id.replace("demo_", "img_")
            Image.fromarray(render_video(spec, rng)[0]).save(staging.image_raw / f"{image_id}.png")
            for row in image_questions(spec, image_id, rng):
                rows.append({**row, "question_id": question_id})
                question_id += 1
            for caption in image_captions(spec, rng, n_captions):
                caption_rows.append({"image_id": image_id, "caption": caption})
            bar.update()
        _write_jsonl(staging.image_txt_db / f"{split}.jsonl", rows)
        _write_jsonl(staging.image_caption_split(split), caption_rows)
    ans2label = {answer: label for label, answer in enumerate(image_answers())}
    (staging.image_txt_db / "ans2label.json").write_text(json.dumps(ans2label, indent=2) + "\n")
    staging.image_vis_db.parent.mkdir(parents=True, exist_ok=True)
    build_vis_db(
        staging.image_raw,
        staging.image_vis_db,
        file_type="image",
        extensions=["png"],
        progress=False,
    )


def all_answers() -> list[str]:
    return sorted([*COLORS, *SHAPES, *COUNT_WORDS, *MOTIONS])


def vocabulary() -> list[str]:
    """WordPiece vocabulary: special tokens, then every word and punctuation mark, sorted."""
    texts = [t for templates in TEMPLATES.values() for t in templates] + all_answers()
    texts += [t.format(count="", color="", shape="", motion="", tone="") for t in CAPTION_TEMPLATES]
    texts += list(TONES)
    texts += list(MOTION_PHRASES.values()) + [YES_NO_TEMPLATE.format(color="")]
    words = {w for text in texts for w in _WORD.findall(text.lower())}
    return [*SPECIAL_TOKENS, *sorted(words)]


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    with path.open("w") as f:
        f.writelines(json.dumps(row) + "\n" for row in rows)


def write_tokenizer(directory: Path) -> None:
    """A tiny BERT tokenizer that covers every question and answer of the demo."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.txt").write_text("\n".join(vocabulary()) + "\n")
    config = {"do_lower_case": True, "tokenizer_class": "BertTokenizer"}
    (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")


# ----------------------------------------------------------------------------- orchestration


def _resolve_sizes(sizes: Mapping[str, int] | None) -> dict[str, int]:
    resolved = dict(DEFAULT_SIZES)
    resolved.update(sizes or {})
    if set(resolved) != set(SPLITS) or any(int(n) < 1 for n in resolved.values()):
        raise ValueError(f"sizes must give a positive count for each of {SPLITS}, got {sizes}")
    return {split: int(resolved[split]) for split in SPLITS}


def _marker_content(seed: int, sizes: Mapping[str, int]) -> dict:
    return {"version": GENERATOR_VERSION, "seed": seed, "sizes": dict(sizes)}


def _is_complete(paths: DemoPaths, expected: dict) -> bool:
    try:
        found = json.loads(paths.marker.read_text())
    except (OSError, ValueError):
        return False
    return all(found.get(key) == value for key, value in expected.items())


@contextmanager
def _exclusive_lock(root: Path) -> Iterator[None]:
    """Serialise generation across processes (e.g. DDP ranks) that share a data root."""
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".demo.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _generate(staging: DemoPaths, seed: int, sizes: Mapping[str, int], progress: bool) -> int:
    """Write videos, jsonl files, ans2label and tokenizer into staging; return the video count."""
    for directory in (staging.raw, staging.txt_db):
        directory.mkdir(parents=True)
    specs = {split: design_split(seed, split, n) for split, n in sizes.items()}
    total = sum(sizes.values())
    question_id = 0
    with tqdm(total=2 * total, desc="demo videos", unit="video", disable=not progress) as bar:
        _generate_images(staging, seed, sizes, bar)
        for split_index, split in enumerate(SPLITS):
            rows, mc_rows, caption_rows = [], [], []
            n_captions = CAPTIONS_PER_TRAIN_VIDEO if split == "train" else 1
            for i, spec in enumerate(specs[split]):
                rng = np.random.default_rng([seed, split_index, i + 1, 1])
                write_mp4(render_video(spec, rng), staging.raw / f"{spec.video_id}.mp4")
                for row in questions(spec, rng):
                    rows.append({**row, "question_id": question_id})
                    mc_rows.append({**multiple_choice(row, rng), "question_id": question_id})
                    question_id += 1
                for caption in captions(spec, rng, n_captions):
                    caption_rows.append({"clip_name": spec.video_id, "caption": caption})
                bar.update()
            _write_jsonl(staging.split(split), rows)
            _write_jsonl(staging.mc_split(split), mc_rows)
            _write_jsonl(staging.retrieval_split(split), caption_rows)
    ans2label = {answer: label for label, answer in enumerate(all_answers())}
    staging.ans2label.write_text(json.dumps(ans2label, indent=2) + "\n")
    write_tokenizer(staging.tokenizer_dir)
    staging.vis_db.parent.mkdir(parents=True, exist_ok=True)
    build_vis_db(
        staging.raw, staging.vis_db, file_type="video", extensions=["mp4"], progress=progress
    )
    return total


def _install(staging: DemoPaths, paths: DemoPaths) -> None:
    """Replace each piece of an older dataset by the freshly generated one."""
    for new, target in zip(staging.pieces(), paths.pieces(), strict=True):
        if target.exists():
            shutil.rmtree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(new, target)


def ensure_demo_dataset(
    data_root: str | Path,
    *,
    seed: int = 0,
    sizes: Mapping[str, int] | None = None,
    progress: bool = True,
) -> DemoPaths:
    """Make sure the demo dataset for (seed, sizes) exists under data_root; generate it if not.

    Generation happens in a temporary sibling directory and the completion marker is written
    last, so an interrupted run never leaves a dataset that looks complete.
    """
    paths = DemoPaths.under(data_root)
    resolved = _resolve_sizes(sizes)
    expected = _marker_content(seed, resolved)
    if _is_complete(paths, expected):
        return paths
    with _exclusive_lock(paths.root):
        if _is_complete(paths, expected):  # another process generated it while we waited
            return paths
        paths.marker.unlink(missing_ok=True)
        log.info(
            "generating the demo dataset (seed %d, sizes %s) in %s", seed, resolved, paths.root
        )
        began = time.perf_counter()
        staging_dir = Path(tempfile.mkdtemp(prefix=".demo-staging-", dir=paths.root))
        try:
            n_videos = _generate(DemoPaths.under(staging_dir), seed, resolved, progress)
            _install(DemoPaths.under(staging_dir), paths)
        finally:
            shutil.rmtree(staging_dir, ignore_errors=True)
        # Written last: a reader never takes an interrupted generation for a complete one.
        write_text_atomic(paths.marker, json.dumps(expected, indent=2) + "\n")
        log.info(
            "demo dataset ready: %d videos, %d questions in %.1f s",
            n_videos,
            n_videos * len(ANSWER_TYPES),
            time.perf_counter() - began,
        )
    return paths
