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
    load_keyed_captions,
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


# Small files in each release's own layout (field names as published; see the converters).
DIDEMO = [
    {
        "num_segments": 6,
        "description": "someone kicks the bug towards some rocks.",
        "dl_link": "https://www.flickr.com/video_download.gne?id=4253489686",
        "times": [[4, 4], [4, 4], [0, 0]],
        "video": "26292851@N04_4253489686_265c3c8051.m4v",
        "annotation_id": 1,
    },
    {
        "num_segments": 6,
        "description": "the  camera pans left.",
        "dl_link": "https://www.flickr.com/video_download.gne?id=1",
        "times": [[0, 1]],
        "video": "10015567@N08_3655084291_d8b58466fa.mov",
        "annotation_id": 2,
    },
    {
        "num_segments": 6,
        "description": "the bug flips over.",
        "dl_link": "https://www.flickr.com/video_download.gne?id=4253489686",
        "times": [[5, 5]],
        "video": "26292851@N04_4253489686_265c3c8051.m4v",
        "annotation_id": 3,
    },
]
ANET = {
    "v_QOlSCBRmfWY": {
        "duration": 82.73,
        "timestamps": [[0.83, 19.86], [17.37, 60.81]],
        "sentences": [
            "A young woman is seen standing in a room and leads into her dancing.",
            " The girl dances around the room while the camera captures her movements.",
        ],
    },
    "v_ehGHCYKzyZ8": {"duration": 61.72, "timestamps": [[0, 10.2]], "sentences": ["A man runs."]},
}
MSR_MC = (
    "key\tvid_key\ta1\ta2\ta3\ta4\ta5\tanswer\n"
    "msr7960_0\tmsr7960\ta man is singing\ta cat sleeps\ta car drives\tkids play\tsoup boils\t0\n"
    "msr7961_0\tmsr7961\ta dog runs\ta woman cooks\ta man dances\tbirds fly\train falls\t2\n"
)
VG_QA = [
    {
        "id": 1,
        "qas": [
            {
                "a_objects": [],
                "question": "What color is the clock?",
                "image_id": 1,
                "qa_id": 986768,
                "answer": "Green.",
                "q_objects": [],
            }
        ],
    },
    {"id": 2, "qas": []},
]
COCO = {
    "info": {},
    "images": [{"id": 318556, "file_name": "COCO_train2014_000000318556.jpg"}],
    "annotations": [
        {"image_id": 318556, "id": 48, "caption": "A very clean and well decorated empty bathroom"},
        {
            "image_id": 318556,
            "id": 67,
            "caption": "A blue and white bathroom with butterfly themed wall tiles.\n",
        },
    ],
}
VG_REGIONS = [
    {
        "id": 1,
        "regions": [
            {
                "region_id": 1382,
                "width": 82,
                "height": 139,
                "image_id": 1,
                "phrase": "the clock is green in colour",
                "y": 57,
                "x": 421,
            },
            {
                "region_id": 1383,
                "width": 10,
                "height": 10,
                "image_id": 1,
                "phrase": "shade is along the street ",
                "y": 0,
                "x": 0,
            },
            {
                "region_id": 1384,
                "width": 10,
                "height": 10,
                "image_id": 1,
                "phrase": "",
                "y": 0,
                "x": 0,
            },
        ],
    }
]


def _release(tmp_path: Path, name: str, content: object) -> Path:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def test_didemo_paragraphs_one_per_video_in_file_order(tmp_path: Path) -> None:
    rows = convert("didemo_paragraphs", _release(tmp_path, "train_data.json", DIDEMO))
    assert rows == [
        {
            "clip_name": "26292851@N04_4253489686_265c3c8051",  # the store key: the file stem
            "caption": "someone kicks the bug towards some rocks. the bug flips over.",
        },
        {"clip_name": "10015567@N08_3655084291_d8b58466fa", "caption": "the camera pans left."},
    ]
    write_jsonl(rows, tmp_path / "didemo_retrieval" / "train.jsonl")
    assert len(load_captions(tmp_path / "didemo_retrieval" / "train.jsonl")) == 2


def test_anet_paragraphs_keep_the_v_prefix_and_single_spaces(tmp_path: Path) -> None:
    rows = convert("anet_paragraphs", _release(tmp_path, "val_1.json", ANET))
    assert [r["clip_name"] for r in rows] == ["v_QOlSCBRmfWY", "v_ehGHCYKzyZ8"]
    assert rows[0]["caption"] == (
        "A young woman is seen standing in a room and leads into her dancing. "
        "The girl dances around the room while the camera captures her movements."
    )


