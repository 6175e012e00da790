"""Clip aggregation, the original's lse loss, optimizer groups, the lr schedule, clipping."""

from __future__ import annotations

import copy
from functools import partial
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from clipbert.models.heads import aggregate_clip_logits
from clipbert.tasks.base import ClipBertTask
from clipbert.tasks.optimization import clip_grad_norm, parameter_groups, warmup_linear_decay


def original_lse_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The original's formula: lse over all (clip, class) minus lse over clips of the gold class."""
    e, n, c = logits.shape
    everything = logits.reshape(e, n * c).logsumexp(dim=1)
    gold = logits.gather(2, labels.view(e, 1, 1).expand(e, n, 1)).squeeze(2).logsumexp(dim=1)
    return (everything - gold).mean()


def test_lse_aggregation_then_ce_is_the_original_loss() -> None:
    torch.manual_seed(0)
    logits, labels = torch.randn(6, 4, 9), torch.randint(0, 9, (6,))
    ours = F.cross_entropy(aggregate_clip_logits(logits, "lse"), labels)
    torch.testing.assert_close(ours, original_lse_loss(logits, labels))


def test_mean_and_max_aggregation() -> None:
    logits = torch.tensor([[[1.0, 5.0], [3.0, -1.0]]])
    torch.testing.assert_close(aggregate_clip_logits(logits, "mean"), torch.tensor([[2.0, 2.0]]))
    torch.testing.assert_close(aggregate_clip_logits(logits, "max"), torch.tensor([[3.0, 5.0]]))


def test_single_clip_aggregation_is_identity() -> None:
    logits = torch.randn(3, 1, 5)
    for how in ("mean", "max", "lse"):
        torch.testing.assert_close(aggregate_clip_logits(logits, how), logits[:, 0])


def test_unknown_aggregation() -> None:
    with pytest.raises(ValueError, match="score_agg"):
        aggregate_clip_logits(torch.zeros(1, 1, 1), "median")


def test_schedule_warms_up_then_decays_to_zero() -> None:
    values = [warmup_linear_decay(s, warmup_steps=10, total_steps=100) for s in range(1, 101)]
    assert values[0] == pytest.approx(0.1) and values[9] == pytest.approx(1.0)
    assert values[54] == pytest.approx(0.5)
    assert values[-1] == 0.0
    assert all(a <= b for a, b in zip(values[:10], values[1:10], strict=False))


class Toy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Module()
        self.backbone.cnn = nn.Conv2d(3, 4, 3)
        self.backbone.grid_encoder = nn.Conv2d(4, 4, 3, bias=False)
        self.backbone.bert = nn.Module()
        self.backbone.bert.dense = nn.Linear(4, 4)
        self.backbone.bert.LayerNorm = nn.LayerNorm(4)
        self.head = nn.Linear(4, 2)
        self.backbone.frozen = nn.Linear(2, 2).requires_grad_(False)


def test_parameter_groups_follow_the_original_rules() -> None:
    groups = parameter_groups(Toy().named_parameters(), cnn_lr=1e-4, cnn_weight_decay=0.5)
    by_name = {g["name"]: g for g in groups}
    assert set(by_name) == {"cnn", "cnn_no_decay", "transformer", "transformer_no_decay"}
    assert len(by_name["cnn"]["params"]) == 2  # conv weights (grid encoder included)
    assert by_name["cnn"]["lr"] == 1e-4 and by_name["cnn"]["weight_decay"] == 0.5
    assert by_name["cnn_no_decay"]["weight_decay"] == 0.0
    assert "lr" not in by_name["transformer"]  # takes the optimizer's own lr and decay
    assert len(by_name["transformer_no_decay"]["params"]) == 4  # biases + LayerNorm weight/bias
    total = sum(len(g["params"]) for g in groups)
    assert total == 2 + 1 + 2 + 4  # the frozen layer is left out


class SteepTask(ClipBertTask):
    """A linear "backbone" with a steep loss; records the gradient norm the optimizer steps on
    and the gradients of its first step."""

    def __init__(self, fused: bool, accumulation: str = "sum") -> None:
        optimizer = partial(torch.optim.AdamW, lr=1e-3, fused=fused)
        super().__init__(
            nn.Linear(4, 1),
            optimizer=optimizer,
            cnn_lr=1e-3,
            cnn_weight_decay=0.0,
            accumulation=accumulation,
        )
        self.stepped_norms: list[float] = []
        self.first_grads: list[torch.Tensor] | None = None

    def on_before_optimizer_step(self, optimizer) -> None:
        if self.first_grads is None:
            self.first_grads = [p.grad.clone() for p in self.backbone.parameters()]

    def on_train_batch_start(self, batch, batch_idx: int) -> None:  # no loader bookkeeping here
        pass

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        return 1000.0 * self.backbone(batch[0]).square().mean()

    def optimizer_step(self, *args, **kwargs) -> None:
        super().optimizer_step(*args, **kwargs)  # the closure runs backward and clipping first
        grads = [p.grad for p in self.parameters() if p.grad is not None]
        self.stepped_norms.append(
            float(
                torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
            )
        )


