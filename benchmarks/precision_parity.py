"""How far each numeric mode moves our outputs from the original's (shared/fixtures).

The fixture's gate (1e-4 on logits) holds for true fp32. On GPUs, PyTorch lets cuDNN convolutions
use TF32 by default, and training runs in bf16 autocast; this measures what each costs against
the original's fp32 outputs, so users know which mode to use for a parity check.

    python benchmarks/precision_parity.py --fixtures ../shared/fixtures --device cuda
"""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import torch

from clipbert import load_original

CASES = {"qa_224_pipeline": ("qa", "qa"), "ret_224": ("ret", "retrieval")}


@contextlib.contextmanager
def numeric_mode(mode: str, device: torch.device) -> Iterator[None]:
    """fp32 (TF32 off), tf32 (TF32 on for matmul and cuDNN) or bf16 (autocast)."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    tf32 = mode == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
    try:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=mode == "bf16"):
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def state_dict(fixtures: Path, task: str) -> dict[str, torch.Tensor]:
    state = torch.load(fixtures / "state_dict_qa_fp16.pt", weights_only=True)
    if task == "qa":
        return state
    heads = torch.load(fixtures / "state_dict_heads_ret_fp16.pt", weights_only=True)[task]
    return {k: v for k, v in state.items() if "classifier" not in k} | heads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fixtures", type=Path, required=True)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    inputs = torch.load(args.fixtures / "inputs.pt", weights_only=True)
    outputs = torch.load(args.fixtures / "outputs.pt", weights_only=True)
    mean = torch.tensor(json.loads((args.fixtures / "meta.json").read_text())["pixel_mean_rgb"])
    visual = inputs["qa_224_pipeline"]["frames_resized_padded"] - mean.view(1, 1, 3, 1, 1)
    modes = ["fp32", "tf32", "bf16"] if device.type == "cuda" else ["fp32", "bf16"]
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"torch {torch.__version__}, {where}: max abs logits diff vs the original (fp32)\n")
    print("| case | " + " | ".join(modes) + " |")
    print("| --- |" + " --- |" * len(modes))
    for case, (task, head) in CASES.items():
        model = load_original(state_dict(args.fixtures, task), head=head).to(device)
        texts = inputs[case]
        diffs = []
        for mode in modes:
            with torch.no_grad(), numeric_mode(mode, device):
                logits = model(
                    visual.to(device),
                    texts["text_input_ids"].to(device),
                    texts["text_input_mask"].to(device),
                    texts["n_examples_list"],
                )
            diffs.append((logits.float().cpu() - outputs[case]["logits"]).abs().max().item())
        print(f"| {case} | " + " | ".join(f"{d:.2e}" for d in diffs) + " |")


if __name__ == "__main__":
    main()
