"""SLURM: ``hydra/launcher=slurm`` asks for one task per GPU and Lightning's requeue signal, and a
job SLURM requeues resumes from its own newest checkpoint (SLURM is simulated: its variables, and
an ``scontrol`` that records what it was asked)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig
from omegaconf.errors import ValidationError

from clipbert.callbacks.resume import requeued_checkpoint
from clipbert.cli.errors import one_line, require_launcher_plugin
from clipbert.runs.configs import CONFIG_DIR
from tests.helpers import REPO, tiny_demo_overrides

SLURM_JOB = {  # what SLURM sets for the one task of a one-GPU job
    "SLURM_NTASKS": "1",
    "SLURM_JOB_NAME": "train",
    "SLURM_JOB_ID": "4242",
    "SLURM_PROCID": "0",
    "SLURM_LOCALID": "0",
    "SLURM_NODEID": "0",
}


def launcher_config(tmp_path: Path, *overrides: str) -> DictConfig:
    """train.py's config with the Hydra part (hydra/launcher=slurm), sweeping into tmp_path."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(
            "train",
            ["hydra/launcher=slurm", f"hydra.sweep.dir={tmp_path / 'sweep'}", *overrides],
            return_hydra_config=True,
        )


def test_the_slurm_launcher_asks_for_one_task_per_gpu_on_every_node(tmp_path: Path) -> None:
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="the [slurm] extra")
    cfg = launcher_config(tmp_path, "trainer=ddp", "trainer.devices=4", "trainer.num_nodes=2")
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.nodes, launcher.tasks_per_node, launcher.gpus_per_node) == (2, 4, 4)
    assert launcher.partition is None and launcher.account is None
    assert launcher.additional_parameters.signal == "USR1@120"  # Lightning's requeue signal


