"""Public annotation releases -> jsonl that our loaders (and the original's) read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clipbert.cli.preprocess import preprocess
from clipbert.data.annotations import (
    load_ans2label,
    load_captions,
    load_image_qa,
    load_video_mc,
    load_video_qa,
)
from clipbert.data.release_converters import (
    ConversionError,
    build_ans2label,
    convert,
    soft_score,
    write_jsonl,
)
from tests.helpers import compose_config


def test_msrvtt_qa(tmp_path: Path) -> None:
    release = tmp_path / "train_qa.json"
    release.write_text(
        json.dumps(
            [
                {
                    "answer": "man",
                    "category_id": 1,
                    "id": 7,
                    "question": "who sings?",
                    "video_id": 3,
                },
                {"answer": "dance", "id": 8, "question": "what is he doing?", "video_id": 12},
            ]
        )
    )
    out = write_jsonl(convert("msrvtt_qa", release), tmp_path / "train.jsonl")
    examples = load_video_qa(out)
    assert [(e.video_id, e.answer_type, e.question_id) for e in examples] == [
        ("video3", "who", 7),
        ("video12", "what", 8),  # no category_id: the question's first word
    ]


TGIF_MC = (
    "gif_name\tquestion\ta1\ta2\ta3\ta4\ta5\tanswer\tvid_id\tkey\n"
    "tumblr_abc\twhat does the cat do 3 times ?\tjump\tsit\tnod\tspin\troll\t2\tv1\t1\n"
)
TGIF_FRAMEQA = (
    "gif_name\tquestion\tanswer\ttype\tvid_id\tkey\tdescription\n"
    "tumblr_xyz\twhat is the color of the car ?\tred\t2\tv9\t9\ta red car\n"
)


def test_tgif_action_and_frameqa(tmp_path: Path) -> None:
    (tmp_path / "Train_action_question.csv").write_text(TGIF_MC)
    (tmp_path / "Train_frameqa_question.csv").write_text(TGIF_FRAMEQA)
    action = write_jsonl(
        convert("tgif_action", tmp_path / "Train_action_question.csv"), tmp_path / "a.jsonl"
    )
    [mc] = load_video_mc(action)
    assert mc.video_id == "tumblr_abc" and mc.answer == 2 and mc.options[2] == "nod"
    frameqa = write_jsonl(
        convert("tgif_frameqa", tmp_path / "Train_frameqa_question.csv"), tmp_path / "f.jsonl"
    )
    [qa] = load_video_qa(frameqa)
    assert (qa.video_id, qa.answer, qa.answer_type) == ("tumblr_xyz", "red", "color")
    with pytest.raises(ConversionError, match="lacks a1, a2"):
        convert("tgif_transition", tmp_path / "Train_frameqa_question.csv")


def test_msrvtt_retrieval_splits_and_the_1k_test_csv(tmp_path: Path) -> None:
    data = {
        "videos": [
            {"video_id": "video0", "split": "train"},
            {"video_id": "video9", "split": "validate"},
        ],
        "sentences": [
            {"video_id": "video0", "caption": "a man sings", "sen_id": 0},
            {"video_id": "video9", "caption": "a dog runs", "sen_id": 1},
            {"video_id": "video0", "caption": "someone performs", "sen_id": 2},
        ],
    }
    (tmp_path / "MSRVTT_data.json").write_text(json.dumps(data))
    train = convert("msrvtt_retrieval", tmp_path / "MSRVTT_data.json", split="train")
    assert [r["caption"] for r in train] == ["a man sings", "someone performs"]
    val = write_jsonl(
        convert("msrvtt_retrieval", tmp_path / "MSRVTT_data.json", split="val"),
        tmp_path / "val.jsonl",
    )
    assert [(c.video_id, c.caption) for c in load_captions(val)] == [("video9", "a dog runs")]
    csv_file = tmp_path / "MSRVTT_JSFUSION_test.csv"
    csv_file.write_text(",key,vid_key,video_id,sentence\n0,ret0,msr7020,video7020,a girl talks\n")
    assert convert("msrvtt_retrieval", csv_file) == [
        {"clip_name": "video7020", "caption": "a girl talks"}
    ]


def test_vqa_soft_scores_and_image_keys(tmp_path: Path) -> None:
    questions = {"questions": [{"image_id": 42, "question": "is it red?", "question_id": 420}]}
    answers = ["Yes", "yes", "yes.", "no"] + ["yes"] * 2
    annotations = {
        "annotations": [
            {
                "question_id": 420,
                "image_id": 42,
                "answer_type": "yes/no",
                "answers": [{"answer": a, "answer_id": i} for i, a in enumerate(answers)],
            }
        ]
    }
    (tmp_path / "q.json").write_text(json.dumps(questions))
    (tmp_path / "a.json").write_text(json.dumps(annotations))
    rows = convert(
        "vqa", tmp_path / "q.json", answers=tmp_path / "a.json", image_key="COCO_{image_id:012d}"
    )
    [example] = load_image_qa(write_jsonl(rows, tmp_path / "vqa.jsonl"))
    assert example.image_id == example.store_key == "COCO_000000000042"
    assert example.answer_scores == {"yes": 1.0, "no": 0.3} and example.answer_type == "yes/no"
    assert "labels" not in convert("vqa", tmp_path / "q.json")[0]  # a test split
    assert [soft_score(n) for n in range(5)] == [0.0, 0.3, 0.6, 0.9, 1.0]


def test_build_ans2label_keeps_the_most_frequent(tmp_path: Path) -> None:
    rows = [{"answer": a} for a in ["dog", "cat", "dog", "man", "cat", "dog"]]
    path = write_jsonl(rows, tmp_path / "train.jsonl")
    assert build_ans2label([path], top_k=2) == {"dog": 0, "cat": 1}
    with pytest.raises(ValueError, match="top_k must be >= 1"):
        build_ans2label([path], top_k=0)


def test_preprocess_modes_for_the_text_side(tmp_path: Path) -> None:
    (tmp_path / "Train_frameqa_question.csv").write_text(TGIF_FRAMEQA)
    train = tmp_path / "txt_db" / "frameqa_train.jsonl"
    preprocess(
        compose_config(
            "preprocess",
            [
                "mode=annotations",
                "source=tgif_frameqa",
                f"src={tmp_path / 'Train_frameqa_question.csv'}",
                f"dst={train}",
            ],
        )
    )
    vocab = tmp_path / "txt_db" / "ans2label.json"
    preprocess(
        compose_config(
            "preprocess", ["mode=vocab", f"annotations=[{train}]", "top_k=10", f"dst={vocab}"]
        )
    )
    assert load_ans2label(vocab) == {"red": 0}
    with pytest.raises(ValueError, match="source must be one of"):
        preprocess(
            compose_config(
                "preprocess", ["mode=annotations", "source=kinetics", f"src={train}", "dst=x"]
            )
        )
