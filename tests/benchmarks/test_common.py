"""What the benchmarks compare is like with like: the original's clip order (one whole forward
per clip) gives the batched pass's outputs, so only speed and memory differ."""

from __future__ import annotations

import sys

import torch

from tests.helpers import REPO

sys.path.insert(0, str(REPO / "benchmarks"))  # the benchmark scripts import it as `common`
from common import OneClipAtATime  # noqa: E402

from clipbert.models.backbone import build_backbone  # noqa: E402

TINY_CNN = {"layers": [1, 1, 1, 1], "stem_width": 8, "width": 4}
TINY_BERT = {
    "vocab_size": 50,
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
}


def test_one_clip_at_a_time_gives_the_batched_outputs() -> None:
    torch.manual_seed(0)
    batched = build_backbone(TINY_CNN, TINY_BERT, 64).eval()
    original = build_backbone(TINY_CNN, TINY_BERT, 64).eval()
    original.load_state_dict(batched.state_dict())
    original.__class__ = OneClipAtATime
    generator = torch.Generator().manual_seed(1)
    frames = torch.randint(0, 256, (2, 3, 2, 3, 48, 64), dtype=torch.uint8, generator=generator)
    ids = torch.randint(5, 50, (3, 6), generator=generator)
    mask = torch.ones_like(ids)
    index = torch.tensor([0, 1, 1])
    calls = []
    original.cnn.register_forward_hook(lambda module, args, out: calls.append(len(args[0])))
    with torch.no_grad():
        expected = batched(frames, ids, mask, index)
        got = original(frames, ids, mask, index)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    assert calls == [4, 4, 4]  # 3 clips one after another, 2 videos x 2 frames each
