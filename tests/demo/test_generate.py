"""The demo dataset generator: layout, determinism, content and the generate-once contract."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from transformers import BertTokenizerFast

from clipbert.data.decoding import build_decoder
from clipbert.data.stores import LmdbStore
from clipbert.demo import DemoPaths, ensure_demo_dataset
from clipbert.demo import generate as gen

TINY = {"train": 8, "val": 4, "test": 4}


def _rows(paths: DemoPaths, split: str) -> list[dict]:
    return [json.loads(line) for line in paths.split(split).read_text().splitlines()]


def _all_rows(paths: DemoPaths) -> list[dict]:
    return [row for split in gen.SPLITS for row in _rows(paths, split)]


def _lmdb_items(paths: DemoPaths) -> dict[str, bytes]:
    store = LmdbStore(paths.vis_db)
    return {key: store.get(key) for key in store.keys()}  # noqa: SIM118 (not a dict)


def _mtimes(root: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoPaths:
    return ensure_demo_dataset(tmp_path_factory.mktemp("demo"), seed=0, sizes=TINY, progress=False)


def test_layout(demo: DemoPaths) -> None:
    assert demo.txt_db == demo.root / "txt_db" / "demo_video_qa"
    assert demo.vis_db == demo.root / "vis_db" / "demo_video_qa"
    assert (demo.vis_db / "data.mdb").is_file()
    assert len(list(demo.raw.glob("*.mp4"))) == sum(TINY.values())
    assert (demo.tokenizer_dir / "vocab.txt").is_file()
    config = json.loads((demo.tokenizer_dir / "tokenizer_config.json").read_text())
    assert config == {"do_lower_case": True, "tokenizer_class": "BertTokenizer"}
    marker = json.loads((demo.txt_db / ".demo_complete.json").read_text())
    assert marker == {"version": gen.GENERATOR_VERSION, "seed": 0, "sizes": TINY}
    assert not list(demo.root.glob(".demo-staging-*"))


def test_jsonl_rows(demo: DemoPaths) -> None:
    ans2label = json.loads(demo.ans2label.read_text())
    assert len(ans2label) == 13
    assert sorted(ans2label.values()) == list(range(13))
    assert list(ans2label) == sorted(ans2label)
    allowed = {
        "color": set(gen.COLORS),
        "shape": set(gen.SHAPES),
        "count": set(gen.COUNT_WORDS),
        "motion": set(gen.MOTIONS),
    }
    for split, n_videos in TINY.items():
        rows = _rows(demo, split)
        assert len(rows) == 4 * n_videos
        for row in rows:
            assert set(row) == {"video_id", "question", "answer", "answer_type", "question_id"}
            assert row["video_id"].startswith(f"demo_{split}_")
            assert row["answer"] in allowed[row["answer_type"]]
        for i in range(n_videos):
            kinds = [r["answer_type"] for r in rows if r["video_id"] == f"demo_{split}_{i:04d}"]
            assert sorted(kinds) == sorted(gen.ANSWER_TYPES)
    ids = [row["question_id"] for row in _all_rows(demo)]
    assert ids == list(range(len(ids)))


def test_splits_have_disjoint_videos(demo: DemoPaths) -> None:
    videos = {split: {row["video_id"] for row in _rows(demo, split)} for split in gen.SPLITS}
    assert not videos["train"] & videos["val"]
    assert not videos["train"] & videos["test"]
    assert not videos["val"] & videos["test"]


def test_lmdb_holds_the_raw_mp4_bytes(demo: DemoPaths) -> None:
    items = _lmdb_items(demo)
    raw = {p.stem: p.read_bytes() for p in demo.raw.glob("*.mp4")}
    assert items == raw
    assert set(items) == {row["video_id"] for row in _all_rows(demo)}


def test_same_seed_same_data_other_seed_other_data(demo: DemoPaths, tmp_path: Path) -> None:
    again = ensure_demo_dataset(tmp_path / "again", seed=0, sizes=TINY, progress=False)
    for split in gen.SPLITS:
        assert again.split(split).read_bytes() == demo.split(split).read_bytes()
    assert _lmdb_items(again) == _lmdb_items(demo)

    other = ensure_demo_dataset(tmp_path / "other", seed=1, sizes=TINY, progress=False)
    assert other.split("train").read_bytes() != demo.split("train").read_bytes()
    assert _lmdb_items(other) != _lmdb_items(demo)


_ENCODE_ONE_VIDEO = """
import sys
import numpy as np
from clipbert.demo import generate as gen
spec = gen.design_split(0, "train", 8)[5]
gen.write_mp4(gen.render_video(spec, np.random.default_rng([0, 0, 6, 1])), sys.argv[1])
"""


def test_video_bytes_do_not_depend_on_leftover_heap_contents(tmp_path: Path) -> None:
    """glibc fills fresh allocations with a different byte in each process: an encoder that
    reads memory it never wrote gives different files (x264's mbtree did)."""
    videos = []
    for perturb in ("1", "165"):
        path = tmp_path / f"perturb_{perturb}.mp4"
        env = {**os.environ, "MALLOC_PERTURB_": perturb}
        subprocess.run([sys.executable, "-c", _ENCODE_ONE_VIDEO, str(path)], env=env, check=True)
        videos.append(path.read_bytes())
    assert videos[0] == videos[1]


def test_other_seed_regenerates_in_place(tmp_path: Path) -> None:
    sizes = {"train": 2, "val": 1, "test": 1}
    first = ensure_demo_dataset(tmp_path, seed=0, sizes=sizes, progress=False)
    old_train = first.split("train").read_bytes()
    second = ensure_demo_dataset(tmp_path, seed=1, sizes=sizes, progress=False)
    assert second == first
    assert second.split("train").read_bytes() != old_train
    assert json.loads(second.marker.read_text())["seed"] == 1
    assert len(list(second.raw.glob("*.mp4"))) == 4
    assert not list(tmp_path.glob(".demo-staging-*"))


def _shape_centroids(video: bytes, frames: list[int]) -> np.ndarray:
    """(x, y) centroid of the non-background pixels in each frame."""
    decoded = build_decoder(fallback=None).read(video, lambda info: frames)
    batch = decoded.permute(0, 2, 3, 1).numpy().astype(int)
    background = np.median(batch.reshape(len(frames), -1, 3), axis=1)[:, None, None]
    masks = np.abs(batch - background).max(axis=-1) > 40
    return np.array([np.argwhere(mask).mean(axis=0)[::-1] for mask in masks])


def test_motion_shows_between_frames_0_and_19(demo: DemoPaths) -> None:
    items = _lmdb_items(demo)
    motion = {
        r["video_id"]: r["answer"] for r in _rows(demo, "train") if r["answer_type"] == "motion"
    }
    assert set(motion.values()) == set(gen.MOTIONS)  # the balanced design has every class
    for video_id, answer in motion.items():
        dx, dy = np.abs(np.diff(_shape_centroids(items[video_id], [0, 19]), axis=0)[0])
        if answer == "still":
            assert dx < 1 and dy < 1, video_id
        elif answer == "horizontally":
            assert dx > 20 and dy < 5, video_id
        else:
            assert dy > 20 and dx < 5, video_id


def test_rendered_shapes_stay_inside_and_apart() -> None:
    for spec in gen.design_split(3, "train", 200):
        for t in (0, gen.NUM_FRAMES - 1):  # the motion is linear: the ends bound the path
            ox, oy = spec.origin(t)
            boxes = [(ox + dx, oy + dy) for dx, dy in spec.offsets]
            for x, y in boxes:
                assert x >= 0 and x + spec.size <= gen.WIDTH
                assert y >= 0 and y + spec.size <= gen.HEIGHT
            for i, (xi, yi) in enumerate(boxes):
                for xj, yj in boxes[:i]:
                    assert abs(xi - xj) >= spec.size or abs(yi - yj) >= spec.size
    frames = gen.render_video(spec, np.random.default_rng(0))
    assert frames.shape == (gen.NUM_FRAMES, gen.HEIGHT, gen.WIDTH, 3)
    assert frames.dtype == np.uint8


def test_second_call_is_a_no_op(demo: DemoPaths) -> None:
    before = _mtimes(demo.root)
    began = time.perf_counter()
    again = ensure_demo_dataset(demo.root, seed=0, sizes=TINY, progress=False)
    assert time.perf_counter() - began < 0.5
    assert again == demo
    assert _mtimes(demo.root) == before


def test_concurrent_callers_generate_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    sizes = {"train": 2, "val": 1, "test": 1}
    caplog.set_level(logging.INFO, logger="clipbert.demo")
    callers = [
        threading.Thread(
            target=ensure_demo_dataset, args=(tmp_path,), kwargs={"sizes": sizes, "progress": False}
        )
        for _ in range(3)
    ]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join()
    generating = [r for r in caplog.records if r.getMessage().startswith("generating")]
    assert len(generating) == 1
    assert DemoPaths.under(tmp_path).marker.is_file()


def test_interrupted_run_leaves_no_marker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise RuntimeError("interrupted")

    monkeypatch.setattr(gen, "build_vis_db", fail)
    with pytest.raises(RuntimeError, match="interrupted"):
        ensure_demo_dataset(tmp_path, sizes={"train": 1, "val": 1, "test": 1}, progress=False)
    paths = DemoPaths.under(tmp_path)
    assert not paths.marker.exists()
    assert not paths.txt_db.exists()
    assert not list(tmp_path.glob(".demo-staging-*"))


def test_tokenizer_covers_every_question_and_answer(demo: DemoPaths) -> None:
    tokenizer = BertTokenizerFast.from_pretrained(demo.tokenizer_dir)
    vocab = (demo.tokenizer_dir / "vocab.txt").read_text().splitlines()
    assert vocab[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert tokenizer.pad_token_id == 0
    texts = [t for group in gen.TEMPLATES.values() for t in group] + gen.all_answers()
    texts += [row["question"] for row in _all_rows(demo)]
    for text in texts:
        ids = tokenizer(text)["input_ids"]
        assert tokenizer.unk_token_id not in ids, text
        assert tokenizer.decode(ids, skip_special_tokens=True).replace(" ?", "?") == text.lower()


@pytest.mark.parametrize("n", [1, 8, 80, 120, 215, 216, 1440])
def test_design_is_balanced_and_spreads_combinations(n: int) -> None:
    n_classes = (3, 4, 3, 3, 2)
    design = gen.balanced_design(np.random.default_rng(n), n_classes, n)
    assert design.shape == (n, len(n_classes))
    for column, k in enumerate(n_classes):
        counts = np.bincount(design[:, column], minlength=k)
        assert counts.max() - counts.min() <= 1
    _, multiplicity = np.unique(design, axis=0, return_counts=True)
    assert multiplicity.max() == -(-n // 216)  # distinct up to 216 videos


def test_eval_captions_identify_their_video() -> None:
    specs = gen.design_split(0, "test", gen.DEFAULT_SIZES["test"])
    assert len({(s.shape, s.color, s.count, s.motion, s.tone) for s in specs}) == len(specs)
    rng = np.random.default_rng(0)
    for spec in specs[:10]:
        words = gen.captions(spec, rng, 1)[0].split()
        named = (spec.shape, spec.color, gen.COUNT_WORDS[spec.count - 1], spec.tone)
        assert all(word in words for word in named)
