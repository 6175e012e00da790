"""``curves.html``: the training curves as one page that needs nothing beside it (the figures
are PNG data URIs, the styles inline), so it can be mailed, attached or opened from any copy
of the run folder, offline."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence

from clipbert.reports.curve_panels import Panel, best_mode, group, panel_of
from clipbert.reports.metric_log import Curve

STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem auto; max-width: 1500px;
       padding: 0 1rem; color: #222; }
h1 { font-size: 1.4rem; margin-bottom: 0.2rem; }
.source { color: #666; margin-top: 0; word-break: break-all; }
.panels { display: grid; grid-template-columns: repeat(auto-fill, minmax(560px, 1fr));
          gap: 1rem; }
figure { margin: 0; border: 1px solid #ddd; border-radius: 4px; padding: 0.5rem; }
figure.wide { grid-column: 1 / -1; }
figure img { display: block; max-width: 100%; height: auto; }
figcaption { font-size: 0.8rem; color: #555; margin-top: 0.3rem; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; font-size: 0.85rem; }
th, td { border-bottom: 1px solid #e3e3e3; padding: 0.2rem 0.6rem; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
"""


def number_text(value: float) -> str:
    """Four significant digits, scientific for learning-rate-sized or very large values."""
    if value != 0 and not 1e-3 <= abs(value) < 1e6:
        return f"{value:.3e}"
    return f"{value:.4g}"


def step_text(step: float) -> str:
    return str(int(step)) if float(step).is_integer() else f"{step:g}"


def figure_html(
    panel: Panel, png: bytes, names: Sequence[str], image_file: str, wide_figure: bool
) -> str:
    """One panel: its PNG embedded, and the metrics it shows as the caption."""
    uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    caption = ", ".join(names)
    wide = ' class="wide"' if wide_figure else ""  # a grid of small plots spans the page
    return (
        f'<figure data-panel="{panel.name}" id="panel-{panel.name}"{wide}>'
        f'<img src="{uri}" alt="{html.escape(panel.title)}" title="{html.escape(image_file)}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def best_of(curve: Curve) -> tuple[float, float] | None:
    """The best (value, step) of a curve, by its panel's direction; None where none applies."""
    mode = best_mode(curve.name)
    if mode is None:
        return None
    pick = max if mode == "max" else min
    return pick(zip(curve.values, curve.steps, strict=True), key=lambda pair: pair[0])


def panel_name(name: str) -> str:
    panel = panel_of(name)
    return panel.name if panel else "(table only)"


def run_table(curves: dict[str, Curve]) -> str:
    """Every metric, in page order: the panel it is drawn in, how often it was logged, its
    final and its best value with their steps."""
    head = "<tr><th>metric</th><th>panel</th><th>points</th><th>final</th><th>at step</th>"
    head += "<th>best</th><th>at step</th></tr>"
    drawn = [name for names in group(curves).values() for name in names]
    rows = []
    for name in drawn + sorted(set(curves) - set(drawn)):
        curve = curves[name]
        best = best_of(curve)
        best_cells = (
            f'<td class="num">{number_text(best[0])}</td><td class="num">{step_text(best[1])}</td>'
            if best
            else "<td></td><td></td>"
        )
        rows.append(
            f'<tr data-metric="{html.escape(name)}"><td>{html.escape(name)}</td>'
            f'<td>{panel_name(name)}</td><td class="num">{len(curve.values)}</td>'
            f'<td class="num">{number_text(curve.final)}</td>'
            f'<td class="num">{step_text(curve.steps[-1])}</td>{best_cells}</tr>'
        )
    return f'<div class="scroll"><table id="final-values">{head}{"".join(rows)}</table></div>'


def sweep_table(jobs: Sequence[tuple[str, str, dict[str, Curve]]]) -> str:
    """One row per job (``jobs``: name, overrides, curves): its overrides and the final value of
    each validation and test metric, the numbers a sweep is run to compare."""
    names = sorted(
        {n for _, _, curves in jobs for n in curves if n.split("/", 1)[0] in ("val", "test")}
    )
    head = "<tr><th>job</th><th>overrides</th>"
    head += "".join(f"<th>{html.escape(name)}</th>" for name in names) + "</tr>"
    rows = []
    for job, overrides, curves in jobs:
        cells = "".join(
            f'<td class="num">{number_text(curves[n].final)}</td>' if n in curves else "<td></td>"
            for n in names
        )
        note = "" if curves else " (no metrics logged)"
        rows.append(
            f'<tr data-job="{html.escape(job)}"><td>{html.escape(job)}</td>'
            f"<td>{html.escape(overrides + note)}</td>{cells}</tr>"
        )
    return f'<div class="scroll"><table id="jobs">{head}{"".join(rows)}</table></div>'


def page(title: str, source: str, figures: Sequence[str], table_title: str, table: str) -> str:
    """The whole page: heading, the figures, then the table."""
    body = (
        f'<section class="panels">{"".join(figures)}</section>'
        if figures
        else '<p class="empty">No metrics logged yet: nothing to draw.</p>'
    )
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<style>{STYLE}</style></head><body>"
        f'<h1>{html.escape(title)}</h1><p class="source">{html.escape(source)}</p>'
        f"{body}<h2>{html.escape(table_title)}</h2>{table}</body></html>\n"
    )