def _fit(
    task: SteepTask,
    precision: str,
    accelerator: str = "cpu",
    accumulate: int = 1,
    clip: float | None = 0.5,
    data: torch.Tensor | None = None,
) -> pl.Trainer:
    inputs = torch.randn(8, 4) * 10 if data is None else data
    data = DataLoader(TensorDataset(inputs), batch_size=4)
    trainer = pl.Trainer(
        accelerator=accelerator,
        max_steps=2 if accumulate == 1 else 1,
        precision=precision,
        gradient_clip_val=clip,
        accumulate_grad_batches=accumulate,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(task, data)
    return trainer


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
@pytest.mark.parametrize("fused", [False, True])
def test_gradients_are_clipped_with_fused_and_plain_optimizers(precision: str, fused: bool) -> None:
    task = SteepTask(fused)
    _fit(task, precision)
    assert len(task.stepped_norms) == 2
    assert all(norm <= 0.5 + 1e-4 for norm in task.stepped_norms), task.stepped_norms


def test_fp16_trains_with_the_shipped_fused_optimizer_and_clipping() -> None:
    if not torch.cuda.is_available():
        pytest.skip("16-mixed (a gradient scaler) needs a GPU")
    task = SteepTask(fused=True)
    trainer = _fit(task, "16-mixed", accelerator="gpu")  # on a CPU it becomes bf16
    assert not trainer.optimizers[0].defaults["fused"]
    assert len(task.stepped_norms) == 2
    assert all(norm <= 0.5 + 1e-4 for norm in task.stepped_norms), task.stepped_norms


@pytest.mark.parametrize(
    ("precision", "strategy", "fused"),
    [
        ("16-mixed", "DDPStrategy", False),
        ("bf16-mixed", "FSDPStrategy", False),
        ("bf16-mixed", "DDPStrategy", True),
        ("32-true", "SingleDeviceStrategy", True),
    ],
)
def test_the_optimizer_runs_unfused_only_where_gradients_are_scaled_or_sharded(
    precision: str, strategy: str, fused: bool, monkeypatch
) -> None:
    task = SteepTask(fused=True)
    trainer = SimpleNamespace(precision=precision, strategy=type(strategy, (), {})())
    monkeypatch.setattr(type(task), "trainer", property(lambda self: trainer))
    assert task._unfused_if_needed() == ({} if fused else {"fused": False})


@pytest.mark.parametrize(("accumulation", "factor"), [("sum", 1.0), ("mean", 0.5)])
def test_accumulated_micro_batches_sum_their_gradients_as_the_original(
    accumulation: str, factor: float
) -> None:
    torch.manual_seed(0)
    inputs = torch.randn(8, 4)
    task = SteepTask(fused=False, accumulation=accumulation)
    reference = copy.deepcopy(task.backbone)
    for half in inputs.split(4):  # the original: backward per micro-batch, loss undivided
        (1000.0 * reference(half).square().mean()).backward()
    _fit(task, "32-true", accumulate=2, clip=None, data=inputs)
    for got, summed in zip(task.first_grads, reference.parameters(), strict=True):
        torch.testing.assert_close(got, factor * summed.grad)


def test_unknown_accumulation_is_refused() -> None:
    with pytest.raises(ValueError, match="accumulation must be one of"):
        SteepTask(fused=False, accumulation="average")


@pytest.mark.parametrize("scale", [1e-3, 1.0, 1e3, float("nan"), "just under the limit"])
def test_clip_grad_norm_matches_torch_bit_for_bit(scale: float | str) -> None:
    """Below the limit it skips torch's multiply by 1.0; above it, within torch's 1e-6 of it,
    or for a NaN norm it scales as torch does."""
    torch.manual_seed(0)
    limit = 5.0
    ours, theirs = (
        [nn.Parameter(torch.zeros(shape)) for shape in [(30, 7), (7,), (3, 3, 3)]] for _ in "ab"
    )
    for a, b in zip(ours, theirs, strict=True):
        if isinstance(scale, str):  # one entry of 4.9999995: torch still scales, by 0.9999999
            a.grad = torch.zeros(a.shape)
            a.grad.view(-1)[0] = limit - 5e-7 if a is ours[0] else 0.0
        else:
            a.grad = torch.randn(a.shape) * scale
        b.grad = a.grad.clone()
    exact = {"rtol": 0, "atol": 0, "equal_nan": True}
    torch.testing.assert_close(
        clip_grad_norm(ours, limit), nn.utils.clip_grad_norm_(theirs, limit), **exact
    )
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a.grad, b.grad, **exact)