def test_msrvtt_multiple_choice_test(tmp_path: Path) -> None:
    rows = convert("msrvtt_mc", _release(tmp_path, "MSR_MC_test.csv", MSR_MC))
    assert rows[1] == {
        "qid": "msr7961_0",
        "clip_name": "video7961",
        "options": ["a dog runs", "a woman cooks", "a man dances", "birds fly", "rain falls"],
        "answer": 2,
    }
    out = write_jsonl(rows, tmp_path / "msrvtt_retrieval_mc_test.jsonl")
    examples = load_video_mc(out)
    assert [e.video_id for e in examples] == ["video7960", "video7961"]
    assert [e.answer for e in examples] == [0, 2]
    with pytest.raises(ConversionError, match="answer 7 is not 0-4"):
        convert("msrvtt_mc", _release(tmp_path, "bad.csv", MSR_MC.replace("\t2\n", "\t7\n")))


def test_visual_genome_qa_in_the_vqa_shape(tmp_path: Path) -> None:
    release = _release(tmp_path, "question_answers.json", VG_QA)
    rows = convert("vg_qa", release, image_key="vg_{image_id}")
    assert rows == [
        {
            "question": "What color is the clock?",
            "question_id": 986768,
            "image_id": "vg_1",
            "labels": {"green": 1.0},
        }
    ]
    out = write_jsonl(rows, tmp_path / "vg_k_trainval.jsonl")
    assert load_image_qa(out)[0].answer == "green"


def test_pretraining_captions_of_coco_and_visual_genome(tmp_path: Path) -> None:
    coco = convert("coco_captions", _release(tmp_path, "captions_train2014.json", COCO))
    assert coco == [
        {"coco_id": 318556, "caption": "A very clean and well decorated empty bathroom"},
        {
            "coco_id": 318556,
            "caption": "A blue and white bathroom with butterfly themed wall tiles.",
        },
    ]
    vg = convert("vg_captions", _release(tmp_path, "region_descriptions.json", VG_REGIONS))
    assert vg == [
        {"vg_id": 1, "caption": "the clock is green in colour"},
        {"vg_id": 1, "caption": "shade is along the street"},
    ]


WEBVID_CSV = (
    "videoid,contentUrl,duration,page_dir,name\n"
    "1053841541,https://example.org/a.mp4,PT00H00M30S,006001_006050,"
    '"Travel blogger shoot a story, "\n'
    "31353427,https://example.org/b.mp4,PT00H00M15S,001051_001100,Horse grazing  on a meadow\n"
    "4470013,https://example.org/c.mp4,PT00H00M09S,001051_001100,\n"
)
CC3M_TSV = (
    "a very typical bus station\thttp://example.org/1.jpg\n"
    "  \thttp://example.org/2.jpg\n"
    'sierra looked stunning in this top and "this" skirt\thttp://example.org/3.jpg\n'
)


def test_video_and_image_pretraining_captions_of_webvid_and_cc3m(tmp_path: Path) -> None:
    webvid = tmp_path / "results_2M_train.csv"
    webvid.write_text(WEBVID_CSV)
    assert convert("webvid_captions", webvid) == [
        {"video_id": "1053841541", "caption": "Travel blogger shoot a story,"},
        {"video_id": "31353427", "caption": "Horse grazing on a meadow"},
    ]  # an empty caption is left out
    cc3m = tmp_path / "Train_GCC-training.tsv"
    cc3m.write_text(CC3M_TSV)
    rows = convert("cc3m_captions", cc3m, image_key="{image_id:09d}")
    assert rows == [  # ids are row indices, as img2dataset names the files
        {"image_id": "000000000", "caption": "a very typical bus station"},
        {"image_id": "000000002", "caption": 'sierra looked stunning in this top and "this" skirt'},
    ]
    with_header = tmp_path / "cc3m_header.tsv"
    with_header.write_text("caption\turl\n" + CC3M_TSV)
    assert convert("cc3m_captions", with_header, image_key="{image_id:09d}") == rows
    out = write_jsonl(rows, tmp_path / "cc3m_train.jsonl")
    assert [e.video_id for e in load_keyed_captions(out, "image_id")] == ["000000000", "000000002"]


@pytest.mark.parametrize(
    ("source", "content", "message"),
    [
        ("webvid_captions", "videoid,url\n1,x\n", "the header lacks name"),
        ("cc3m_captions", "a caption\n", "expected caption<TAB>url, got 1 fields"),
        ("didemo_paragraphs", {"video": "x.mp4"}, "expected DiDeMo's JSON list"),
        ("didemo_paragraphs", [{"video": "x.mp4"}], "moment 0: missing description"),
        ("anet_paragraphs", [], "expected ActivityNet Captions'"),
        ("anet_paragraphs", {"v_a": {"duration": 1}}, "video v_a: missing sentences"),
        ("coco_captions", [], "expected a COCO captions file"),
        ("vg_captions", {"regions": []}, "expected region_descriptions.json's list"),
        ("vg_qa", [{"id": 1, "qas": [{"qa_id": 1}]}], "image 0: missing question, answer"),
        ("msrvtt_mc", "key,vid_key\n1,msr1\n", "the header lacks"),
    ],
)
def test_files_in_another_shape_are_refused_by_name(
    tmp_path: Path, source: str, content: object, message: str
) -> None:
    with pytest.raises(ConversionError, match=message):
        convert(source, _release(tmp_path, "release.json", content))
