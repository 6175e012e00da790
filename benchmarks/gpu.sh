#!/usr/bin/env bash
# The GPU figures of the performance issue, in one short run (about 8 minutes on an H100):
# bf16 training throughput and utilization at 448 px, 8 clips x 2 frames, batch 16 (batched,
# the original's clip order, and batched with model.compile=true), and 16-clip inference
# videos/s and peak memory. JSON goes to $OUT (or /tmp), the tables to stdout.
#   bash benchmarks/gpu.sh            # from the repository root, with the package installed
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-/tmp}"
python="${PYTHON:-python}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$python benchmarks/train_step.py --device cuda --precision bf16 --image-size 448 \
  --n-clips 8 --num-frames 2 --batch 16 --order batched original --steps 5 --warmup 3 \
  --no-record --json "$out/gpu_train_step.json"
$python benchmarks/train_step.py --device cuda --precision bf16 --image-size 448 \
  --n-clips 8 --num-frames 2 --batch 16 --compile on --steps 5 --warmup 3 \
  --no-record --json "$out/gpu_train_step_compiled.json"
$python benchmarks/inference.py --device cuda --precision bf16 --n-clips 1 4 16 --batch 16 \
  --repeats 5 --no-record --json "$out/gpu_inference.json"
