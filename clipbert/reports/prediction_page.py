"""``report.html``: one self-contained page (styles, script, thumbnails and charts inline) that
shows a predicted split: its summary, then every example with the frames the model saw, its
answers and the verdict, behind filters and a search box. It opens offline, from any folder."""

from __future__ import annotations

import html
import json
import logging
from importlib.resources import files
from pathlib import Path

from clipbert.atomic_files import write_text_atomic
from clipbert.reports import charts
from clipbert.reports.prediction_data import ReportData, read_report_data

log = logging.getLogger(__name__)

PAGE_SIZE = 50  # examples per page of the list
HEADLINE = {"qa": ("acc", "accuracy"), "mc": ("acc", "accuracy"), "ranking": ("r1_t2v", "R@1")}
NOUN = {"qa": "questions", "mc": "questions", "ranking": "captions"}


def static_text(name: str) -> str:
    return files("clipbert.reports").joinpath("static", name).read_text(encoding="utf-8")


def embedded_json(value: object) -> str:
    """JSON safe inside ``<script>``: no ``</`` can close the element early."""
    return json.dumps(value, separators=(",", ":")).replace("</", "<\\/")


def metrics_table(metrics: dict[str, float]) -> str:
    rows = "".join(
        f'<tr data-metric="{html.escape(name)}"><td>{html.escape(name)}</td>'
        f'<td class="num">{f"{value:.4f}" if isinstance(value, float) else value}</td></tr>'
        for name, value in metrics.items()
    )
    return f'<section><h2>Metrics</h2><table id="metrics">{rows}</table></section>'


def confused_table(pairs: list[tuple[str, str, int]]) -> str:
    if not pairs:
        return ""
    rows = "".join(
        f'<tr><td>{html.escape(gold)}</td><td>{html.escape(predicted)}</td><td class="num">{n}'
        "</td></tr>"
        for gold, predicted, n in pairs
    )
    head = "<tr><th>gold</th><th>predicted</th><th>times</th></tr>"
    return f'<section><h2>Most confused</h2><table id="confused">{head}{rows}</table></section>'


def type_accuracies(data: ReportData) -> dict[str, float]:
    """Per answer type, the accuracy ``metrics.json`` holds (``acc_<type>``)."""
    return {t: data.metrics[f"acc_{t}"] for t in data.answer_types if f"acc_{t}" in data.metrics}


def summary_sections(data: ReportData) -> str:
    parts = [metrics_table(data.metrics)]
    if data.kind == "ranking":
        if data.gold_ranks:
            parts.append(f"<section>{charts.rank_histogram(data.gold_ranks)}</section>")
        return "".join(parts)
    accuracies = type_accuracies(data)
    if accuracies:
        parts.append(f'<section id="type-chart">{charts.accuracy_by_type(accuracies)}</section>')
    if data.calibration:
        calibration = charts.calibration_plot(data.calibration)
        parts.append(f'<section id="calibration">{calibration}</section>')
    parts.append(confused_table(data.confused))
    return "".join(parts)


def headline(data: ReportData) -> str:
    key, name = HEADLINE[data.kind]
    count = f'<span id="headline-count">{len(data.examples)}</span> {NOUN[data.kind]}'
    if key not in data.metrics:
        return f'<p class="headline">{count} (no gold answers)</p>'
    value = (
        f'<span id="headline-metric" data-value="{data.metrics[key]}">'
        f"{100 * data.metrics[key]:.2f}%</span>"
    )
    return f'<p class="headline">{name} {value} on {count}</p>'


def filters(data: ReportData) -> str:
    types = "".join(
        f'<option value="{html.escape(t)}">{html.escape(t)}</option>' for t in data.answer_types
    )
    type_select = (
        f'<label>type <select id="answer-type"><option value="">all</option>{types}</select>'
        "</label>"
        if data.answer_types
        else ""
    )
    return (
        '<div class="filters">'
        '<label><input type="checkbox" id="wrong-only"> wrong only</label>'
        f"{type_select}"
        '<label>confidence from <input type="number" id="min-confidence" min="0" max="1" '
        'step="0.05" placeholder="0"> to <input type="number" id="max-confidence" min="0" '
        'max="1" step="0.05" placeholder="1"></label>'
        '<input type="search" id="search" placeholder="search text, answers, ids">'
        f'<span><span id="shown-count"></span> of {len(data.examples)} shown</span>'
        '<span class="pager"><button id="previous-page">&lt;</button> '
        '<span id="page-label"></span> <button id="next-page">&gt;</button></span>'
        "</div>"
    )


def render_page(data: ReportData, videos: dict[str, dict], title: str) -> str:
    payload = {
        "kind": data.kind,
        "pageSize": PAGE_SIZE,
        "examples": data.examples,
        "videos": videos,
    }
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{static_text('report.css')}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>"
        f"{headline(data)}"
        f'<div class="summary">{summary_sections(data)}</div>'
        f"<h2>Examples</h2>{filters(data)}"
        '<div id="examples"></div>'
        f'<script type="application/json" id="report-data">{embedded_json(payload)}</script>'
        f"<script>{static_text('report.js')}</script>"
        "</body></html>\n"
    )


def write_prediction_report(
    output_dir: Path, videos: dict[str, dict], title: str | None = None
) -> Path:
    """Write ``output_dir/report.html`` from the prediction files there and the thumbnails of
    :class:`clipbert.callbacks.prediction_frames.PredictionFrames` (``videos``)."""
    data = read_report_data(output_dir)
    page = render_page(data, videos, title or f"Predictions: {output_dir.name}")
    path = write_text_atomic(output_dir / "report.html", page)
    log.info("report: %s (%.1f MB)", path, path.stat().st_size / 2**20)
    return path
