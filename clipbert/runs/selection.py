"""Which checkpoint ``predict.py`` reads, and where its results go by default.

Users of the original pick a model by its step (``--output_dir $RUN --inference_model_step N``
reads ``$RUN/ckpt/model_step_N.pt``) and find the results under ``$RUN``. Here ``run_dir=RUN``
with ``step=N`` reads ``RUN/checkpoints/step_N.ckpt`` (or an original run's
``RUN/ckpt/model_step_N.pt``), ``run_dir`` alone the run's best checkpoint; the results go to a
folder of the run named by split, step and clips, so two predictions never overwrite each other.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

ORIGINAL_STEP = "ckpt/model_step_{step}.pt"
CHECKPOINT_FOLDERS = ("checkpoints", "ckpt")  # ours, the original's
_STEP_IN_NAME = re.compile(r"^(?:model_)?step_(\d+)$")


def step_checkpoint_path(folder: str | Path, step: int) -> Path:
    """Where training keeps the weights of optimizer step ``step`` (``ModelStepCheckpoints``)."""
    return Path(folder) / f"step_{step}.ckpt"


def select_checkpoint(ckpt_path: str | None, run_dir: str | None, step: int | None) -> Path:
    """The checkpoint named by ``ckpt_path``, or found in ``run_dir`` (by ``step`` if given)."""
    if (ckpt_path is None) == (run_dir is None):
        raise ValueError(
            "give ckpt_path=FILE, or run_dir=RUN (its best checkpoint, or with step=N its "
            "step_N.ckpt / the original's ckpt/model_step_N.pt)"
        )
    if ckpt_path is not None:
        if step is not None:
            raise ValueError(f"step={step} picks a checkpoint in run_dir; drop it with ckpt_path")
        return Path(ckpt_path).expanduser()
    run = Path(run_dir).expanduser()
    if not run.is_dir():
        raise FileNotFoundError(f"run_dir={run} is not a folder")
    if step is not None:
        candidates = [
            step_checkpoint_path(run / "checkpoints", step),
            run / ORIGINAL_STEP.format(step=step),
        ]
    else:
        candidates = [run / "checkpoints" / "best.ckpt", run / "checkpoints" / "last.ckpt"]
    found = next((path for path in candidates if path.is_file()), None)
    if found is not None:
        return found
    steps = available_steps(run)
    listed = ", ".join(map(str, steps)) if steps else "none"
    wanted = f"step {step}" if step is not None else "a best.ckpt or last.ckpt"
    raise FileNotFoundError(f"{run} has no checkpoint for {wanted}; the steps it has: {listed}")


def available_steps(run: Path) -> list[int]:
    """The steps of the numbered checkpoints in a run folder (ours and the original's)."""
    steps = {
        int(match.group(1))
        for folder in CHECKPOINT_FOLDERS
        for path in (run / folder).glob("*step_*.*")
        if (match := _STEP_IN_NAME.match(path.stem))
    }
    return sorted(steps)


def run_folder(checkpoint: Path) -> Path:
    """The run a checkpoint belongs to: the folder above ``checkpoints/`` or ``ckpt/``."""
    parent = checkpoint.expanduser().resolve().parent
    return parent.parent if parent.name in CHECKPOINT_FOLDERS else parent


def results_folder(
    ckpt_path: str | None,
    run_dir: str | None,
    step: int | None,
    split: str,
    txt_db: str | None = None,
    n_clips: int | None = None,
    score_agg: str | None = None,
    video: str | None = None,
    image: str | None = None,
    fallback: str = "outputs/predict",
) -> str:
    """``<run>/predict/<split or txt_db>_<step or checkpoint>[_<n>clips][_<agg>]``; a
    dated folder under ``fallback`` when no checkpoint is found (``predict`` then says why)."""
    try:
        checkpoint = select_checkpoint(ckpt_path, run_dir, step)
    except (ValueError, OSError):
        return str(Path(fallback) / datetime.now().strftime("%Y-%m-%d_%H-%M-%S"))
    match = _STEP_IN_NAME.match(checkpoint.stem)
    single = video or image
    if single:
        name = f"one_{Path(single).stem}"
    elif txt_db:  # the file's folder and name: tango-test for .../txt_db/tango/test.jsonl
        name = f"{Path(txt_db).parent.name}-{Path(txt_db).stem}"
    else:
        name = split
    name += f"_step{match.group(1)}" if match else f"_{checkpoint.stem}"
    name += f"_{n_clips}clips" if n_clips is not None else ""
    name += f"_{score_agg}" if score_agg else ""
    return str(run_folder(checkpoint) / "predict" / name)
