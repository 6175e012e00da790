"""Pick BERT's attention implementation for the ClipBERT backbone (CPU or GPU).

The backbone hands ``attn_implementation`` to transformers' BertModel. An implementation is
only worth choosing if it gives the same numbers as the reference ("eager") inside our model,
with our ``[text ; visual]`` sequences and padding masks; among those that match, the fastest
wins. This script checks both, in that order:

1. Numerics: two backbones with identical weights (small BERT, real ResNet-50), one per
   implementation, run ``encode`` on the same padded input; report the max abs difference of
   the sequence output against the first implementation.
2. Speed: a bert-base encoder (12 layers by default) on (32, 69, 768) embeddings, msrvtt_ret's
   sequence length, with the padding mask built as ``ClipBertBackbone.encode`` builds it.
   Forward under ``no_grad`` (eval) and forward+backward (train mode, dropout on, as in
   training). Implementations alternate within each round so machine noise hits all of them.

Implementations that fail to build or run are reported and skipped.

    .venv/bin/python benchmarks/attention.py --threads 1 --rounds 5
    python benchmarks/attention.py --device cuda --rounds 20 --batch 128 [--bf16]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from transformers import BertModel
from transformers.masking_utils import create_bidirectional_mask

from clipbert.models.backbone import ClipBertBackbone, build_bert
from clipbert.models.resnet import resnet50

IMPLEMENTATIONS = ("eager", "sdpa")
TEXT_LEN = 20
VISUAL_TOKENS = 49  # 7 x 7 grid of one 224 px frame after the ResNet's stride 32


def bert_config(num_layers: int) -> dict[str, Any]:
    """bert-base width with ``num_layers`` layers."""
    return {
        "vocab_size": 30522,
        "hidden_size": 768,
        "num_hidden_layers": num_layers,
        "num_attention_heads": 12,
        "intermediate_size": 3072,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": 512,
        "type_vocab_size": 2,
        "initializer_range": 0.02,
        "layer_norm_eps": 1e-12,
        "pad_token_id": 0,
    }


def check_numerics(
    impls: tuple[str, ...], device: torch.device
) -> tuple[dict[str, float | str], float]:
    """Max abs diff of ``encode``'s output vs the first working implementation (or an error),
    and the reference output's max abs value for scale."""
    torch.manual_seed(0)
    config = bert_config(2)
    frames = torch.randint(0, 256, (2, 1, 2, 3, 224, 224)).float().to(device)
    input_ids = torch.randint(1, config["vocab_size"], (2, TEXT_LEN)).to(device)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 12:] = 0
    input_ids[1, 12:] = config["pad_token_id"]

    results: dict[str, float | str] = {}
    reference: Tensor | None = None
    state: dict[str, Tensor] | None = None
    for impl in impls:
        try:
            bert = build_bert(config, attn_implementation=impl)
            backbone = ClipBertBackbone(resnet50(), bert, image_size=None)
            backbone.to(device)
            if state is None:
                state = backbone.state_dict()
            else:
                backbone.load_state_dict(state)
            backbone.eval()
            with torch.no_grad():
                out = backbone.encode(frames, input_ids, attention_mask)
        except Exception as exc:  # any failure means: skip it
            results[impl] = f"failed: {type(exc).__name__}: {exc}"
            continue
        if reference is None:
            reference = out
        results[impl] = (out - reference).abs().max().item()
    return results, float("nan") if reference is None else reference.abs().max().item()