def test_the_sbatch_script_carries_the_signal_and_requeue(tmp_path: Path, monkeypatch) -> None:
    """The real launcher up to the submission: submitit writes its USR2 signal line unless
    additional_parameters replace it, as slurm.yaml does."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="the [slurm] extra")
    submitit = pytest.importorskip("submitit")
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "srun").write_text("#!/bin/sh\n")  # submitit looks for it
    (tmp_path / "bin" / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    executors = []
    monkeypatch.setattr(
        submitit.AutoExecutor, "map_array", lambda self, *args: executors.append(self) or []
    )
    cfg = launcher_config(
        tmp_path,
        "trainer.devices=8",
        "hydra.launcher.partition=gpu",
        "hydra.launcher.signal_delay_s=300",
    )
    launcher = instantiate(cfg.hydra.launcher)
    launcher.setup(hydra_context=None, task_function=None, config=cfg)
    launcher.launch([["seed=1"], ["seed=2"]], initial_job_idx=0)
    sbatch = executors[0]._executor._make_submission_file_text("python job", "uid")
    for line in (
        "--signal=USR1@300",
        "--requeue",
        "--nodes=1",
        "--ntasks-per-node=8",
        "--gpus-per-node=8",
        "--partition=gpu",
    ):
        assert f"#SBATCH {line}\n" in sbatch, line
    assert "USR2" not in sbatch


def test_devices_auto_is_refused_by_the_slurm_launcher(tmp_path: Path) -> None:
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="the [slurm] extra")
    cfg = launcher_config(tmp_path, "trainer=ddp")  # devices: auto
    with pytest.raises(ValidationError, match="'auto'.*Integer"):
        instantiate(cfg.hydra.launcher)


def test_a_missing_launcher_plugin_names_the_extra(monkeypatch) -> None:
    monkeypatch.setattr("clipbert.cli.errors._importable", lambda module: False)
    require_launcher_plugin(["seed=1,2", "hydra/launcher=basic"])
    with pytest.raises(SystemExit, match=r"pip install clipbert\[slurm\]"):
        require_launcher_plugin(["-m", "hydra/launcher=slurm", "seed=1,2"])


def test_only_a_requeued_job_resumes_from_its_newest_checkpoint(
    tmp_path: Path, monkeypatch
) -> None:
    (tmp_path / "checkpoints").mkdir()
    last, hpc = tmp_path / "checkpoints" / "last.ckpt", tmp_path / "hpc_ckpt_1.ckpt"
    for age, path in ((20, hpc), (10, last)):
        path.write_bytes(b"")
        os.utime(path, (time.time() - age, time.time() - age))
    monkeypatch.delenv("SLURM_RESTART_COUNT", raising=False)
    assert requeued_checkpoint(tmp_path) is None  # a first start: ckpt_path decides
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    assert requeued_checkpoint(tmp_path) == last  # preempted later without a signal
    os.utime(hpc)
    assert requeued_checkpoint(tmp_path) == hpc
    assert requeued_checkpoint(tmp_path / "elsewhere") is None


def _global_step(checkpoint: Path) -> int:
    return torch.load(checkpoint, map_location="cpu", weights_only=False)["global_step"]


@pytest.mark.slow
def test_a_job_signalled_before_its_time_limit_is_requeued_and_resumes(
    demo_root: Path, tmp_path: Path
) -> None:
    """SIGUSR1 mid-epoch: at the next batch end Lightning saves hpc_ckpt_1.ckpt and calls
    ``scontrol requeue``; SLURM then stops the job (SIGTERM) and starts it again, which resumes
    from that checkpoint and misses no batch."""
    bin_dir, run = tmp_path / "bin", tmp_path / "run"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text(f'#!/bin/sh\necho "$@" >> {tmp_path / "scontrol.txt"}\n')
    (bin_dir / "scontrol").chmod(0o755)
    env = {**os.environ, **SLURM_JOB, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    command = [
        sys.executable,
        str(REPO / "train.py"),
        *tiny_demo_overrides(demo_root),
        "task.datamodule.batch_size=2",  # 12 steps per epoch
        "trainer.max_epochs=2",
        "callbacks.step_checkpoint.every_n_train_steps=5",
        "trainer.log_every_n_steps=2",
        f"hydra.run.dir={run}",
    ]
    process = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for(run / "checkpoints" / "last.ckpt", process)  # step 5: mid-epoch
        process.send_signal(signal.SIGUSR1)
        wait_for(tmp_path / "scontrol.txt", process)  # after the checkpoint
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=120)
    finally:
        process.kill()
        process.wait()
    assert (tmp_path / "scontrol.txt").read_text() == "requeue 4242\n"
    saved_at = _global_step(run / "hpc_ckpt_1.ckpt")
    hpc = torch.load(run / "hpc_ckpt_1.ckpt", map_location="cpu", weights_only=False)
    batches = hpc["loops"]["fit_loop"]["epoch_loop.batch_progress"]["current"]
    assert batches["processed"] == batches["ready"]  # saved at a batch end, not mid-step
    assert 5 <= saved_at < 12 and not (run / "metrics.json").exists()

    env["SLURM_RESTART_COUNT"] = "1"
    result = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"resuming from {run / 'hpc_ckpt_1.ckpt'}" in result.stdout + result.stderr
    # saved at a batch end (clipbert.callbacks.requeue): every batch is trained once
    assert _global_step(run / "checkpoints" / "last.ckpt") == 2 * 12
    assert "test/acc" in json.loads((run / "metrics.json").read_text())
    assert (run / "csv" / "metrics.part1.csv").is_file()  # what the first start logged is kept


def wait_for(path: Path, process: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert path.exists(), f"{path} never appeared (exit code {process.poll()})"


def test_a_missing_extra_is_named_in_the_error_line() -> None:
    """What Lightning's loggers raise without their package, as the command line prints it."""
    wandb_missing = ModuleNotFoundError(
        "Requirement 'wandb>=0.12.10' not met. HINT: Try running `pip install -U 'wandb>=0.12.10'`"
    )
    assert one_line(wandb_missing).endswith("(pip install 'clipbert[wandb]')")
    neither = ModuleNotFoundError("Neither `tensorboard` nor `tensorboardX` is available.")
    assert one_line(neither).endswith("(pip install 'clipbert[tensorboard]')")
    ours = ModuleNotFoundError("No module named 'clipbert.nothing'")
    assert one_line(ours).endswith("(HYDRA_FULL_ERROR=1 shows the traceback)")
