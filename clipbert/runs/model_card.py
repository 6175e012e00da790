"""The README.md of a model folder: what the model is for, how it reads its inputs, what its
training run measured and how to load it, written from the run itself so it cannot drift."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.utils import get_class

from clipbert.runs.record import TrainedRun
from clipbert.runs.selection import CHECKPOINT_FOLDERS
from clipbert.tasks.base import ClipBertTask

PREDICTOR_CALLS = {
    "answer": 'predictor.answer("video.mp4", "what is the man doing?")',
    "choose": 'predictor.choose("video.mp4", "what does he do?", ["run", "jump", ...])',
    "match": 'predictor.match("video.mp4", "a man runs on a beach")',
}


@dataclass(frozen=True)
class CardFacts:
    """What the card states beyond the run itself: the checkpoint the folder was made from and
    the metrics its training run recorded (``metrics.json``), with the checkpoint those test
    metrics belong to (the run's best) when it is another one."""

    source: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    metrics_checkpoint: str | None = None


def card_facts(checkpoint: str | Path) -> CardFacts:
    """The facts a checkpoint's training run holds: ``train.py`` writes ``metrics.json`` beside
    ``checkpoints/`` at the end of a run (its test metrics those of the best checkpoint). A
    checkpoint outside a run folder, or an original ``.pt``, has none."""
    path = Path(checkpoint).expanduser().absolute()
    metrics_file = path.parent.parent / "metrics.json"
    if path.parent.name != CHECKPOINT_FOLDERS[0] or not metrics_file.is_file():
        return CardFacts(source=path.name)
    recorded = json.loads(metrics_file.read_text(encoding="utf-8"))
    best = recorded.pop("best_checkpoint", "") or None
    metrics = {
        key: float(value)
        for key, value in recorded.items()
        if isinstance(value, int | float) and math.isfinite(value)
    }
    other = best is not None and Path(best).resolve() != path.resolve()
    return CardFacts(path.name, metrics, Path(best).name if other else None)


def model_card(run: TrainedRun, facts: CardFacts) -> str:
    """The card's Markdown, with the Hugging Face Hub's metadata header."""
    task = run.config["task"]
    name = task.get("name", "clipbert")
    sections = [
        "---\nlibrary_name: clipbert\ntags:\n- clipbert\n- video-text\n---\n",
        f"# ClipBERT: {name}\n",
        "A ClipBERT model (Lei et al., *Less is More: ClipBERT for Video-and-Language Learning "
        "via Sparse Sampling*, CVPR 2021) as a clipbert model folder: weights in "
        "`model.safetensors`, the config it needs in `config.json`, its tokenizer in "
        "`tokenizer/`"
        + (", its answers in `ans2label.json`" if run.answer_vocabulary else "")
        + (f"; converted from `{facts.source}`" if facts.source else "")
        + ".\n",
        "## Model\n\n" + _table(_model_facts(run)),
        _metrics_section(facts),
        _usage_section(task["module"]["_target_"]),
    ]
    return "\n".join(section for section in sections if section)


def _model_facts(run: TrainedRun) -> list[tuple[str, Any]]:
    task, model, bert = run.config["task"], run.config["model"], run.bert_config
    datamodule, module = task["datamodule"], task["module"]
    sampling = datamodule.get("eval_sampling") or {"n_clips": 1, "num_frames": 1}
    rows = [
        ("task", task.get("name")),
        ("task module", f"`{module['_target_'].rsplit('.', 1)[-1]}`"),
        ("training data", _data_names(datamodule, run.config["paths"]["data_root"])),
        ("evaluation sampling", ", ".join(f"{k}={v}" for k, v in sampling.items())),
        ("clip aggregation (score_agg)", module.get("score_agg", "mean")),
        ("image size (longer side, padded square)", datamodule.get("image_size")),
        ("max text length (tokens)", datamodule.get("max_txt_len")),
        (
            "BERT",
            f"{bert['num_hidden_layers']} layers, hidden {bert['hidden_size']}, "
            f"{bert['num_attention_heads']} heads, vocabulary {bert['vocab_size']}",
        ),
        (
            "CNN",
            ", ".join(f"{k}={model['cnn'][k]}" for k in ("layers", "norm") if k in model["cnn"]),
        ),
    ]
    if run.answer_vocabulary is not None:
        rows.append(("answers", f"{len(run.answer_vocabulary)} (`ans2label.json`)"))
    if "num_options" in run.hyper_parameters:
        rows.append(("options per question", run.hyper_parameters["num_options"]))
    return [(key, value) for key, value in rows if value not in (None, "")]


def _data_names(datamodule: dict[str, Any], data_root: str) -> str:
    """The stores the model was trained on, relative to the data root (local paths say
    nothing to a reader elsewhere)."""
    names = []
    for key in ("txt_db", "vis_db"):
        value = str(datamodule.get(key) or "")
        if value:
            relative = value[len(data_root) :].lstrip("/") if value.startswith(data_root) else value
            names.append(f"{key} `{relative}`")
    return ", ".join(names)


def _metrics_section(facts: CardFacts) -> str:
    if not facts.metrics:
        return ""
    where = (
        f" The test metrics are those of the run's best checkpoint, `{facts.metrics_checkpoint}`, "
        f"not of `{facts.source}`, which this folder holds."
        if facts.metrics_checkpoint
        else ""
    )
    return (
        "## Metrics\n\nAs the training run recorded them (`metrics.json`): `val/*` at the end of "
        f"training, `test/*` with its best checkpoint.{where}\n\n"
        + _table([(key, f"{value:.4f}") for key, value in sorted(facts.metrics.items())])
    )


def _usage_section(module_target: str) -> str:
    cls = get_class(module_target)
    calls = [
        line
        for method, line in PREDICTOR_CALLS.items()
        if getattr(cls, method) is not getattr(ClipBertTask, method)
    ]
    python = (
        "```python\nfrom clipbert import Predictor\n\n"
        'predictor = Predictor.from_pretrained("FOLDER_OR_HUB_ID")  # device="cuda" on a GPU\n'
        + "\n".join(calls)
        + "\n```\n\n"
        if calls
        else ""
    )
    return (
        "## Use\n\n"
        + python
        + "Over a whole split of the task's data (the `txt_db` and `vis_db` above under your "
        "data root):\n\n```\npython predict.py ckpt_path=FOLDER split=test data_root=DATA\n```\n\n"
        "As a starting point for training: `python convert.py src=FOLDER dst=model.ckpt`, then "
        "`model.init_from=model.ckpt`.\n"
    )


def _table(rows: list[tuple[str, Any]]) -> str:
    return "| | |\n| --- | --- |\n" + "".join(f"| {key} | {value} |\n" for key, value in rows)
