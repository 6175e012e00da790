"""The prediction report's charts, drawn by matplotlib as inline SVG (crisp at any zoom, no
files beside the page). Built on figures directly, never through ``pyplot``, as the curves
are (``curve_plots``): no display and no global figure state in the process that predicts."""

from __future__ import annotations

import io
from collections import Counter

from matplotlib.backends.backend_svg import FigureCanvasSVG
from matplotlib.figure import Figure

SIZE = (4.2, 2.8)  # inches
BAR_COLOR = "#4c78a8"


def svg_of(figure: Figure) -> str:
    """The figure as an ``<svg>`` element (the XML prolog dropped)."""
    out = io.StringIO()
    FigureCanvasSVG(figure).print_figure(out, format="svg", bbox_inches="tight")
    text = out.getvalue()
    return text[text.index("<svg") :]


def accuracy_by_type(accuracies: dict[str, float]) -> str:
    """Horizontal bars: accuracy per answer type."""
    names = list(accuracies)
    figure = Figure(figsize=(SIZE[0], 0.45 * len(names) + 0.9))
    axes = figure.subplots()
    axes.barh(names, [accuracies[n] for n in names], color=BAR_COLOR)
    axes.set_xlim(0, 1)
    axes.invert_yaxis()
    axes.set_xlabel("accuracy")
    for y, name in enumerate(names):
        value = accuracies[name]
        inside = value > 0.8  # the label goes inside a long bar, in white
        axes.text(
            value - 0.02 if inside else value + 0.02,
            y,
            f"{value:.1%}",
            va="center",
            ha="right" if inside else "left",
            color="white" if inside else "black",
        )
    axes.set_title("Accuracy by answer type")
    return svg_of(figure)


def calibration_plot(bins: list[tuple[float, float, int]]) -> str:
    """Accuracy against confidence per bin, marker size by count, with the diagonal."""
    figure = Figure(figsize=SIZE)
    axes = figure.subplots()
    axes.plot([0, 1], [0, 1], linestyle="--", color="#999999", linewidth=1)
    if bins:
        largest = max(n for _, _, n in bins)
        axes.plot([c for c, _, _ in bins], [a for _, a, _ in bins], color=BAR_COLOR)
        axes.scatter(
            [c for c, _, _ in bins],
            [a for _, a, _ in bins],
            s=[20 + 180 * n / largest for _, _, n in bins],
            color=BAR_COLOR,
            zorder=3,
        )
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    axes.set_xlabel("confidence (top answer's probability)")
    axes.set_ylabel("accuracy")
    axes.set_title("Calibration")
    return svg_of(figure)


def rank_histogram(ranks: list[int], largest_shown: int = 10) -> str:
    """How many captions put their video at rank 1, 2, ..., and beyond ``largest_shown``."""
    counts = Counter(min(r, largest_shown + 1) for r in ranks)
    labels = [str(r) for r in range(1, largest_shown + 1)] + [f">{largest_shown}"]
    figure = Figure(figsize=SIZE)
    axes = figure.subplots()
    axes.bar(labels, [counts.get(r, 0) for r in range(1, largest_shown + 2)], color=BAR_COLOR)
    axes.set_xlabel("rank of the true video")
    axes.set_ylabel("captions")
    axes.set_title("Rank of the true video")
    return svg_of(figure)
