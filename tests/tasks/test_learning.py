"""Training computes what it did yesterday, and it learns.

The demo recipe's tiny model and optimisation (``task=demo_video_qa``: AdamW with its parameter
groups, warm-up and linear decay, clipping at 5.0), built by the run layer, trained by a real
Lightning Trainer in fp32 with deterministic algorithms, on a fixed generated set: videos of a
coloured square moving over noise, each asked its square's colour. Frames are made in memory, so
no video encoder's version can change them.

- Golden loss (as torchtune's): the first training losses are pinned to 1e-4. A change to the
  model, the loss, the optimizer, its groups or the schedule moves them; if it is meant to,
  update ``GOLDEN_LOSSES`` with the new values and say why in the commit. It runs on one
  thread: Adam turns the last bits of a reduction's order into 1e-4 of loss within six steps,
  and the order changes with the number of threads.
- Learning: the model fits the set (val/acc >= 0.95) within ``LEARNING_STEPS`` steps.
"""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from clipbert.data.batches import QABatch
from clipbert.runs.build import build_module
from clipbert.tasks.base import ClipBertTask
from tests.helpers import compose_config

COLORS = {
    "red": (220, 40, 40),
    "green": (40, 200, 60),
    "blue": (50, 70, 230),
    "yellow": (230, 220, 50),
}
VIDEOS, BATCH_SIZE, IMAGE_SIZE, SQUARE = 16, 8, 64, 16
QUESTION = [2, 7, 8, 9, 10, 3, 0, 0]  # [CLS] what color is it [SEP] and padding, as token ids
VOCAB_SIZE = 30
GOLDEN_LOSSES = [1.386183, 1.386813, 1.359392, 1.334158, 1.305670, 1.298829]
LEARNING_STEPS = 60


def colour_batches(seed: int = 0) -> list[QABatch]:
    """``VIDEOS`` videos of one clip x 2 frames (48x64 uint8, as decoders give them): noise and
    a square of one of the colours, one pixel further right in the second frame."""
    generator = torch.Generator().manual_seed(seed)
    frames = torch.randint(0, 60, (VIDEOS, 1, 2, 3, 48, 64), generator=generator).to(torch.uint8)
    labels = torch.arange(VIDEOS) % len(COLORS)
    for video, label in enumerate(labels.tolist()):
        colour = torch.tensor(list(COLORS.values())[label], dtype=torch.uint8).view(3, 1, 1)
        top = int(torch.randint(0, 48 - SQUARE, (), generator=generator))
        left = int(torch.randint(0, 64 - SQUARE - 1, (), generator=generator))
        for t in range(2):
            frames[video, 0, t, :, top : top + SQUARE, left + t : left + t + SQUARE] = colour
    input_ids = torch.tensor([QUESTION] * VIDEOS)
    attention_mask = (input_ids != 0).long()
    return [
        QABatch(
            frames=frames[start : start + BATCH_SIZE],
            input_ids=input_ids[start : start + BATCH_SIZE],
            attention_mask=attention_mask[start : start + BATCH_SIZE],
            visual_index=torch.arange(BATCH_SIZE),
            labels=labels[start : start + BATCH_SIZE],
            answer_types=["color"] * BATCH_SIZE,
        )
        for start in range(0, VIDEOS, BATCH_SIZE)
    ]


def demo_module() -> ClipBertTask:
    """The demo recipe's module, sized for these questions, its weights drawn from seed 0."""
    pl.seed_everything(0)
    cfg = compose_config("train", ["task=demo_video_qa"])
    return build_module(
        cfg.model,
        cfg.task.module,
        image_size=IMAGE_SIZE,
        vocab_size=VOCAB_SIZE,
        answer_vocabulary=list(COLORS),
    )


class Losses(pl.Callback):
    """The loss of every training step, as the training step returned it."""

    def __init__(self) -> None:
        self.values: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.values.append(float(outputs["loss"]))


def fit(module: ClipBertTask, steps: int) -> list[float]:
    """Train ``steps`` optimizer steps on the colour batches; return the losses."""
    losses = Losses()
    trainer = pl.Trainer(
        max_steps=steps,
        accelerator="cpu",
        devices=1,
        precision="32-true",
        deterministic=True,
        gradient_clip_val=5.0,  # the demo recipe's
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=[losses],
    )
    trainer.fit(module, train_dataloaders=DataLoader(colour_batches(), batch_size=None))
    return losses.values


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_the_first_losses_are_the_golden_ones(one_thread) -> None:
    losses = fit(demo_module(), steps=len(GOLDEN_LOSSES))
    assert losses == pytest.approx(GOLDEN_LOSSES, abs=1e-4), f"losses were {losses}"


def test_the_tiny_model_fits_a_small_set() -> None:
    module = demo_module()
    losses = fit(module, steps=LEARNING_STEPS)
    trainer = pl.Trainer(
        accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False
    )
    (metrics,) = trainer.validate(
        module, dataloaders=DataLoader(colour_batches(), batch_size=None), verbose=False
    )
    assert metrics["val/acc"] >= 0.95, f"val/acc {metrics['val/acc']}, losses {losses}"
    assert losses[-1] < 0.5 * losses[0]
