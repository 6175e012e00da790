"""The hostile and broken input corpus: each case, how its input is made, the entry point it
goes through and the outcome it must get.

Outcomes: ``error`` (the exception type and a regex its message must match, naming the file,
line or key), ``broken`` (the item is skipped and counted in training, placeholder frames and a
reason naming it in evaluation) and ``ok`` (it decodes, to the shape given).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from clipbert.data.annotations import AnnotationError
from clipbert.data.decoding import DecodeError
from tests.reliability import media

# Entry points (see test_corpus.py): annotation readers, ans2label, a video or image in an LMDB
# store read as in training and evaluation, store opening, the data config, single input.
QA, MC, CAPTIONS, IMAGE_QA = "load_video_qa", "load_video_mc", "load_captions", "load_image_qa"
ANS2LABEL, VIDEO, IMAGE, STORE, CONFIG, SINGLE = (
    "ans2label",
    "video",
    "image",
    "store",
    "config",
    "single",
)


@dataclass(frozen=True)
class Case:
    name: str
    entry: str
    make: Callable[[], Any]  # bytes (file content or stored value), or config overrides
    outcome: str  # error | broken | ok
    match: str = ""  # regex the message (error) or the reason (broken) must match
    error: type[BaseException] = Exception
    shape: tuple[int, ...] | None = None  # ok: the decoded (C, H, W)


def lines(*rows: object) -> Callable[[], bytes]:
    """A jsonl file: dicts as JSON, str and bytes as they are, one per line."""

    def make() -> bytes:
        out = []
        for row in rows:
            out.append(
                row
                if isinstance(row, bytes)
                else (row if isinstance(row, str) else json.dumps(row)).encode()
            )
        return b"\n".join(out) + b"\n"

    return make


GOOD_QA = {"video_id": "v1", "question": "what?", "answer": "dog"}
GOOD_MC = {"video_id": "v1", "question": "what?", "options": list("abcde"), "answer": 1}
BROKEN_VIDEO = r"video 'case' in .*case_store: "
ASPECT = r"frames of \d+x\d+ are beyond the 5:1 aspect ratio"


def raw(data: bytes) -> Callable[[], bytes]:
    return lambda: data


CASES = [
    # --- jsonl annotations ---------------------------------------------------------------------
    Case(
        "jsonl_invalid_json",
        QA,
        lines(GOOD_QA, "{not json"),
        "error",
        r"bad\.jsonl:2: invalid JSON .*fix or remove",
        AnnotationError,
    ),
    Case(
        "jsonl_truncated_last_line",
        QA,
        lambda: lines(GOOD_QA)() + b'{"video_id": "v2", "qu',
        "error",
        r"bad\.jsonl:2: invalid JSON",
        AnnotationError,
    ),
    Case(
        "jsonl_missing_question",
        QA,
        lines(GOOD_QA, {"video_id": "v"}),
        "error",
        r"bad\.jsonl:2: missing field 'question'",
        AnnotationError,
    ),
    Case(
        "jsonl_missing_video_id",
        QA,
        lines({"question": "q"}),
        "error",
        r"bad\.jsonl:1: missing the video id",
        AnnotationError,
    ),
    Case(
        "jsonl_video_id_is_a_list",
        QA,
        lines({"video_id": ["v"], "question": "q"}),
        "error",
        r"bad\.jsonl:1: field 'video_id' must be a string",
        AnnotationError,
    ),
    Case(
        "jsonl_question_is_a_bool",
        QA,
        lines({"video_id": "v", "question": True}),
        "error",
        r"bad\.jsonl:1: field 'question' must be a string, got bool",
        AnnotationError,
    ),
    Case(
        "jsonl_question_id_is_a_dict",
        QA,
        lines({**GOOD_QA, "question_id": {"a": 1}}),
        "error",
        r"bad\.jsonl:1: the question id must be",
        AnnotationError,
    ),
    Case(
        "jsonl_line_is_an_array",
        QA,
        lines(GOOD_QA, "[1, 2]"),
        "error",
        r"bad\.jsonl:2: expected a JSON object",
        AnnotationError,
    ),
    Case(
        "jsonl_deeply_nested",
        QA,
        lines("[" * 100_000 + "]" * 100_000),
        "error",
        r"bad\.jsonl:1: (JSON nested too deeply|expected a JSON object)",
        AnnotationError,
    ),
    Case("jsonl_empty_lines", QA, lines("", GOOD_QA, "   ", "", GOOD_QA), "ok", shape=(2,)),
    Case("jsonl_bom", QA, lambda: media.BOM + lines(GOOD_QA)(), "ok", shape=(1,)),
    Case(
        "jsonl_bom_on_second_line",
        QA,
        lines(GOOD_QA, media.BOM + json.dumps(GOOD_QA).encode()),
        "error",
        r"bad\.jsonl:2: invalid JSON",
        AnnotationError,
    ),
    Case(
        "jsonl_latin1_bytes",
        QA,
        lines(GOOD_QA, b'{"video_id": "v", "question": "caf\xe9"}'),
        "error",
        r"bad\.jsonl:2: not UTF-8 text; save the file as UTF-8",
        AnnotationError,
    ),
    Case(
        "jsonl_utf16",
        QA,
        lambda: json.dumps(GOOD_QA).encode("utf-16"),
        "error",
        r"bad\.jsonl:1: not UTF-8",
        AnnotationError,
    ),
    Case("jsonl_empty_file", QA, raw(b""), "error", r"bad\.jsonl: no examples", AnnotationError),
    Case(
        "jsonl_only_blank_lines",
        QA,
        raw(b"\n\n  \n"),
        "error",
        r"bad\.jsonl: no examples",
        AnnotationError,
    ),
    Case(
        "jsonl_random_bytes",
        QA,
        lambda: media.random_bytes(2000, seed=1),
        "error",
        r"bad\.jsonl:\d+: ",
        AnnotationError,
    ),
    Case(
        "mc_four_options",
        MC,
        lines({**GOOD_MC, "options": list("abcd")}),
        "error",
        r"bad\.jsonl:1: 'options' must be a list of 5 strings",
        AnnotationError,
    ),
    Case(
        "mc_option_is_null",
        MC,
        lines({**GOOD_MC, "options": ["a", None, "c", "d", "e"]}),
        "error",
        r"bad\.jsonl:1: 'options' must be a list of 5 strings",
        AnnotationError,
    ),
    Case(
        "mc_answer_out_of_range",
        MC,
        lines({**GOOD_MC, "answer": 5}),
        "error",
        r"bad\.jsonl:1: 'answer' must be an option index 0..4",
        AnnotationError,
    ),
    Case(
        "mc_answer_is_a_string",
        MC,
        lines({**GOOD_MC, "answer": "b"}),
        "error",
        r"bad\.jsonl:1: 'answer' must be an option index",
        AnnotationError,
    ),
    Case(
        "captions_missing_caption",
        CAPTIONS,
        lines({"clip_name": "v"}),
        "error",
        r"bad\.jsonl:1: missing field 'caption'",
        AnnotationError,
    ),
    Case(
        "image_qa_score_above_one",
        IMAGE_QA,
        lines({"image_id": 1, "question": "q", "labels": {"yes": 1.5}}),
        "error",
        r"bad\.jsonl:1: 'labels' must map answers to scores",
        AnnotationError,
    ),
    Case(
        "image_qa_labels_a_list",
        IMAGE_QA,
        lines({"image_id": 1, "question": "q", "labels": ["yes"]}),
        "error",
        r"bad\.jsonl:1: 'labels' must map",
        AnnotationError,
    ),
    Case(
        "jsonl_file_missing",
        QA,
        lambda: None,
        "error",
        r"annotation file not found: .*bad\.jsonl; check txt_db",
        FileNotFoundError,
    ),
    # --- ans2label -----------------------------------------------------------------------------
    Case(
        "ans2label_repeated_answer",
        ANS2LABEL,
        raw(b'{"yes": 0, "no": 1, "yes": 2}'),
        "error",
        r"ans2label\.json: the answer 'yes' appears twice",
        AnnotationError,
    ),
    Case(
        "ans2label_repeated_label",
        ANS2LABEL,
        raw(b'{"yes": 0, "no": 0}'),
        "error",
        r"ans2label\.json: labels must be the integers 0..1 without gaps",
        AnnotationError,
    ),
    Case(
        "ans2label_gap",
        ANS2LABEL,
        raw(b'{"yes": 0, "no": 2}'),
        "error",
        r"ans2label\.json: labels must be .* without gaps or repeats; rebuild",
        AnnotationError,
    ),
    Case(
        "ans2label_string_label",
        ANS2LABEL,
        raw(b'{"yes": "0", "no": 1}'),
        "error",
        r"ans2label\.json: every label must be an integer",
        AnnotationError,
    ),
    Case(
        "ans2label_bool_label",
        ANS2LABEL,
        raw(b'{"yes": false, "no": true}'),
        "error",
        r"ans2label\.json: every label must be an integer",
        AnnotationError,
    ),
    Case(
        "ans2label_list",
        ANS2LABEL,
        raw(b'["yes", "no"]'),
        "error",
        r"ans2label\.json: expected a non-empty JSON object",
        AnnotationError,
    ),
    Case(
        "ans2label_not_utf8",
        ANS2LABEL,
        raw(b'{"caf\xe9": 0}'),
        "error",
        r"ans2label\.json: not UTF-8",
        AnnotationError,
    ),
    Case(
        "ans2label_invalid_json",
        ANS2LABEL,
        raw(b'{"yes": 0,\n "no": }'),
        "error",
        r"ans2label\.json:2: invalid JSON",
        AnnotationError,
    ),
    Case("ans2label_bom", ANS2LABEL, lambda: media.BOM + b'{"yes": 0, "no": 1}', "ok", shape=(2,)),
    # --- videos in a store (training: replaced and counted; evaluation: listed) ---------------
    Case("video_zero_bytes", VIDEO, raw(b""), "broken", BROKEN_VIDEO),
    Case("video_random_bytes", VIDEO, lambda: media.random_bytes(seed=2), "broken", BROKEN_VIDEO),
    Case(
        "video_random_bytes_behind_mp4_magic",
        VIDEO,
        lambda: media.random_bytes(prefix=b"\0\0\0\x20ftypisom"),
        "broken",
        BROKEN_VIDEO,
    ),
    Case("video_text_file", VIDEO, raw(b"hello, this is not a video\n"), "broken", BROKEN_VIDEO),
    Case(
        "video_truncated_half",
        VIDEO,
        lambda: media.truncated(media.video()),
        "broken",
        BROKEN_VIDEO,
    ),
    Case(
        "video_truncated_before_index",
        VIDEO,
        lambda: media.truncated(media.video(), 0.9),
        "broken",
        BROKEN_VIDEO,
    ),
    Case("video_zero_frames", VIDEO, media.zero_frames, "broken", BROKEN_VIDEO),
    Case("video_audio_only", VIDEO, media.audio_only, "broken", BROKEN_VIDEO),
    Case("video_absurd_resolution", VIDEO, media.mjpeg_absurd_size, "broken", BROKEN_VIDEO),
    Case("video_one_frame", VIDEO, lambda: media.video(frames=1), "ok", shape=(3, 24, 32)),
    Case(
        "video_one_frame_matroska",
        VIDEO,
        lambda: media.video(frames=1, fmt="matroska"),
        "ok",
        shape=(3, 24, 32),
    ),
    # beyond 5:1 the original treats frames as unreadable (reference 4.4); up to it they are read
    Case("video_tall_1_to_64", VIDEO, lambda: media.video(16, 1024, 3), "broken", ASPECT),
    Case("video_wide_64_to_1", VIDEO, lambda: media.video(1024, 16, 3), "broken", ASPECT),
    Case("video_wide_5_to_1", VIDEO, lambda: media.video(160, 32, 3), "ok", shape=(3, 32, 160)),
    Case(
        "video_gif",
        VIDEO,
        lambda: media.asset("gif_14x25_24frames_tiny.gif"),
        "ok",
        shape=(3, 25, 14),
    ),
    Case(
        "video_corrupt_nal",
        VIDEO,
        lambda: media.asset("h264_1280x720_corrupt_nal.mp4"),
        "ok",
        shape=(3, 720, 1280),
    ),
    Case(
        "video_webm_no_duration",
        VIDEO,
        lambda: media.asset("vp9_opus_1280x720_noduration.webm"),
        "ok",
        shape=(3, 720, 1280),
    ),
    Case("video_is_a_jpeg", VIDEO, media.image, "ok", shape=(3, 20, 40)),
    Case(
        "video_key_missing",
        VIDEO,
        lambda: None,
        "broken",
        r"visual key 'case' not found in LmdbStore at .*case_store",
    ),
    # --- images in a store ---------------------------------------------------------------------
    Case(
        "image_grayscale",
        IMAGE,
        lambda: media.asset("photo_128x128_gray.jpg"),
        "ok",
        shape=(3, 128, 128),
    ),
    Case("image_rgba", IMAGE, lambda: media.asset("rgba_200x150.png"), "ok", shape=(3, 150, 200)),
    Case("image_cmyk", IMAGE, lambda: media.image("CMYK"), "ok", shape=(3, 20, 40)),
    Case("image_exif_rotated", IMAGE, media.exif_rotated, "ok", shape=(3, 40, 20)),
    Case("image_16_bit", IMAGE, lambda: media.image("I;16", fmt="PNG"), "ok", shape=(3, 20, 40)),
    Case("image_palette", IMAGE, lambda: media.image("P", fmt="PNG"), "ok", shape=(3, 20, 40)),
    Case(
        "image_one_pixel_wide",
        IMAGE,
        lambda: media.image(size=(1, 400), fmt="PNG"),
        "broken",
        ASPECT,
    ),
    Case(
        "image_tall_1_to_5",
        IMAGE,
        lambda: media.image(size=(8, 40), fmt="PNG"),
        "ok",
        shape=(3, 40, 8),
    ),
    Case(
        "image_gif",
        IMAGE,
        lambda: media.asset("gif_14x25_24frames_tiny.gif"),
        "ok",
        shape=(3, 25, 14),
    ),
    Case(
        "image_truncated",
        IMAGE,
        lambda: media.asset("broken_truncated.jpg"),
        "broken",
        r"image 'case' in .*case_store: could not decode image",
    ),
    Case("image_zero_bytes", IMAGE, raw(b""), "broken", r"image 'case' in .*case_store"),
    Case(
        "image_absurd_resolution",
        IMAGE,
        media.png_absurd_size,
        "broken",
        r"image 'case' in .*case_store",
    ),
    Case("image_is_a_video", IMAGE, media.video, "broken", r"image 'case' in .*case_store"),
    # --- stores --------------------------------------------------------------------------------
    Case(
        "store_missing",
        STORE,
        lambda: None,
        "error",
        r"visual store .*case_store does not exist; set the vis_db",
        FileNotFoundError,
    ),
    Case(
        "store_is_a_file",
        STORE,
        raw(b"not a directory"),
        "error",
        r"visual store .*case_store is a file",
        NotADirectoryError,
    ),
    Case(
        "store_garbage_data_mdb",
        STORE,
        lambda: {"data.mdb": media.random_bytes(8192)},
        "error",
        r"cannot open .*case_store as an LMDB store",
        FileNotFoundError,
    ),
    # --- the data config -----------------------------------------------------------------------
    Case(
        "config_n_clips_zero",
        CONFIG,
        lambda: ["task.datamodule.train_sampling.n_clips=0"],
        "error",
        r"task\.datamodule\.train_sampling: n_clips must be a positive int, got 0",
    ),
    Case(
        "config_eval_num_frames_negative",
        CONFIG,
        lambda: ["task.datamodule.eval_sampling.num_frames=-2"],
        "error",
        r"task\.datamodule\.eval_sampling: num_frames must be a positive int, got -2",
    ),
    Case(
        "config_n_clips_string",
        CONFIG,
        lambda: ["task.datamodule.eval_sampling.n_clips=two"],
        "error",
        r"eval_sampling: n_clips must be a positive int, got 'two'",
    ),
    Case(
        "config_fps_zero",
        CONFIG,
        lambda: ["task.datamodule.train_sampling.fps=0"],
        "error",
        r"train_sampling: fps must be a positive number",
    ),
    Case(
        "config_unknown_strategy",
        CONFIG,
        lambda: ["task.datamodule.train_sampling.strategy=sometimes"],
        "error",
        r"train_sampling: unknown sampling='sometimes'",
    ),
    Case(
        "config_unknown_sampling_key",
        CONFIG,
        lambda: ["+task.datamodule.train_sampling.nclip=2"],
        "error",
        r"train_sampling: .*unexpected keyword argument 'nclip'",
    ),
    Case(
        "config_batch_size_negative",
        CONFIG,
        lambda: ["task.datamodule.batch_size=-4"],
        "error",
        r"task\.datamodule\.batch_size must be >= 1 \(an integer\), got -4",
    ),
    Case(
        "config_batch_size_string",
        CONFIG,
        lambda: ["task.datamodule.eval_batch_size=lots"],
        "error",
        r"task\.datamodule\.eval_batch_size must be >= 1 \(an integer\), got 'lots'",
    ),
    Case(
        "config_batch_size_float",
        CONFIG,
        lambda: ["task.datamodule.batch_size=2.5"],
        "error",
        r"batch_size must be >= 1 \(an integer\), got 2\.5",
    ),
    Case(
        "config_image_size_negative",
        CONFIG,
        lambda: ["task.datamodule.image_size=-224"],
        "error",
        r"task\.datamodule\.image_size must be >= 32",
    ),
    Case(
        "config_max_txt_len_zero",
        CONFIG,
        lambda: ["task.datamodule.max_txt_len=0"],
        "error",
        r"task\.datamodule\.max_txt_len must be >= 1",
    ),
    Case(
        "config_num_workers_negative",
        CONFIG,
        lambda: ["task.datamodule.num_workers=-1"],
        "error",
        r"task\.datamodule\.num_workers must be >= 0",
    ),
    Case(
        "config_unknown_decoder",
        CONFIG,
        lambda: ["task.datamodule.decoder=ffmpeg"],
        "error",
        r"unknown video decoder 'ffmpeg'",
    ),
    Case(
        "config_negative_decode_timeout",
        CONFIG,
        lambda: ["task.datamodule.decode_timeout=-1"],
        "error",
        r"decode time limit must be > 0 seconds",
    ),
    # --- one file given to predict.py video=/image= ----------------------------------------------
    Case(
        "single_missing_file",
        SINGLE,
        lambda: None,
        "error",
        r"case\.mp4: no such file; give the path",
        FileNotFoundError,
    ),
    Case(
        "single_zero_bytes",
        SINGLE,
        raw(b""),
        "error",
        r"case\.mp4: .*could not open",  # whichever decoder `auto` picks here
        DecodeError,
    ),
    Case(
        "single_random_bytes",
        SINGLE,
        lambda: media.random_bytes(seed=3),
        "error",
        r"case\.mp4: ",
        DecodeError,
    ),
    Case("single_jpeg_named_mp4", SINGLE, media.image, "ok", shape=(3,)),
    Case(
        "single_truncated_jpeg_named_mp4",
        SINGLE,
        lambda: media.asset("broken_truncated.jpg"),
        "error",
        r"case\.mp4: could not decode image",
        DecodeError,
    ),
    Case("single_one_frame_video", SINGLE, lambda: media.video(frames=1), "ok", shape=(3,)),
]
