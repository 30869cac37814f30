"""A drift monitor report as one self-contained HTML page, plots in inline SVG.

:func:`render_html` writes the header and feature table of
:func:`entai.shared.monitoring._drift_report.summarize` and, per feature (and the prediction), a bar
chart of the reference next to the last closed window from the report's
``distributions`` (``window_distributions``). The page loads nothing: no
scripts, no stylesheets or fonts from elsewhere, no links; every name and value from
the report is HTML-escaped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from itertools import pairwise
from typing import Any

from entai.shared.monitoring._drift_report import (
    TABLE_COLUMNS,
    FeatureRow,
    fmt,
    header_lines,
    summarize,
    table_cells,
)

__all__ = ["plot_svg", "render_html"]

_W, _H = 560, 210
_LEFT, _RIGHT, _TOP, _BOTTOM = 48, 12, 16, 58
_LABEL_CHARS = 12

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; }
h1 { font-size: 1.4rem; } h2 { font-size: 1.1rem; margin-top: 2rem; }
ul.header { list-style: none; padding: 0; line-height: 1.6; }
table { border-collapse: collapse; font-size: 0.9rem; }
th, td { border-bottom: 1px solid #ddd; padding: 0.3rem 0.7rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
tr.drift td { background: #fde8e4; }
.plots { display: flex; flex-wrap: wrap; gap: 1rem; }
figure.plot { margin: 0; border: 1px solid #eee; padding: 0.5rem; }
figcaption { font-size: 0.85rem; margin-bottom: 0.3rem; }
svg text { font-size: 10px; fill: #444; }
rect.ref, span.ref { fill: #7f9cc9; background: #7f9cc9; }
rect.cur, span.cur { fill: #ef8a62; background: #ef8a62; }
span.ref, span.cur { display: inline-block; width: 0.8em; height: 0.8em; }
line.axis { stroke: #888; }
"""


def _table(rows: Sequence[FeatureRow]) -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in TABLE_COLUMNS)
    body = []
    for row in rows:
        cls = ' class="drift"' if row.status == "drift" else ""
        cells = "".join(f"<td>{escape(c)}</td>" for c in table_cells(row))
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _short(label: str) -> str:
    return label if len(label) <= _LABEL_CHARS else label[: _LABEL_CHARS - 1] + "…"


def _bars(labels: Sequence[str], ref: Sequence[float], cur: Sequence[float] | None) -> list[str]:
    top = max([*ref, *(cur or []), 1e-9])
    width, height = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM
    slot = width / max(len(ref), 1)
    bar = slot * (0.42 if cur is not None else 0.84)
    out: list[str] = []
    for i, share in enumerate(ref):
        x = _LEFT + i * slot + slot * 0.08
        sides = [("ref", share, x)]
        if cur is not None:
            sides.append(("cur", cur[i], x + bar))
        for cls, value, left in sides:
            h = height * value / top
            tip = f"{labels[i]}: {'reference' if cls == 'ref' else 'current'} {value:.1%}"
            out.append(
                f'<rect class="{cls}" x="{left:.1f}" y="{_TOP + height - h:.1f}" '
                f'width="{bar:.1f}" height="{h:.1f}"><title>{escape(tip)}</title></rect>'
            )
    base = _TOP + height
    out.append(f'<line class="axis" x1="{_LEFT}" y1="{base}" x2="{_W - _RIGHT}" y2="{base}"/>')
    out.append(f'<line class="axis" x1="{_LEFT}" y1="{_TOP}" x2="{_LEFT}" y2="{base}"/>')
    out.append(f'<text x="{_LEFT - 4}" y="{_TOP + 4}" text-anchor="end">{top:.0%}</text>')
    out.append(f'<text x="{_LEFT - 4}" y="{base}" text-anchor="end">0</text>')
    return out


def _x_labels(dist: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """Per-bar labels (for tooltips) and the axis labels' SVG."""
    base = _H - _BOTTOM + 14
    width = _W - _LEFT - _RIGHT
    if dist["kind"] == "numeric":
        edges = [float(e) for e in dist["edges"]]
        labels = [f"[{fmt(a)}, {fmt(b)})" for a, b in pairwise(edges)]
        ticks = [0, len(edges) // 2, len(edges) - 1]
        svg = [
            f'<text x="{_LEFT + width * i / (len(edges) - 1):.1f}" y="{base}" '
            f'text-anchor="middle">{escape(fmt(edges[i]))}</text>'
            for i in ticks
        ]
        return labels, svg
    names = [
        f"{c} (new)" if new else str(c)
        for c, new in zip(dist["categories"], dist["new"], strict=True)
    ]
    slot = width / max(len(names), 1)
    svg = []
    for i, name in enumerate(names):
        x = _LEFT + (i + 0.5) * slot
        svg.append(
            f'<text x="{x:.1f}" y="{base}" text-anchor="end" '
            f'transform="rotate(-35 {x:.1f} {base})">{escape(_short(name))}</text>'
        )
    return names, svg


def plot_svg(name: str, dist: Mapping[str, Any]) -> str:
    """One column's reference-vs-current bar chart as an inline ``<svg>`` element."""
    ref = [float(v) for v in dist["reference"]]
    cur = None if dist.get("current") is None else [float(v) for v in dist["current"]]
    label = escape(f"distribution of {name}: reference vs current window", quote=True)
    head = f'<svg role="img" aria-label="{label}" width="{_W}" height="{_H}" '
    head += f'viewBox="0 0 {_W} {_H}">'
    if not ref:
        return f'{head}<text x="{_LEFT}" y="{_H // 2}">no values</text></svg>'
    labels, axis = _x_labels(dist)
    return "".join([head, *_bars(labels, ref, cur), *axis, "</svg>"])


def _plots(report: Mapping[str, Any]) -> str:
    dists = report.get("distributions") or {}
    columns: Mapping[str, Any] = dists.get("columns") or {}
    window = dists.get("window_id")
    current = (
        f'<span class="cur"></span> {escape(str(window))}' if window else "(no closed window yet)"
    )
    names = [*report.get("features", []), report.get("prediction_column")]
    figures = []
    for name in [n for n in names if n in columns]:
        dist = columns[name]
        figures.append(
            f'<figure class="plot" data-feature="{escape(str(name), quote=True)}">'
            f"<figcaption><strong>{escape(str(name))}</strong> ({escape(dist['kind'])}): "
            f'<span class="ref"></span> reference, {current}</figcaption>'
            f"{plot_svg(str(name), dist)}</figure>"
        )
    return f'<div class="plots">{"".join(figures)}</div>'


def render_html(report: Mapping[str, Any]) -> str:
    """A self-contained HTML page for a drift monitor report.

    Raises:
        InvalidInputError: when ``report`` is not a drift monitor report.
    """
    summary = summarize(report)
    title = escape(f"entai drift report: {summary.model} v{summary.version}")
    header = "".join(f"<li>{escape(line)}</li>" for line in header_lines(summary))
    rows = list(summary.rows) + ([summary.prediction] if summary.prediction else [])
    table = _table(rows) if rows else "<p>No closed window yet.</p>"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{title}</title><style>{_STYLE}</style></head><body>"
        f'<h1>{title}</h1><ul class="header">{header}</ul>'
        f"<h2>Features</h2>{table}"
        f"<h2>Distributions: reference vs last closed window</h2>{_plots(report)}"
        "</body></html>\n"
    )
