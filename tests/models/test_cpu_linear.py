"""Linear layers through oneDNN (model.cpu_linear): the same outputs, gradients, parameters and
checkpoints as nn.Linear, with the path chosen by rows and by whether gradients are needed."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from clipbert.models import cpu_linear
from clipbert.models.cpu_linear import (
    MIN_ROWS_TRAINING,
    OneDnnLinear,
    linear_through_onednn,
    onednn_pays,
    route_cpu_linears,
)
from clipbert.models.quantization import quantize_int8

from .test_backbone import frames, texts, tiny_backbone


@pytest.mark.parametrize("shape", [(7, 48), (3, 5, 48), (2, 3, 4, 48)])
def test_onednn_product_equals_linear_with_gradients(shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    layer = nn.Linear(48, 80)
    x = torch.randn(*shape, requires_grad=True)
    expected = layer(x)
    got = linear_through_onednn(x, layer.weight, layer.bias)
    assert got.shape == expected.shape and got.is_contiguous()
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    grad = torch.randn_like(expected)
    inputs = (x, layer.weight, layer.bias)
    for ours, theirs in zip(
        torch.autograd.grad(got, inputs, grad),
        torch.autograd.grad(expected, inputs, grad),
        strict=True,
    ):
        torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)


def test_without_bias() -> None:
    layer = nn.Linear(16, 8, bias=False)
    x = torch.randn(4, 16)
    torch.testing.assert_close(linear_through_onednn(x, layer.weight, None), layer(x))


def test_the_path_follows_rows_gradients_dtype_and_device() -> None:
    weight = torch.zeros(8, 16, requires_grad=True)
    frozen = weight.detach()
    # without gradients always, so evaluation does not depend on how batches split
    assert onednn_pays(torch.zeros(1, 16), frozen)
    # gradients (of the input or of the weight) need enough rows
    assert not onednn_pays(torch.zeros(MIN_ROWS_TRAINING - 1, 16), weight)
    assert not onednn_pays(torch.zeros(MIN_ROWS_TRAINING - 1, 16, requires_grad=True), frozen)
    assert onednn_pays(torch.zeros(4, MIN_ROWS_TRAINING // 4, 16), weight)
    with torch.no_grad():
        assert onednn_pays(torch.zeros(1, 16), weight)
    assert not onednn_pays(torch.zeros(1024, 16, dtype=torch.bfloat16), frozen)
    with torch.autocast("cpu", torch.bfloat16):
        assert not onednn_pays(torch.zeros(1024, 16), frozen)
    assert not onednn_pays(torch.zeros(1024, 16, device="meta"), frozen)


def test_layers_are_routed_in_place_and_back() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.GELU(), nn.Linear(32, 4))
    reference = copy.deepcopy(model)
    assert route_cpu_linears(model, "onednn") == 2
    assert all(type(m) is OneDnnLinear for m in (model[0], model[2]))
    assert model.state_dict().keys() == reference.state_dict().keys()
    x = torch.randn(MIN_ROWS_TRAINING, 16)
    torch.testing.assert_close(model(x), reference(x), atol=1e-5, rtol=1e-5)
    assert route_cpu_linears(model, "onednn") == 0  # already there
    assert route_cpu_linears(model, "blas") == 2
    assert all(type(m) is nn.Linear for m in (model[0], model[2]))


def test_auto_follows_the_processor(monkeypatch: pytest.MonkeyPatch) -> None:
    for slow_blas, expected in ((True, OneDnnLinear), (False, nn.Linear)):
        monkeypatch.setattr(cpu_linear, "blas_is_slow_here", lambda slow=slow_blas: slow)
        model = nn.Sequential(nn.Linear(4, 4))
        route_cpu_linears(model, "auto")
        assert type(model[0]) is expected


def test_a_bad_mode_is_refused_with_the_key_named() -> None:
    with pytest.raises(ValueError, match="model.cpu_linear must be one of"):
        route_cpu_linears(nn.Linear(2, 2), "mkl")


def test_backbone_gives_the_same_answers_and_checkpoint_through_either_library() -> None:
    blas = tiny_backbone(cpu_linear="blas")
    onednn = tiny_backbone(cpu_linear="onednn")
    assert not any(type(m) is OneDnnLinear for m in blas.modules())
    assert any(type(m) is OneDnnLinear for m in onednn.bert.modules())
    assert blas.state_dict().keys() == onednn.state_dict().keys()
    video, (ids, mask) = frames(2, 3), texts(2)
    with torch.no_grad():
        torch.testing.assert_close(onednn(video, ids, mask), blas(video, ids, mask))


def test_int8_quantization_still_quantizes_routed_layers() -> None:
    class Task(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = tiny_backbone(cpu_linear="onednn")

    quantized = quantize_int8(Task(), cnn_bf16=False)
    kinds = {type(m).__name__ for m in quantized.backbone.bert.modules()}
    assert "OneDnnLinear" not in kinds and "Linear" in kinds
    assert any("quantized" in type(m).__module__ for m in quantized.backbone.bert.modules())
