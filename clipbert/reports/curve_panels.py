"""Which logged metric goes in which panel of the training curves, by its name alone.

The names are the project's logging vocabulary: ``{stage}/{metric}`` from the tasks,
``lr...`` from ``LearningRateMonitor``, ``train/data_wait_fraction``,
``train/peak_memory_mb`` and ``train/grad_norm`` from ``TrainingMonitor``, and
``.../samples_per_sec`` (videos or images per second) from ``ThroughputMonitor``. A name no
panel claims still gets drawn, in ``other``, so a new metric never disappears from the page.
Two kinds of ``ThroughputMonitor`` values are listed in the table only: its running totals
(batches, samples and seconds so far, whose rates the throughput panel draws: drawn, they are
straight lines), and everything it logs during validation and test, which it counts in
evaluation batches, not optimizer steps, so it has no place on the same axis.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

RUNNING_TOTALS = frozenset({"batches", "samples", "time"})  # ThroughputMonitor's, per stage
RATES = frozenset({"samples_per_sec", "batches_per_sec", "items_per_sec", "flops_per_sec", "mfu"})
THROUGHPUT_EVALUATION_STAGES = ("validate", "test")  # Lightning's stage names, not the tasks'
COUNTS = RUNNING_TOTALS | {"broken"}  # not scores: kept out of the validation metrics
LOWER_IS_BETTER = ("loss", "rank", "err")
EVALUATION_STAGES = ("val", "test")


def leaf(name: str) -> str:
    """The last part of a metric name: ``val/acc_color`` -> ``acc_color``."""
    return name.rsplit("/", 1)[-1]


def stage(name: str) -> str:
    """The first part of a metric name: ``val/acc_color`` -> ``val``."""
    return name.split("/", 1)[0]


def is_loss(name: str) -> bool:
    return "loss" in leaf(name)


def is_learning_rate(name: str) -> bool:
    return re.search(r"(^|/)lr([-/_]|$)", name) is not None


def is_evaluation_score(name: str) -> bool:
    return stage(name) in EVALUATION_STAGES and not is_loss(name) and leaf(name) not in COUNTS


def is_table_only(name: str) -> bool:
    """ThroughputMonitor's running totals, and its values logged against evaluation batches."""
    if "/" not in name:
        return False
    if leaf(name) in RUNNING_TOTALS:
        return True
    return stage(name) in THROUGHPUT_EVALUATION_STAGES and leaf(name) in RATES


@dataclass(frozen=True)
class Panel:
    """One figure of the page. ``best``: which way the table reads the best value of the
    panel's metrics (``max``, ``min`` or None for none); ``separate``: one small plot per
    metric, for metrics whose scales have nothing in common."""

    name: str
    title: str
    ylabel: str
    claims: Callable[[str], bool]
    best: str | None = None
    separate: bool = False


PANELS = (
    Panel("losses", "Losses", "loss", is_loss, best="min"),
    Panel("learning_rates", "Learning rates", "learning rate", is_learning_rate),
    Panel(
        "validation",
        "Validation metrics (test: crosses)",
        "value",
        is_evaluation_score,
        best="max",
    ),
    Panel(
        "throughput",
        "Throughput",
        "videos / s",
        lambda name: leaf(name) == "samples_per_sec",
        best="max",
    ),
    Panel(
        "data_wait",
        "Data-wait fraction",
        "share of wall time",
        lambda name: "data_wait" in leaf(name),
        best="min",
    ),
    Panel("memory", "Peak memory", "MB", lambda name: "memory" in leaf(name), best="min"),
    Panel("grad_norm", "Gradient norm", "L2 norm", lambda name: "grad_norm" in leaf(name)),
    Panel("other", "Other logged values", "value", lambda name: True, separate=True),
)
PANEL_NAMES = tuple(panel.name for panel in PANELS)


def panel_of(name: str) -> Panel | None:
    """The first panel that claims ``name`` (``other`` claims every name but those listed in
    the table only, which no panel draws)."""
    if is_table_only(name):
        return None
    return next(panel for panel in PANELS if panel.claims(name))


def drawing_order(name: str) -> tuple[int, str]:
    """Training, then validation, then test metrics: a test point joins its validation
    curve's colour and legend entry."""
    return ({"train": 0, "val": 1, "test": 2}.get(stage(name), 1), name)


def group(names: Iterable[str]) -> dict[Panel, list[str]]:
    """``names`` by panel, the panels in page order, only those with at least one metric."""
    grouped: dict[Panel, list[str]] = {panel: [] for panel in PANELS}
    for name in sorted(names, key=drawing_order):
        panel = panel_of(name)
        if panel is not None:
            grouped[panel].append(name)
    return {panel: members for panel, members in grouped.items() if members}


def best_mode(name: str) -> str | None:
    """``max``, ``min`` or None: which value of ``name`` the table calls its best."""
    panel = panel_of(name)
    mode = panel.best if panel else None
    if mode == "max" and any(word in leaf(name) for word in LOWER_IS_BETTER):
        return "min"  # retrieval's median_rank_t2v, mean_rank_v2t
    return mode
