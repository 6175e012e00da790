"""Hydra multirun: ``train.py -m`` runs one job per combination and summarises the sweep."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from clipbert.callbacks.sweep_summary import write_summary
from clipbert.cli.summarize import main as summarize
from tests.helpers import run_train, tiny_demo_overrides


def test_a_sweep_over_lr_and_seed_runs_four_jobs_and_writes_a_summary(
    demo_root: Path, tmp_path: Path
) -> None:
    sweep = tmp_path / "sweep"
    result = run_train(
        "-m",
        "task=demo_video_qa",
        "task.module.optimizer.lr=1e-4,3e-4",
        "seed=1,2",
        *tiny_demo_overrides(demo_root),
        "trainer.max_epochs=1",
        "trainer.num_sanity_val_steps=0",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = sorted(p.name for p in sweep.iterdir() if (p / ".hydra").is_dir())
    assert jobs == ["0", "1", "2", "3"]
    assert (sweep / "curves.html").is_file()  # the jobs' curves compared, beside the summary
    rows = summary_rows(sweep)
    assert len(rows) == 4 and {r["status"] for r in rows} == {"done"}
    combinations = set()
    for row in rows:
        chosen = dict(item.split("=", 1) for item in row["overrides"].split())
        combinations.add((chosen["task.module.optimizer.lr"], chosen["seed"]))
    assert combinations == {(lr, seed) for lr in ("0.0001", "0.0003") for seed in ("1", "2")}
    accuracies = [float(r["val/acc"]) for r in rows]
    assert accuracies == sorted(accuracies, reverse=True)  # best first
    for row in rows:
        metrics = json.loads((sweep / row["job"] / "metrics.json").read_text())
        assert float(row["test/acc"]) == metrics["test/acc"]
    assert "| job | overrides | status | val/acc |" in (sweep / "summary.md").read_text()
    assert "sweep of 4 jobs" in result.stdout + result.stderr


def test_a_job_without_metrics_is_listed_last(tmp_path: Path) -> None:
    for job, acc in (("0", 0.5), ("1", None), ("2", 0.75)):
        (tmp_path / job / ".hydra").mkdir(parents=True)
        (tmp_path / job / ".hydra" / "overrides.yaml").write_text(f"- seed={job}\n")
        if acc is not None:
            (tmp_path / job / "metrics.json").write_text(json.dumps({"val/acc": acc}))
    rows = write_summary(tmp_path, "val/acc", "max")
    assert [r["job"] for r in rows] == ["2", "0", "1"]
    assert rows[-1]["status"].startswith("no metrics")
    assert (tmp_path / "summary.md").read_text().count("\n") == 2 + 3
    assert [r["job"] for r in write_summary(tmp_path, "val/acc", "min")] == ["0", "2", "1"]


def test_clipbert_summarize_ranks_a_folder_of_jobs_by_their_recorded_metric(
    tmp_path: Path, capsys
) -> None:
    """Jobs of a hand-made job array: each ran train.py with hydra.run.dir=<sweep>/<job>."""
    for job, loss in (("0", 0.5), ("1", 0.25), ("2", None)):
        hydra_dir = tmp_path / job / ".hydra"
        hydra_dir.mkdir(parents=True)
        (hydra_dir / "overrides.yaml").write_text(f"- seed={job}\n")
        task = {"name": "demo", "monitor": "val/loss", "monitor_mode": "min"}
        (hydra_dir / "config.yaml").write_text(yaml.safe_dump({"seed": 0, "task": task}))
        if loss is not None:
            (tmp_path / job / "metrics.json").write_text(json.dumps({"val/loss": loss}))
    summarize([str(tmp_path)])
    assert [r["job"] for r in summary_rows(tmp_path)] == ["1", "0", "2"]  # min first
    assert "3 jobs, best first by val/loss" in capsys.readouterr().out
    summarize([str(tmp_path), "--monitor", "val/loss", "--mode", "max"])
    assert (tmp_path / "summary.md").read_text().splitlines()[2].startswith("| 0 |")
    with pytest.raises(SystemExit, match="pass --monitor"):
        summarize([str(tmp_path / "0")])


@pytest.mark.slow
def test_a_sweep_through_submitit_writes_its_summary(demo_root: Path, tmp_path: Path) -> None:
    """hydra/launcher=submitit_local: each job in its own process, the summary at the end."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="the [slurm] extra")
    sweep = tmp_path / "submitit"
    result = run_train(
        "-m",
        "hydra/launcher=submitit_local",
        "seed=1,2",
        *tiny_demo_overrides(demo_root),
        "trainer.max_epochs=1",
        "trainer.num_sanity_val_steps=0",
        "trainer.limit_train_batches=1",
        "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(list((sweep / ".submitit").glob("*/*_result.pkl"))) == 2  # two jobs ran
    rows = summary_rows(sweep)
    assert sorted(r["overrides"].split()[0] for r in rows) == ["seed=1", "seed=2"]
    assert {r["status"] for r in rows} == {"done"} and all(r["test/acc"] for r in rows)
    assert "| job | overrides | status | val/acc |" in (sweep / "summary.md").read_text()


def test_an_optuna_search_runs_its_trials_and_reports_the_best(
    demo_root: Path, tmp_path: Path
) -> None:
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="the [sweep] extra")
    sweep = tmp_path / "optuna"
    result = run_train(
        "-m",
        "hparams_search=demo_optuna",
        "hydra.sweeper.n_trials=2",
        *tiny_demo_overrides(demo_root),
        "trainer.max_epochs=1",
        "trainer.num_sanity_val_steps=0",
        "test=false",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert set(best["best_params"]) == {"task.module.optimizer.lr", "task.module.cnn_lr"}
    assert 1e-4 <= best["best_params"]["task.module.optimizer.lr"] <= 1e-3
    assert 0.0 <= best["best_value"] <= 1.0
    rows = summary_rows(sweep)
    assert len(rows) == 2 and float(rows[0]["val/acc_best"]) == best["best_value"]


def test_a_sweep_of_ddp_jobs(demo_root: Path, tmp_path: Path) -> None:
    """Each job of a multirun trains with two processes; Lightning relaunches them per job."""
    sweep = tmp_path / "ddp_sweep"
    result = run_train(
        "-m",
        "seed=1,2",
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        *tiny_demo_overrides(demo_root),
        "trainer.max_epochs=1",
        "trainer.num_sanity_val_steps=0",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    children = "".join(p.read_text()[-1500:] for p in sweep.glob("*/train_ddp_process_*.log"))
    assert result.returncode == 0, result.stderr[-3000:] + children
    for job in ("0", "1"):
        assert (sweep / job / "train_ddp_process_1.log").is_file()  # the second process ran
        assert "test/acc" in json.loads((sweep / job / "metrics.json").read_text())
    assert len(summary_rows(sweep)) == 2


def summary_rows(sweep: Path) -> list[dict[str, str]]:
    """The rows of the sweep's summary.csv."""
    with (sweep / "summary.csv").open() as file:
        return list(csv.DictReader(file))
