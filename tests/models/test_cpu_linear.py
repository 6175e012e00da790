"""Linear layers through oneDNN (model.cpu_linear): the same outputs, gradients, parameters and
checkpoints as nn.Linear, for fp32 CPU calls outside autocast."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from clipbert.models import cpu_linear
from clipbert.models.cpu_linear import (
    MIN_ONEDNN_WEIGHTS,
    OneDnnLinear,
    linear_through_onednn,
    route_cpu_linears,
    takes_onednn,
)
from clipbert.models.quantization import quantize_int8

from .test_backbone import frames, texts, tiny_backbone


@pytest.fixture(autouse=True)
def small_layers_take_onednn(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests' layers are small; without this they would keep BLAS."""
    monkeypatch.setattr(cpu_linear, "MIN_ONEDNN_WEIGHTS", 0)


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


@pytest.mark.parametrize("trainable", ["input", "weight", "bias"])
def test_only_the_gradients_asked_for_are_computed(trainable: str) -> None:
    torch.manual_seed(0)
    layer = nn.Linear(24, 40)
    x = torch.randn(9, 24)
    tensors = {"input": x, "weight": layer.weight, "bias": layer.bias}
    for name, tensor in tensors.items():
        tensor.requires_grad_(name == trainable)
    grad = torch.randn(9, 40)
    (ours,) = torch.autograd.grad(
        linear_through_onednn(x, layer.weight, layer.bias), tensors[trainable], grad
    )
    (theirs,) = torch.autograd.grad(layer(x), tensors[trainable], grad)
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)


def test_flop_counts_are_those_of_nn_linear() -> None:
    layer, routed = nn.Linear(16, 8), nn.Linear(16, 8)
    route_cpu_linears(routed, "onednn")
    counts = []
    for module in (layer, routed):
        counter = FlopCounterMode(display=False)
        with counter:
            module(torch.randn(2, 5, 16, requires_grad=True)).sum().backward()
        counts.append(counter.get_total_flops())
    assert counts[0] == counts[1] == 3 * 2 * 10 * 16 * 8
    assert torch.ops.mkldnn._linear_pointwise in counter.get_flop_counts()["Global"]


def test_strided_and_empty_inputs() -> None:
    layer = nn.Linear(16, 8)
    strided = torch.randn(16, 6).t()  # rows that are not contiguous in memory
    torch.testing.assert_close(
        linear_through_onednn(strided, layer.weight, layer.bias), layer(strided)
    )
    empty = torch.zeros(0, 3, 16)
    assert linear_through_onednn(empty, layer.weight, layer.bias).shape == (0, 3, 8)


def test_without_bias() -> None:
    layer = nn.Linear(16, 8, bias=False)
    x = torch.randn(4, 16)
    torch.testing.assert_close(linear_through_onednn(x, layer.weight, None), layer(x))


def test_the_path_follows_size_dtype_device_and_autocast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpu_linear, "MIN_ONEDNN_WEIGHTS", MIN_ONEDNN_WEIGHTS)
    large = torch.zeros(MIN_ONEDNN_WEIGHTS // 16, 16)
    assert takes_onednn(torch.zeros(1, 16), large)
    assert takes_onednn(torch.zeros(4, 16, requires_grad=True), large)
    assert not takes_onednn(torch.zeros(4, 16), large[:-1])  # small layers keep BLAS
    assert not takes_onednn(torch.zeros(1024, 16, dtype=torch.bfloat16), large)
    with torch.autocast("cpu", torch.bfloat16):
        assert not takes_onednn(torch.zeros(1024, 16), large)
    assert not takes_onednn(torch.zeros(1024, 16, device="meta"), large)


def test_layer_under_autocast_and_in_bf16_keeps_torchs_product() -> None:
    torch.manual_seed(0)
    layer = nn.Linear(16, 8)
    routed = copy.deepcopy(layer)
    route_cpu_linears(routed, "onednn")
    x = torch.randn(5, 16)
    with torch.autocast("cpu", torch.bfloat16):
        assert routed(x).dtype == layer(x).dtype == torch.bfloat16
        torch.testing.assert_close(routed(x), layer(x))
    torch.testing.assert_close(routed.bfloat16()(x.bfloat16()), layer.bfloat16()(x.bfloat16()))


def test_layers_are_routed_in_place_and_back() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.GELU(), nn.Linear(32, 4))
    reference = copy.deepcopy(model)
    assert route_cpu_linears(model, "onednn") == 2
    assert all(type(m) is OneDnnLinear for m in (model[0], model[2]))
    assert model.state_dict().keys() == reference.state_dict().keys()
    x = torch.randn(5, 16)
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

    quantized = quantize_int8(Task(), cnn="fp32")
    kinds = {type(m).__name__ for m in quantized.backbone.bert.modules()}
    assert "OneDnnLinear" not in kinds and "Linear" in kinds
    assert any("quantized" in type(m).__module__ for m in quantized.backbone.bert.modules())


def test_compiled_layer_leaves_the_products_to_the_compiler() -> None:
    torch.manual_seed(0)
    layer = nn.Linear(16, 8)
    routed = copy.deepcopy(layer)
    route_cpu_linears(routed, "onednn")
    compiled = torch.compile(routed)
    x = torch.randn(5, 16, requires_grad=True)
    got, expected = compiled(x), layer(x)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    grads = [torch.autograd.grad(y.sum(), x)[0] for y in (got, expected)]
    torch.testing.assert_close(*grads, atol=1e-5, rtol=1e-5)