def _time(fn: Callable[[], None], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def benchmark_speed(
    impls: tuple[str, ...],
    num_layers: int,
    batch: int,
    rounds: int,
    device: torch.device,
    bf16: bool,
) -> dict[str, dict[str, list[float]] | str]:
    """Seconds per forward / forward+backward of ``bert.encoder``, per implementation."""
    torch.manual_seed(0)
    seq_len = TEXT_LEN + VISUAL_TOKENS
    embeddings = torch.randn(batch, seq_len, 768, device=device)
    # Text padded to varied lengths (8..20 tokens), visual tokens always valid, as in encode.
    text_len = 8 + torch.arange(batch) % (TEXT_LEN - 7)
    text_mask = (torch.arange(TEXT_LEN) < text_len[:, None]).long()
    mask_2d = torch.cat([text_mask, text_mask.new_ones(batch, VISUAL_TOKENS)], dim=1).to(device)

    models: dict[str, BertModel] = {}
    masks: dict[str, Tensor | None] = {}
    results: dict[str, dict[str, list[float]] | str] = {}
    state: dict[str, Tensor] | None = None
    for impl in impls:
        try:
            bert = build_bert(bert_config(num_layers), attn_implementation=impl).to(device)
            if state is None:
                state = bert.state_dict()
            else:
                bert.load_state_dict(state)
            masks[impl] = create_bidirectional_mask(
                config=bert.config, inputs_embeds=embeddings, attention_mask=mask_2d
            )
            models[impl] = bert
        except Exception as exc:
            results[impl] = f"failed: {type(exc).__name__}: {exc}"

    def autocast() -> torch.autocast:
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)

    def forward(impl: str) -> None:
        bert = models[impl].eval()
        with torch.no_grad(), autocast():
            bert.encoder(embeddings, attention_mask=masks[impl])

    def forward_backward(impl: str) -> None:
        bert = models[impl].train()
        bert.zero_grad(set_to_none=True)
        x = embeddings.detach().requires_grad_(True)
        with autocast():
            hidden = bert.encoder(x, attention_mask=masks[impl]).last_hidden_state
        hidden.float().sum().backward()

    for impl in list(models):  # warm-up, untimed; fwd+bwd runs the forward kernels too
        try:
            forward_backward(impl)
        except Exception as exc:
            results[impl] = f"failed: {type(exc).__name__}: {exc}"
            del models[impl]
    for impl in models:
        results[impl] = {"forward": [], "forward+backward": []}
    order = list(models)
    for round_index in range(rounds):
        for impl in order if round_index % 2 == 0 else order[::-1]:
            timings = results[impl]
            assert isinstance(timings, dict)
            timings["forward"].append(_time(lambda i=impl: forward(i), device))
            timings["forward+backward"].append(_time(lambda i=impl: forward_backward(i), device))
    return results


def main() -> None:
    """Parse arguments, run both checks, print a markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per implementation")
    parser.add_argument("--layers", type=int, default=12, help="BERT layers for the speed test")
    parser.add_argument("--batch", type=int, default=32, help="sequences for the speed test")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--bf16", action="store_true", help="time under bf16 autocast")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    numerics, scale = check_numerics(IMPLEMENTATIONS, device)
    speed = benchmark_speed(
        IMPLEMENTATIONS, args.layers, args.batch, args.rounds, device, args.bf16
    )

    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(
        f"torch {torch.__version__}, {where}, {args.threads} thread(s), "
        f"{'bf16 autocast' if args.bf16 else 'fp32'} timing, {args.rounds} rounds; "
        f"numerics: 2 layers, output max abs {scale:.3g}; "
        f"speed: {args.layers} layers, ({args.batch}, {TEXT_LEN + VISUAL_TOKENS}, 768)\n"
    )
    print("| impl | max abs diff vs first | forward median (s) | fwd+bwd median (s) |")
    print("| --- | --- | --- | --- |")
    medians: dict[str, dict[str, float]] = {}
    for impl in IMPLEMENTATIONS:
        diff = numerics[impl]
        diff_text = f"{diff:.2e}" if isinstance(diff, float) else diff
        timings = speed[impl]
        if isinstance(timings, dict):
            medians[impl] = {k: statistics.median(v) for k, v in timings.items()}
            fwd = f"{medians[impl]['forward']:.3f}"
            fwd_bwd = f"{medians[impl]['forward+backward']:.3f}"
        else:
            fwd = fwd_bwd = timings
        print(f"| {impl} | {diff_text} | {fwd} | {fwd_bwd} |")
    if "eager" in medians and "sdpa" in medians:
        ratio = {k: medians["sdpa"][k] / medians["eager"][k] for k in medians["eager"]}
        print(f"| sdpa/eager | | {ratio['forward']:.3f} | {ratio['forward+backward']:.3f} |")


if __name__ == "__main__":
    main()
