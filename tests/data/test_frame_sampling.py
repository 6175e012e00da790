"""Frame-index formulas, checked against cases computed by hand from the reference (§4.2)."""

from __future__ import annotations

import math
import random

import pytest

from clipbert.data.frame_sampling import (
    STRATEGIES,
    clip_length,
    clip_starts,
    frames_in_clip,
    sample_frame_indices,
)

# F = 100 frames at 30 fps, clips of 2 frames at 2 fps: clip_len = 2 / 2 * 30 = 30, delta = 70.
F, NATIVE = 100, 30.0


def sample(strategy: str, *, n_clips: int = 1, num_frames: int = 2, fps: float = 2.0, **kw):
    total = kw.pop("total_frames", F)
    native = kw.pop("native_fps", NATIVE)
    return sample_frame_indices(
        total, native, n_clips=n_clips, num_frames=num_frames, fps=fps, strategy=strategy, **kw
    )


def test_clip_length() -> None:
    assert clip_length(2, 2.0, 30.0) == 30.0
    assert clip_length(3, 1.0, 29.97) == pytest.approx(89.91)


def test_fixed_clips_of_four() -> None:
    assert clip_starts(F, 30.0, 4, "fixed") == [0.0, 17.5, 35.0, 52.5]
    assert sample("fixed", n_clips=4) == [[0, 29], [18, 47], [35, 64], [53, 82]]


def test_fixed_single_clip_starts_at_frame_zero() -> None:
    assert sample("fixed") == [[0, 29]]


def test_start_middle_end_are_thirds_of_delta() -> None:
    assert clip_starts(F, 30.0, 1, "start") == [0.0]
    assert clip_starts(F, 30.0, 1, "middle") == [pytest.approx(70 / 3)]
    assert clip_starts(F, 30.0, 1, "end") == [pytest.approx(140 / 3)]
    assert sample("start") == [[0, 29]]
    assert sample("middle") == [[24, 53]]  # ceil(23.33) = 24
    assert sample("end") == [[47, 76]]  # ceil(46.67) = 47; "end" is not the end


def test_middle_or_fixed_is_the_middle_clip_alone_and_fixed_clips_together() -> None:
    assert sample("middle_or_fixed") == sample("middle") == [[24, 53]]
    assert sample("middle_or_fixed", n_clips=4) == sample("fixed", n_clips=4)


def test_one_frame_takes_the_first_frame_of_the_window() -> None:
    assert frames_in_clip(23.3, 30.0, 1, F) == [24]
    assert sample("middle", num_frames=1, fps=1.0) == [[24]]


def test_offsets_are_truncated_linspace() -> None:
    # clip_len 30, T = 3: offsets linspace(0, 29, 3) = 0, 14.5, 29 -> 0, 14, 29.
    assert frames_in_clip(0.0, 30.0, 3, F) == [0, 14, 29]
    # Non-integer clip length: 2 / 2 * 29.97 = 29.97 -> offsets 0, 28.97 -> 0, 28.
    assert sample("fixed", native_fps=29.97, total_frames=120) == [[0, 28]]


def test_short_video_is_clamped_with_duplicates() -> None:
    # clip_len = 4 / 2 * 30 = 60 > F = 10: delta = 0, offsets 0, 19.67, 39.33, 59 -> clamp to 9.
    assert sample("fixed", num_frames=4, total_frames=10, n_clips=2) == [[0, 9, 9, 9]] * 2
    assert sample("rand", num_frames=4, total_frames=10, rng=random.Random(0)) == [[0, 9, 9, 9]]
    assert sample("uniform", num_frames=3, total_frames=1) == [[0, 0, 0]]


def test_uniform_spreads_over_the_whole_video() -> None:
    assert sample("uniform", num_frames=4) == [[0, 33, 66, 99]]
    assert sample("uniform", num_frames=1) == [[0]]
    with pytest.raises(ValueError, match="n_clips"):
        sample("uniform", n_clips=2)
    with pytest.raises(ValueError, match="uniform"):
        clip_starts(F, 30.0, 1, "uniform")


def test_rand_range_and_reproducibility() -> None:
    starts = clip_starts(F, 30.0, 2000, "rand", random.Random(1))
    assert all(0.0 <= s <= 70.0 for s in starts)
    assert min(starts) < 1.0 and max(starts) > 69.0
    first = sample("rand", n_clips=3, rng=random.Random(7))
    assert first == sample("rand", n_clips=3, rng=random.Random(7))
    rng = random.Random(7)
    expected = [[math.ceil(s), math.ceil(s) + 29] for s in (rng.uniform(0, 70) for _ in range(3))]
    assert first == expected
    assert len({tuple(c) for c in sample("rand", n_clips=8, rng=random.Random(3))}) > 1


def test_rand_needs_an_explicit_rng() -> None:
    with pytest.raises(ValueError, match="rng"):
        sample("rand")


def test_every_strategy_gives_n_clips_of_num_frames_in_range() -> None:
    for strategy in STRATEGIES:
        n_clips = 3 if strategy in ("rand", "fixed", "middle_or_fixed") else 1
        clips = sample(strategy, n_clips=n_clips, num_frames=5, rng=random.Random(0))
        assert len(clips) == n_clips
        assert all(len(c) == 5 and all(0 <= i < F for i in c) for c in clips)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"n_clips": 0}, "n_clips"),
        ({"n_clips": 1.5}, "n_clips"),
        ({"num_frames": 0}, "num_frames"),
        ({"fps": 0.0}, "fps"),
        ({"fps": float("nan")}, "fps"),
        ({"native_fps": -1.0}, "native_fps"),
        ({"total_frames": 0}, "total_frames"),
        ({"strategy": "bogus"}, "sampling"),
        ({"strategy": "middle", "n_clips": 2}, "n_clips"),
    ],
)
def test_argument_errors_name_the_option(kwargs: dict, name: str) -> None:
    strategy = kwargs.pop("strategy", "fixed")
    with pytest.raises(ValueError, match=name):
        sample(strategy, **kwargs)
