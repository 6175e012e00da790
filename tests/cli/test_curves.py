"""Training curves: ``curves.html`` and its PNGs from a run's ``csv/metrics.csv``, written at the
end of training, by ``clipbert-curves`` for any run or sweep folder, and after a multirun."""

from __future__ import annotations

import base64
import csv
import io
import logging
import math
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from omegaconf import OmegaConf
from PIL import Image
from pytorch_lightning.loggers import CSVLogger

from clipbert.callbacks import curves as curves_callback
from clipbert.callbacks.curves import TrainingCurves
from clipbert.callbacks.sweep_summary import SweepSummary
from clipbert.cli.curves import main as curves_command
from clipbert.reports.curve_panels import panel_of
from clipbert.reports.curves import is_sweep_dir, write_run_curves, write_sweep_curves
from clipbert.reports.metric_log import read_metric_log
from tests.browser import screenshot

# The names a run logs (tasks, LearningRateMonitor, TrainingMonitor, ThroughputMonitor)
COLUMNS = [
    "epoch", "step", "lr/cnn", "lr/transformer", "test/acc", "test/loss", "train/batches",
    "train/data_wait_fraction", "train/device/flops_per_sec", "train/device/samples_per_sec",
    "train/grad_norm", "train/loss", "train/peak_memory_mb", "train/samples", "val/acc",
    "val/acc_color", "val/broken", "val/loss",
]  # fmt: skip
EXPECTED_PANELS = {
    "losses", "learning_rates", "validation", "throughput", "data_wait", "memory", "grad_norm",
    "other",
}  # fmt: skip


def sparse_rows(steps: int = 40, epoch_steps: int = 10, scale: float = 1.0) -> list[dict]:
    """Rows as Lightning's CSV logger writes them: each holds only what was logged then."""
    rows = []
    for step in range(steps):
        epoch = step // epoch_steps
        rows.append({"step": step, "lr/cnn": 1e-3 * (1 - step / steps), "lr/transformer": 3e-4})
        if step % 2:
            rows.append(
                {
                    "epoch": epoch,
                    "step": step,
                    "train/loss": scale * (2.5 * math.exp(-step / 15) + 0.3),
                    "train/data_wait_fraction": 0.05 + 0.01 * (step % 3),
                    "train/peak_memory_mb": 1100 + step,
                    "train/grad_norm": 1.0 / (1 + step),
                    "train/device/samples_per_sec": 40 + step % 5,
                    "train/device/flops_per_sec": 5e10,
                    "train/batches": step + 1,
                    "train/samples": 8 * (step + 1),
                }
            )
        if step % epoch_steps == epoch_steps - 1:
            accuracy = scale * 0.2 + 0.15 * epoch
            rows.append(
                {
                    "epoch": epoch,
                    "step": step,
                    "val/acc": accuracy,
                    "val/acc_color": accuracy / 2,
                    "val/loss": 2.0 - 0.3 * epoch,
                    "val/broken": 0,
                }
            )
    rows.append({"epoch": steps // epoch_steps, "step": steps, "test/acc": 0.5, "test/loss": 1.2})
    return rows


def write_metrics(path: Path, rows: list[dict], columns: list[str] = COLUMNS) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


def make_run(folder: Path, **kwargs: float) -> Path:
    write_metrics(folder / "csv" / "metrics.csv", sparse_rows(**kwargs))
    return folder


def panels_of(page: Path) -> set[str]:
    return set(re.findall(r'<figure data-panel="([a-z_]+)"', page.read_text()))


def embedded_images(page: Path) -> list[bytes]:
    uris = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page.read_text())
    return [base64.b64decode(uri) for uri in uris]


def assert_png(data: bytes) -> None:
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG" and image.width > 200 and image.height > 100
    image.verify()


def test_a_run_gets_one_png_per_panel_and_a_page_that_embeds_them(tmp_path: Path) -> None:
    run = make_run(tmp_path / "2026-01-02_03-04-05")
    page = write_run_curves(run)
    assert page == run / "curves.html"
    assert panels_of(page) == EXPECTED_PANELS
    files = sorted((run / "curves").glob("*.png"))
    assert {f.stem for f in files} == EXPECTED_PANELS
    for file in files:
        assert_png(file.read_bytes())
    embedded = embedded_images(page)
    assert len(embedded) == len(files)
    assert set(embedded) == {f.read_bytes() for f in files}  # the page needs no file beside it
    text = page.read_text()
    assert "<title>Training curves: 2026-01-02_03-04-05</title>" in text
    assert not list(run.glob("**/*.partial"))


def test_the_table_gives_each_metrics_final_and_best_value(tmp_path: Path) -> None:
    text = write_run_curves(make_run(tmp_path / "run")).read_text()
    row = re.search(r'<tr data-metric="val/acc">(.*?)</tr>', text).group(1)
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", row)
    # metric, panel, points, final, at step, best, at step: 4 epochs of 10 steps
    assert cells == ["val/acc", "validation", "4", "0.65", "39", "0.65", "39"]
    loss = re.findall(r"<td[^>]*>([^<]*)</td>", text.split('data-metric="val/loss">')[1])[:7]
    assert loss[3:] == ["1.1", "39", "1.1", "39"]  # a loss is best at its lowest
    lr = re.findall(r"<td[^>]*>([^<]*)</td>", text.split('data-metric="lr/cnn">')[1])[:7]
    assert lr[1] == "learning_rates" and lr[5:] == ["", ""]  # no best learning rate
    assert 'data-metric="train/samples"><td>train/samples</td><td>(table only)' in text


def test_metrics_are_grouped_by_name() -> None:
    expected = {
        "train/loss": "losses",
        "train/mlm_loss": "losses",
        "test/loss": "losses",
        "lr-AdamW": "learning_rates",
        "lr-AdamW/pg1": "learning_rates",
        "lr/cnn_no_decay": "learning_rates",
        "val/acc": "validation",
        "test/r1_t2v": "validation",
        "train/device/samples_per_sec": "throughput",
        "train/samples_per_sec": "throughput",
        "train/data_wait_fraction": "data_wait",
        "train/peak_memory_mb": "memory",
        "train/grad_norm": "grad_norm",
        "val/broken": "other",
        "train/device/mfu": "other",
        "something_new": "other",
    }
    assert {name: panel_of(name).name for name in expected} == expected
    table_only = ("train/samples", "validate/time", "validate/device/samples_per_sec")
    assert [panel_of(name) for name in (*table_only, "test/device/mfu")] == [None] * 4


def test_sparse_short_and_unreadable_cells_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "metrics.csv"
    path.write_text(
        "epoch,step,train/loss,val/acc\n"
        "0,0,2.5,\n"
        "0,1,nan,\n"  # a NaN loss is not drawn
        "0,2\n"  # a row cut short (the file read while being appended to)
        "\n"
        "0,3,2.0,0.25,extra\n"  # a cell beyond the header
        "1,5,1.5,oops\n"
        ",4,,0.5\n"
    )
    log = read_metric_log(path)
    assert set(log.curves) == {"train/loss", "val/acc"}
    assert log.curves["train/loss"].steps == (0, 3, 5)
    assert log.curves["train/loss"].values == (2.5, 2.0, 1.5)
    assert log.curves["val/acc"].steps == (3, 4)  # in step order, not file order
    assert log.epoch_starts == [4.0]  # halfway between epoch 0's last step and epoch 1's first


def test_a_resumed_run_draws_the_parts_logged_before_it_resumed(tmp_path: Path) -> None:
    csv_dir = tmp_path / "csv"
    write_metrics(csv_dir / "metrics.part1.csv", [{"step": 1, "train/loss": 3.0}])
    write_metrics(csv_dir / "metrics.part2.csv", [{"step": 3, "train/loss": 2.0}])
    write_metrics(csv_dir / "metrics.csv", [{"step": 5, "train/loss": 1.0}])
    assert read_metric_log(csv_dir / "metrics.csv").curves["train/loss"].values == (3, 2, 1)


def test_a_missing_metrics_file_is_named_in_the_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "csv" / "metrics.csv"))):
        write_run_curves(tmp_path)


