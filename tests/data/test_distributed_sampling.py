"""Two real processes (DDP over gloo on the CPU) read the training split: each gets its own
share, and every epoch is shuffled afresh (the original's horovod sampler never reshuffled),
whether the videos come from the LMDB, local shards or shards on an S3 server on loopback."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate

from clipbert.callbacks.process_group import ShutDownProcessGroupAtExit


class _RecordOrder(pl.LightningModule):
    """Writes the question ids of every training batch, per rank and epoch; learns nothing."""

    def __init__(self, out: Path) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))
        self.out = out

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        record = self.out / f"rank{self.global_rank}_epoch{self.current_epoch}.txt"
        with record.open("a") as file:
            file.writelines(f"{qid}\n" for qid in batch.question_ids)
        return self.weight * batch.frames.float().mean()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.parametrize("store", ["lmdb", "shards", "s3"])
def test_each_process_reads_its_own_share_in_a_new_order_every_epoch(
    train_config, tmp_path: Path, request: pytest.FixtureRequest, store: str
) -> None:
    vis_db = []
    if store != "lmdb":
        local, url = request.getfixturevalue("demo_shards")
        vis_db = [f"task.datamodule.vis_db={local if store == 'shards' else url}"]
        if store == "s3":  # the endpoint from the environment, as on a cluster
            request.getfixturevalue("monkeypatch").setenv(
                "AWS_ENDPOINT_URL", request.getfixturevalue("s3_endpoint")
            )
    cfg = train_config(
        "task.datamodule.batch_size=2", "task.datamodule.max_texts_per_video=1", *vis_db
    )
    datamodule = instantiate(cfg.task.datamodule)
    pl.seed_everything(0)
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp_spawn",
        max_epochs=2,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[ShutDownProcessGroupAtExit()],  # as train.py: no gloo thread outlives Python
    )
    trainer.fit(_RecordOrder(tmp_path), datamodule=datamodule)

    def order(rank: int, epoch: int) -> list[str]:
        return (tmp_path / f"rank{rank}_epoch{epoch}.txt").read_text().split()

    datamodule.setup("fit")
    groups = datamodule.datasets["train"].groups
    everything = sorted(str(example.question_id) for group in groups for example in group)
    for epoch in (0, 1):
        first, second = order(0, epoch), order(1, epoch)
        assert len(first) == len(second) == len(everything) // 2
        assert sorted(first + second) == everything  # disjoint shards that cover the split
    assert order(0, 0) != order(0, 1) and order(1, 0) != order(1, 1)
