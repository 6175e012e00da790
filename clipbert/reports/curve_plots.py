"""The training curves' figures as PNG bytes: one run's metrics per panel, or one line per job
of a sweep per metric.

Figures are built on matplotlib's Agg canvas directly, never through ``pyplot``: no display,
no global figure state, nothing for a training process's other threads to trip over.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from clipbert.reports.curve_panels import Panel, stage
from clipbert.reports.metric_log import Curve

DPI = 100
WIDE = 10.5  # inches: a figure that spans the page
NARROW = (7.2, 3.6)
ROW_HEIGHT = 2.7
MAX_COLUMNS = 3
GUIDE = {"color": "#bbbbbb", "linewidth": 0.8, "linestyle": ":"}


def png_of(figure: Figure) -> bytes:
    """The figure rendered by Agg as PNG bytes."""
    out = io.BytesIO()
    FigureCanvasAgg(figure).print_png(out)
    return out.getvalue()


def grid(count: int, columns: int = MAX_COLUMNS) -> tuple[int, int]:
    """Rows and columns for ``count`` small plots."""
    columns = max(1, min(columns, count))
    return math.ceil(count / columns), columns


def colour_key(name: str) -> str:
    """A test metric shares its validation counterpart's colour (``test/acc`` ~ ``val/acc``)."""
    return "val/" + name.split("/", 1)[1] if stage(name) == "test" and "/" in name else name


def draw(axes: Axes, curve: Curve, colour: str, label: str | None) -> None:
    """A line through the curve's points; test metrics (logged once, after fitting) as crosses,
    validation points and any lone point as dots, which a line alone would not show."""
    if stage(curve.name) == "test":
        axes.plot(curve.steps, curve.values, "x", color=colour, markersize=7, label=label)
    else:
        marker = "o" if stage(curve.name) == "val" or len(curve.steps) == 1 else None
        axes.plot(
            curve.steps,
            curve.values,
            color=colour,
            marker=marker,
            markersize=3,
            linewidth=1.3,
            label=label,
        )


def guides(axes: Axes, epoch_starts: Sequence[float]) -> None:
    """Dotted lines where epochs began, only within the steps the plot already spans."""
    low, high = axes.dataLim.intervalx
    for step in epoch_starts:
        if low < step < high:
            axes.axvline(step, **GUIDE)


def style(axes: Axes, title: str, ylabel: str | None, small: bool = False) -> None:
    axes.set_title(title, fontsize=9 if small else 11)
    axes.set_xlabel("step", fontsize=8 if small else 10)
    if ylabel:
        axes.set_ylabel(ylabel, fontsize=8 if small else 10)
    axes.tick_params(labelsize=7 if small else 9)
    axes.grid(True, alpha=0.3)


def run_panel_png(panel: Panel, curves: Sequence[Curve], epoch_starts: Sequence[float]) -> bytes:
    """One run's curves of one panel: together on one plot, or each on its own small plot when
    the panel is ``separate``. Dotted guides mark where epochs began."""
    if panel.separate:
        return separate_plots_png(panel, curves, epoch_starts)
    figure = Figure(figsize=NARROW, dpi=DPI, layout="constrained")
    axes = figure.add_subplot()
    colours: dict[str, str] = {}
    for curve in curves:
        key = colour_key(curve.name)
        shared = key in colours  # a test point beside its validation curve: one legend entry
        colours.setdefault(key, f"C{len(colours) % 10}")
        draw(axes, curve, colours[key], None if shared else curve.name)
    guides(axes, epoch_starts)
    style(axes, panel.title, panel.ylabel)
    axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the plot
    return png_of(figure)


def separate_plots_png(
    panel: Panel, curves: Sequence[Curve], epoch_starts: Sequence[float]
) -> bytes:
    rows, columns = grid(len(curves))
    figure = Figure(figsize=(WIDE, ROW_HEIGHT * rows), dpi=DPI, layout="constrained")
    figure.suptitle(panel.title)
    for index, curve in enumerate(curves):
        axes = figure.add_subplot(rows, columns, index + 1)
        draw(axes, curve, "C0", None)
        guides(axes, epoch_starts)
        style(axes, curve.name, None, small=True)
    return png_of(figure)


def sweep_panel_png(
    panel: Panel, names: Sequence[str], jobs: Sequence[tuple[str, dict[str, Curve]]]
) -> bytes:
    """One small plot per metric of the panel (a test metric on its validation counterpart's),
    one line per job in the same colour on every plot; the jobs' legend (``jobs``: label,
    curves) once, under the plots."""
    plots = sweep_plots(names)
    rows, columns = grid(len(plots))
    height = ROW_HEIGHT * rows + 0.25 * len(jobs) / max(1, min(len(jobs), 2)) + 0.4
    width = WIDE if len(plots) > 1 else NARROW[0]
    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    figure.suptitle(panel.title)
    colours = [job_colour(index, len(jobs)) for index in range(len(jobs))]
    for index, (title, members) in enumerate(plots.items()):
        axes = figure.add_subplot(rows, columns, index + 1)
        for colour, (_, curves) in zip(colours, jobs, strict=True):
            for name in members:
                if name in curves:
                    draw(axes, curves[name], colour, None)
        style(axes, title + (" (test: x)" if len(members) > 1 else ""), None, small=True)
    # drawn handles, not the plots' own: every job has its entry, even one that logged none
    handles = [Line2D([], [], color=colour, linewidth=2) for colour in colours]
    figure.legend(
        handles,
        [label for label, _ in jobs],
        loc="outside lower center",
        ncol=2 if len(jobs) > 1 else 1,
        fontsize=8,
    )
    return png_of(figure)


def sweep_plots(names: Sequence[str]) -> dict[str, list[str]]:
    """The small plots of a sweep's panel, by title: one per metric, a test metric drawn on
    its validation counterpart's plot when there is one."""
    plots: dict[str, list[str]] = {}
    for name in names:
        key = colour_key(name)
        plots.setdefault(key if key in names else name, []).append(name)
    return plots


def job_colour(index: int, count: int) -> str:
    """Distinct colours for up to 10 jobs (tab10), then evenly spread over viridis."""
    if count <= 10:
        return f"C{index}"
    red, green, blue, _ = colormaps["viridis"](index / max(1, count - 1))
    return f"#{round(red * 255):02x}{round(green * 255):02x}{round(blue * 255):02x}"