def test_a_file_that_is_not_text_csv_is_named_in_the_error(tmp_path: Path) -> None:
    metrics = tmp_path / "csv" / "metrics.csv"
    metrics.parent.mkdir()
    metrics.write_bytes(b"step,train/loss\n0,\xff\xfe\n")
    with pytest.raises(ValueError, match=re.escape(f"{metrics} is not a readable CSV file")):
        write_run_curves(tmp_path)


@pytest.mark.parametrize("content", ["", "epoch,step,train/loss\n"])
def test_an_empty_metrics_file_gives_a_page_without_figures(tmp_path: Path, content: str) -> None:
    (tmp_path / "csv").mkdir()
    (tmp_path / "csv" / "metrics.csv").write_text(content)
    text = write_run_curves(tmp_path).read_text()
    assert "No metrics logged yet" in text and "<figure" not in text


def make_sweep(sweep: Path) -> Path:
    """Two finished jobs and one that failed before logging anything."""
    for job, scale in (("0", 1.0), ("1", 1.4)):
        make_run(sweep / job, scale=scale)
        (sweep / job / ".hydra").mkdir()
        (sweep / job / ".hydra" / "overrides.yaml").write_text(f"- seed={job}\n- model=tiny\n")
    (sweep / "2" / ".hydra").mkdir(parents=True)
    (sweep / "2" / ".hydra" / "overrides.yaml").write_text("- seed=2\n")
    return sweep


