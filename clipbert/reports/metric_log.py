"""A run's logged metrics read back from Lightning's CSV logger (``<run>/csv/metrics.csv``) as
one curve per column.

The logger writes sparse rows (each row holds only what was logged at that moment, under a
header that grows as new names appear) and may be read while training still appends to it, so
every cell that is blank, missing or not a finite number is skipped rather than trusted. A run
resumed in its own folder keeps what it logged before in ``metrics.part1.csv``, ... (see
``keep_earlier_metrics`` in ``clipbert/cli/train.py``); those parts are read first.
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

METRICS_FILE = Path("csv") / "metrics.csv"
AXIS_COLUMNS = ("step", "epoch")  # what the curves are drawn against, not curves themselves
TRAINING = "train/"  # rows of the training loop: they alone say where epochs begin


@dataclass(frozen=True)
class Curve:
    """One logged metric: its values at the steps it was logged, in step order."""

    name: str
    steps: tuple[float, ...]
    values: tuple[float, ...]

    @property
    def final(self) -> float:
        return self.values[-1]


@dataclass
class MetricLog:
    """Every curve of one run, and the steps where a new epoch began (drawn as guides)."""

    source: Path
    curves: dict[str, Curve] = field(default_factory=dict)
    epoch_starts: list[float] = field(default_factory=list)


def number(cell: str | None) -> float | None:
    """A cell as a finite float, or None for blanks, text, NaN and infinities."""
    if cell is None or not cell.strip():
        return None
    try:
        value = float(cell)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def part_files(metrics_file: Path) -> list[Path]:
    """``metrics.part1.csv``, ``metrics.part2.csv``, ... beside ``metrics_file``, then itself."""
    pattern = re.compile(
        rf"{re.escape(metrics_file.stem)}\.part(\d+){re.escape(metrics_file.suffix)}"
    )
    parts = [
        (int(match.group(1)), path)
        for path in metrics_file.parent.glob(f"{metrics_file.stem}.part*{metrics_file.suffix}")
        if (match := pattern.fullmatch(path.name))
    ]
    return [path for _, path in sorted(parts)] + [metrics_file]


def read_rows(path: Path) -> list[dict[str, str | None]]:
    """The rows of one CSV file (none for an empty file); a ``ValueError`` naming the file for
    one that is not text CSV."""
    try:
        with path.open(newline="", encoding="utf-8") as file:
            return [row for row in csv.DictReader(file) if row]
    except (csv.Error, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not a readable CSV file: {exc}") from exc


def read_metric_log(metrics_file: Path) -> MetricLog:
    """Every numeric column of ``metrics_file`` (and its earlier parts) as a :class:`Curve`.

    Raises ``FileNotFoundError`` naming the file when it does not exist: a run trained without
    the CSV logger (``logger=[]``, or only wandb) has nothing to draw.
    """
    metrics_file = Path(metrics_file)
    if not metrics_file.is_file():
        raise FileNotFoundError(
            f"no metrics file {metrics_file}: curves are drawn from the CSV logger's "
            "metrics.csv (train.py with logger=csv, the default)"
        )
    points: dict[str, list[tuple[float, float]]] = {}
    epoch_steps: dict[float, list[float]] = {}  # epoch -> the training steps logged in it
    for path in part_files(metrics_file):
        for index, row in enumerate(read_rows(path)):
            step = number(row.get("step"))
            step = float(index) if step is None else step
            values = {
                name: value
                for name, cell in row.items()
                if name is not None
                and name not in AXIS_COLUMNS
                and (value := number(cell if isinstance(cell, str) else None)) is not None
            }
            for name, value in values.items():
                points.setdefault(name, []).append((step, value))
            epoch = number(row.get("epoch"))
            if epoch is not None and any(name.startswith(TRAINING) for name in values):
                epoch_steps.setdefault(epoch, []).append(step)
    log = MetricLog(source=metrics_file)
    for name in sorted(points):
        ordered = sorted(points[name], key=lambda point: point[0])  # stable: ties keep file order
        steps, values = zip(*ordered, strict=True)
        log.curves[name] = Curve(name, tuple(steps), tuple(values))
    log.epoch_starts = epoch_boundaries(epoch_steps)
    return log


def epoch_boundaries(epoch_steps: dict[float, list[float]]) -> list[float]:
    """Where each epoch after the first began: halfway between the last step logged in the
    epoch before and the first logged in it (rows are logged every few steps, not at each)."""
    boundaries = []
    for epoch in sorted(epoch_steps):
        earlier = epoch_steps.get(epoch - 1)
        first = min(epoch_steps[epoch])
        if epoch > 0:
            boundaries.append((max(earlier) + first) / 2 if earlier else first)
    return boundaries
