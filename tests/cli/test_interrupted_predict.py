"""``predict.py`` killed with SIGKILL part-way leaves no partial outputs, and a rerun writes the
complete ones (real processes): outputs are written to a temporary file and renamed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from clipbert.cli.train import train
from tests.helpers import REPO

OUTPUTS = ("predictions.jsonl", "metrics.json")


def _predict_command(best: Path, out: Path) -> list[str]:
    return [
        sys.executable,
        str(REPO / "predict.py"),
        f"ckpt_path={best}",
        "split=test",
        "n_clips=8",  # a longer prediction loop, so the kill lands inside it
        f"hydra.run.dir={out}",
    ]


def test_predict_killed_midway_then_rerun_writes_complete_outputs(
    train_config, tmp_path: Path
) -> None:
    cfg = train_config("test=false")
    train(cfg)
    best = Path(cfg.paths.output_dir) / "checkpoints" / "best.ckpt"

    reference = tmp_path / "reference"
    began = time.monotonic()
    done = subprocess.run(_predict_command(best, reference), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    duration = time.monotonic() - began
    expected = {name: (reference / name).read_bytes() for name in OUTPUTS}

    out = tmp_path / "killed"
    process = subprocess.Popen(
        _predict_command(best, out),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        time.sleep(0.8 * duration)  # past start-up, inside (or at the end of) prediction
        os.killpg(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    for name in OUTPUTS:  # absent, or complete: never a torn file
        path = out / name
        assert not path.exists() or path.read_bytes() == expected[name], name

    rerun = subprocess.run(_predict_command(best, out), capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    for name in OUTPUTS:
        assert (out / name).read_bytes() == expected[name], name
    assert not list(out.glob("*.partial")), "the rerun leaves no partial files behind"
