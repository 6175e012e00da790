import pytest
import torch
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

from clipbert.models.resnet import Bottleneck, ResNet, conv_norm, folds_into_conv, resnet50


def tiny_resnet(**kwargs) -> ResNet:
    return ResNet(layers=(1, 1, 1, 1), stem_width=8, width=4, **kwargs)


@pytest.fixture(scope="module")
def r50() -> ResNet:
    return resnet50().eval()


def test_resnet50_res5_is_stride_32(r50: ResNet) -> None:
    with torch.no_grad():
        out = r50(torch.randn(1, 3, 448, 448))
    assert r50.out_channels == 2048
    assert out.shape == (1, 2048, 14, 14)
    assert out.min() >= 0  # res5 is taken after the final ReLU


def test_resnet50_block_counts_and_widths(r50: ResNet) -> None:
    stages = [r50.layer1, r50.layer2, r50.layer3, r50.layer4]
    assert [len(s) for s in stages] == [3, 4, 6, 3]
    assert [s[0].conv3.out_channels for s in stages] == [256, 512, 1024, 2048]
    assert [s[0].conv1.out_channels for s in stages] == [64, 128, 256, 512]
    assert r50.layer1[0].conv1.in_channels == 64


def test_tiny_resnet_shapes() -> None:
    net = tiny_resnet().eval()
    with torch.no_grad():
        out = net(torch.randn(2, 3, 192, 192))
    assert net.out_channels == 4 * 8 * 4
    assert out.shape == (2, 128, 6, 6)


def test_stride_sits_in_the_1x1_conv(r50: ResNet) -> None:
    assert r50.layer1[0].conv1.stride == (1, 1)
    for stage in (r50.layer2, r50.layer3, r50.layer4):
        block = stage[0]
        assert block.conv1.stride == (2, 2)
        assert block.conv2.stride == (1, 1)
        assert block.downsample[0].stride == (2, 2)
        assert all(b.conv1.stride == (1, 1) and b.conv2.stride == (1, 1) for b in stage[1:])


def test_stride_in_3x3_option_moves_the_stride() -> None:
    block = Bottleneck(16, 8, 32, stride=2, stride_in_1x1=False)
    assert block.conv1.stride == (1, 1)
    assert block.conv2.stride == (2, 2)


def test_downsample_only_where_shape_changes(r50: ResNet) -> None:
    for stage in (r50.layer1, r50.layer2, r50.layer3, r50.layer4):
        assert isinstance(stage[0].downsample[1], FrozenBatchNorm2d)
        assert all(b.downsample is None for b in stage[1:])
    assert Bottleneck(32, 8, 32).downsample is None


def test_stem_and_layer1_are_frozen(r50: ResNet) -> None:
    frozen = {n for n, p in r50.named_parameters() if not p.requires_grad}
    assert frozen == {n for n, _ in r50.named_parameters() if n.startswith(("conv1.", "layer1."))}
    assert len(frozen) == 11  # as in the original: the stem conv and the 10 convs of res2


@pytest.mark.parametrize(("freeze_at", "trainable_from"), [(0, 0), (1, 1), (3, 3)])
def test_freeze_at_counts_stages(freeze_at: int, trainable_from: int) -> None:
    net = tiny_resnet(freeze_at=freeze_at)
    stages = [net.conv1, net.layer1, net.layer2, net.layer3, net.layer4]
    for index, stage in enumerate(stages):
        assert all(p.requires_grad == (index >= trainable_from) for p in stage.parameters())


def test_no_conv_bias_and_frozen_bn_buffers(r50: ResNet) -> None:
    convs = [m for m in r50.modules() if isinstance(m, nn.Conv2d)]
    norms = [m for m in r50.modules() if isinstance(m, FrozenBatchNorm2d)]
    assert len(convs) == 53 and all(c.bias is None for c in convs)
    assert len(norms) == 53
    for norm in norms:
        assert norm.eps == 1e-5
        assert not list(norm.parameters())
        assert {n for n, _ in norm.named_buffers()} == {
            "weight",
            "bias",
            "running_mean",
            "running_var",
        }
    assert not any(isinstance(m, nn.BatchNorm2d) for m in r50.modules())


def test_train_mode_does_not_change_outputs() -> None:
    net = tiny_resnet()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        train_out = net.train()(x)
        eval_out = net.eval()(x)
    torch.testing.assert_close(train_out, eval_out, rtol=0, atol=0)


def test_key_names_are_torchvision_style() -> None:
    keys = set(tiny_resnet().state_dict())
    assert {"conv1.weight", "bn1.running_var", "layer1.0.downsample.0.weight"} <= keys
    assert {"layer4.0.conv1.weight", "layer4.0.bn3.bias", "layer4.0.downsample.1.weight"} <= keys
    assert not any("num_batches_tracked" in k for k in keys)


def test_batch_norm_option_for_training_from_scratch() -> None:
    tiny = ResNet(layers=(1, 1, 1, 1), stem_width=8, width=8, freeze_at=0, norm="batch_norm")
    norms = [m for m in tiny.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms and not any(isinstance(m, FrozenBatchNorm2d) for m in tiny.modules())
    assert all(m.weight.requires_grad for m in norms)
    x = torch.randn(4, 3, 64, 64)
    tiny.train()
    tiny(x)
    assert norms[0].num_batches_tracked.item() == 1  # batch statistics are used and tracked


def test_unknown_norm_names_the_config_key() -> None:
    with pytest.raises(ValueError, match="model.cnn.norm"):
        ResNet(norm="group_norm")


def test_frozen_bn_folded_into_the_conv_is_the_same_function_and_gradient() -> None:
    """``conv_norm`` folds a frozen BatchNorm into the conv; values and the conv weight's
    gradient equal BatchNorm applied after the conv."""
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 6, 3, stride=2, padding=1, bias=False)
    norm = FrozenBatchNorm2d(6, eps=1e-5)
    for name in ("weight", "bias", "running_mean"):
        getattr(norm, name).normal_()
    norm.running_var.uniform_(0.5, 2.0)
    x = torch.randn(2, 4, 16, 16)
    folded = conv_norm(conv, norm, x)
    (folded_grad,) = torch.autograd.grad(folded.square().sum(), conv.weight)
    separate = norm(conv(x))
    (separate_grad,) = torch.autograd.grad(separate.square().sum(), conv.weight)
    torch.testing.assert_close(folded, separate, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(folded_grad, separate_grad, rtol=1e-4, atol=1e-4)


def test_frozen_bn_keeps_bf16_activations_under_autocast() -> None:
    """The fp32 BatchNorm buffers must not promote bf16 activations back to fp32."""
    net = tiny_resnet()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert net(torch.randn(1, 3, 64, 64)).dtype == torch.bfloat16


def test_eval_mode_batch_norm_folds_and_training_mode_does_not() -> None:
    torch.manual_seed(0)
    conv, norm = nn.Conv2d(4, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6)
    norm.weight.data.uniform_(0.2, 0.6)
    norm.running_mean.normal_(0, 0.1)
    norm.running_var.uniform_(0.5, 2.0)
    x = torch.randn(2, 4, 8, 8)
    assert folds_into_conv(norm.eval())
    torch.testing.assert_close(conv_norm(conv, norm, x), norm(conv(x)), rtol=1e-5, atol=1e-5)
    assert not folds_into_conv(norm.train())  # batch statistics: not a fixed map