def test_a_sweep_page_compares_its_jobs(tmp_path: Path) -> None:
    sweep = make_sweep(tmp_path / "multirun")
    assert is_sweep_dir(sweep) and not is_sweep_dir(sweep / "0")
    page = write_sweep_curves(sweep)
    assert page == sweep / "curves.html"
    assert panels_of(page) == EXPECTED_PANELS
    for file in (sweep / "curves").glob("*.png"):
        assert_png(file.read_bytes())
    text = page.read_text()
    jobs = re.findall(r'<tr data-job="(\d+)"><td>\d+</td><td>([^<]*)</td>', text)
    assert jobs == [
        ("0", "seed=0 model=tiny"),
        ("1", "seed=1 model=tiny"),
        ("2", "seed=2 (no metrics logged)"),
    ]
    assert "<title>Sweep curves: multirun (3 jobs)</title>" in text


def test_the_sweep_summary_writes_the_sweep_page_too(tmp_path: Path) -> None:
    sweep = make_sweep(tmp_path / "sweep")
    config = OmegaConf.create(
        {
            "hydra": {"sweep": {"dir": str(sweep)}},
            "task": {"monitor": "val/acc", "monitor_mode": "max"},
        }
    )
    SweepSummary().on_multirun_end(config)
    assert (sweep / "summary.csv").is_file() and (sweep / "curves.html").is_file()


def test_the_command_tells_runs_from_sweeps(tmp_path: Path, capsys) -> None:
    sweep = make_sweep(tmp_path / "sweep")
    run = make_run(tmp_path / "run")
    curves_command([str(run), str(sweep), "--jobs"])
    printed = capsys.readouterr().out.split()
    assert printed == [
        str(run / "curves.html"),
        str(sweep / "curves.html"),
        str(sweep / "0" / "curves.html"),
        str(sweep / "1" / "curves.html"),
    ]
    with pytest.raises(SystemExit) as stopped:
        curves_command([str(tmp_path / "missing"), str(run)])
    assert stopped.value.code == 1
    assert "no folder" in capsys.readouterr().err


def stub_trainer(run: Path, loggers: list) -> SimpleNamespace:
    return SimpleNamespace(is_global_zero=True, loggers=loggers, default_root_dir=str(run))


def test_the_callback_warns_and_carries_on_when_drawing_fails(
    tmp_path: Path, monkeypatch, caplog
) -> None:
    logger = CSVLogger(save_dir=tmp_path, name="csv", version="")
    logger.log_metrics({"train/loss": 1.0}, step=0)

    def broken(*args: object) -> Path:
        raise RuntimeError("no fonts")

    monkeypatch.setattr(curves_callback, "write_run_curves", broken)
    with caplog.at_level(logging.WARNING):
        assert TrainingCurves().write(stub_trainer(tmp_path, [logger])) is None
    assert "training curves not written (RuntimeError: no fonts)" in caplog.text


def test_the_callback_flushes_the_logger_and_writes_into_the_run_folder(tmp_path: Path) -> None:
    logger = CSVLogger(save_dir=tmp_path / "run", name="csv", version="")
    for step in range(3):
        logger.log_metrics({"train/loss": 3.0 - step}, step=step)  # not yet flushed to disk
    page = TrainingCurves(output_dir=tmp_path / "run").write(stub_trainer(tmp_path, [logger]))
    assert page == tmp_path / "run" / "curves.html" and panels_of(page) == {"losses"}
    assert TrainingCurves().write(stub_trainer(tmp_path, [])) is None  # no CSV logger


def test_training_ends_with_its_curves_including_the_test(train_config) -> None:
    from clipbert.cli.train import train

    cfg = train_config(
        "trainer.limit_train_batches=4",
        "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1",
        "trainer.log_every_n_steps=1",
        "callbacks.model_steps=null",
    )
    train(cfg)
    run = Path(cfg.paths.output_dir)
    page = run / "curves.html"
    assert {"losses", "learning_rates", "validation"} <= panels_of(page)
    assert 'data-metric="test/acc"' in page.read_text()  # rewritten after the test
    assert (run / "curves" / "losses.png").is_file()


def test_the_page_shows_every_figure_in_a_browser(tmp_path: Path, page) -> None:
    written = write_run_curves(make_run(tmp_path / "run", steps=120, epoch_steps=30))
    page.goto(written.as_uri())
    page.wait_for_load_state("load")
    widths = page.evaluate("[...document.images].map(image => image.naturalWidth)")
    assert len(widths) == len(EXPECTED_PANELS) and all(w > 0 for w in widths)
    shown = page.evaluate(
        "[...document.querySelectorAll('figure[data-panel]')].map(f => f.dataset.panel)"
    )
    assert {"losses", "validation"} <= set(shown)
    assert page.title() == "Training curves: run"
    assert page.errors == []
    screenshot(page, "curves")


def test_the_sweep_page_shows_every_figure_in_a_browser(tmp_path: Path, page) -> None:
    page.goto(write_sweep_curves(make_sweep(tmp_path / "sweep")).as_uri())
    page.wait_for_load_state("load")
    widths = page.evaluate("[...document.images].map(image => image.naturalWidth)")
    assert len(widths) == len(EXPECTED_PANELS) and all(w > 0 for w in widths)
    assert page.locator("table#jobs tr[data-job]").count() == 3
    assert page.errors == []
    screenshot(page, "curves_sweep")
