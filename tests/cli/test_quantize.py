"""quantize=int8: CPU inference with int8 linear layers and an int8, bf16 or fp32 CNN, close to
fp32."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

from clipbert import Predictor
from clipbert.cli.predict import predict
from clipbert.models import quantization
from clipbert.models.int8_cnn import CalibratingInt8CNN
from clipbert.models.quantization import ToFloat, check_quantize, cnn_precision, quantize_int8
from clipbert.models.resnet import ResNet
from clipbert.models.visual import GridEncoder
from tests.helpers import predict_config

ASSETS = Path(__file__).resolve().parents[1] / "assets"
VIDEO = ASSETS / "h264_176x144_29.97fps_lowbitrate.mp4"
QUESTION = "what color are the shapes?"


def test_check_quantize_refuses_unknown_modes_and_gpus() -> None:
    check_quantize(None, "cuda", "bf16-mixed")
    check_quantize("int8", "cpu", "32-true")
    with pytest.raises(ValueError, match="quantize must be one of"):
        check_quantize("int4", "cpu", "32-true")
    with pytest.raises(ValueError, match="CPU inference path"):
        check_quantize("int8", "cuda", "32-true")


@pytest.mark.parametrize("cnn", ["fp32", "bf16", "int8"])
def test_int8_model_keeps_the_fp32_answers(demo_checkpoint, cnn: str) -> None:
    fp32 = Predictor.from_checkpoint(demo_checkpoint("demo_video_qa"), n_clips=2)
    int8 = Predictor(
        quantize_int8(fp32.module, cnn=cnn, calibration_frames=4),
        fp32.text_tokenizer,
        fp32.reader.sampling,
    )
    quantized = int8.module
    for part in (quantized.backbone.bert, quantized.head):
        assert any(isinstance(m, DynamicLinear) for m in part.modules())
        assert not any(type(m) is nn.Linear for m in part.modules())
    assert not any(isinstance(m, DynamicLinear) for m in fp32.module.modules())  # a copy
    if cnn == "int8":  # the grid encoder runs inside the int8 graph
        assert isinstance(quantized.backbone.cnn, CalibratingInt8CNN)
        assert isinstance(quantized.backbone.grid_encoder, nn.Identity)
    else:
        dtype = quantized.backbone.cnn.conv1.weight.dtype
        assert dtype == (torch.bfloat16 if cnn == "bf16" else torch.float32)
        assert isinstance(quantized.backbone.grid_encoder[-1], ToFloat) == (cnn == "bf16")

    top = len(fp32.module.answer_vocabulary)
    expected = {a.answer: a.prob for a in fp32.answer(VIDEO, QUESTION, top_k=top)}
    for _ in range(2):  # an int8 CNN calibrates on the first video's frames, then runs int8
        got = {a.answer: a.prob for a in int8.answer(VIDEO, QUESTION, top_k=top)}
        assert got.keys() == expected.keys()
        assert max(abs(got[k] - expected[k]) for k in got) < 0.02
    if cnn == "int8":
        assert quantized.backbone.cnn.calibrated


def test_int8_cnn_calibrates_then_runs_int8_close_to_fp32() -> None:
    torch.manual_seed(0)
    resnet = ResNet(layers=(1, 1, 1, 1), stem_width=8, width=4, norm="batch_norm").eval()
    grid_encoder = GridEncoder(resnet.out_channels, 16)
    frames = torch.randn(6, 3, 64, 64).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        expected = grid_encoder(resnet(frames))
        cnn = CalibratingInt8CNN(resnet, calibration_frames=4, grid_encoder=grid_encoder)
        torch.testing.assert_close(cnn(frames[:3]), expected[:3], rtol=1e-5, atol=1e-5)
        assert not cnn.calibrated  # 3 of 4 frames: still fp32, observing
        cnn(frames[3:])
        assert cnn.calibrated
        got = cnn(frames)
    assert got.dtype == torch.float32 and got.shape == expected.shape
    assert (got - expected).norm() / expected.norm() < 0.1  # int8: close, not equal
    assert not torch.equal(got, expected)


def test_the_cnn_precision_follows_the_int8_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    assert cnn_precision("auto") == "int8"  # x86: PyTorch's int8 backend is built in
    assert cnn_precision("bf16") == "bf16"
    monkeypatch.setattr(quantization, "has_x86_int8", lambda: False)
    for native_bf16, expected in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(quantization, "cpu_has_native_bf16", lambda b=native_bf16: b)
        assert cnn_precision("auto") == expected
    with pytest.raises(ValueError, match="quantize_cnn=int8 needs"):
        cnn_precision("int8")


def test_bad_quantize_options_name_the_key() -> None:
    with pytest.raises(ValueError, match="quantize_cnn must be one of"):
        quantize_int8(nn.Module(), cnn="int4")
    resnet = ResNet(layers=(1, 1, 1, 1), stem_width=8, width=4, norm="batch_norm")
    with pytest.raises(ValueError, match="quantize_calibration_frames"):
        CalibratingInt8CNN(resnet.eval(), calibration_frames=0)
    with pytest.raises(ValueError, match="call .eval"):
        CalibratingInt8CNN(resnet.train(), calibration_frames=4)


def test_predictor_and_predict_py_take_quantize(demo_checkpoint, tmp_path) -> None:
    checkpoint = demo_checkpoint("demo_video_qa")
    predictor = Predictor.from_checkpoint(checkpoint, quantize="int8")
    assert predictor.quantize == "int8"
    assert predictor.answer(VIDEO, QUESTION)[0].prob > 0
    with pytest.raises(ValueError, match="precision=32-true"):
        Predictor.from_checkpoint(checkpoint, quantize="int8", precision="bf16-mixed")

    out = tmp_path / "int8"
    metrics = predict(
        predict_config(out, f"ckpt_path={checkpoint}", "quantize=int8", "report=false")
    )
    assert json.loads((out / "metrics.json").read_text()) == metrics
    bad = predict_config(
        tmp_path / "bad", f"ckpt_path={checkpoint}", "quantize=int8", "precision=bf16-mixed"
    )
    with pytest.raises(ValueError, match="precision=32-true"):
        predict(bad)
    for option, message in (
        ("quantize_cnn=int4", "quantize_cnn must be one of"),
        ("quantize_calibration_frames=0", "quantize_calibration_frames must be >= 1"),
    ):
        bad = predict_config(tmp_path / "bad", f"ckpt_path={checkpoint}", "quantize=int8", option)
        with pytest.raises(ValueError, match=message):  # predict.py passes both keys on
            predict(bad)
