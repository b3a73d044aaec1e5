"""One self-contained HTML page that tells an analysis run's story: settings, then every figure and table.

`render_report(sections, run_info, images=...)` is pure: it returns the page as a string and writes nothing.
Figures whose PNG bytes are given are embedded as `data:` URIs, so the page loads nothing from outside
itself: it renders inside W&B, as a downloaded file and after its folder moves. A figure without bytes is
linked by relative path (`figures/x.png`). Every figure has alt text and every table is inlined. All data is HTML-escaped; only a
section's `html` (markup the plot functions built, which escape their own data) is inserted as is.
"""

from __future__ import annotations

import base64
import html
import json
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

_STYLE = """<style>
body { font-family: sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; font-family: monospace; }
caption { caption-side: top; text-align: left; font-weight: bold; padding-bottom: 4px; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption, .how { color: #444; font-size: 14px; } .note { color: #8a5a00; font-size: 14px; }
nav ul { columns: 2; font-size: 14px; }
</style>"""


@dataclass(frozen=True)
class FigureRef:
    path: str            # relative to report.html, e.g. "figures/jsd_all.png"
    caption: str = ""


@dataclass(frozen=True)
class TableData:
    name: str                          # file stem, e.g. "roles"; shown as the caption
    columns: Sequence[str]
    rows: Sequence[Sequence[Any]]
    link: str | None = None            # relative path of the CSV, e.g. "tables/roles.csv"


@dataclass
class Section:
    """One part of the story: a title, one or two sentences on how to read it, then figures and tables."""

    title: str
    how_to_read: str = ""
    figures: list[FigureRef] = field(default_factory=list)
    tables: list[TableData] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)       # e.g. why an analysis was skipped
    html: str = ""                                         # trusted markup (plots.highlight), inserted as is


def format_value(value: Any) -> str:
    """Table cell text: integers as is, floats to 4 significant digits, NaN/None as 'n/a', flat lists
    comma-joined, other containers as JSON."""
    if value is None:
        return "n/a"
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        number = float(value)
        if math.isnan(number):
            return "n/a"
        return ("∞" if number > 0 else "−∞") if math.isinf(number) else f"{number:.4g}"
    if isinstance(value, (list, tuple)) and all(isinstance(v, (str, int, float)) for v in value):
        return ", ".join(format_value(v) for v in value)
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, default=str)
    return str(value)


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _anchor(title: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in title.lower()).strip("-") or "section"


def render_table(table: TableData) -> str:
    caption = _e(table.name)
    if table.link:
        caption += f' (<a href="{_e(table.link)}">{_e(table.link)}</a>)'
    head = "".join(f"<th>{_e(c)}</th>" for c in table.columns)
    body = "\n".join("<tr>" + "".join(f"<td>{_e(format_value(v))}</td>" for v in row) + "</tr>"
                     for row in table.rows)
    return f'<table data-name="{_e(table.name)}"><caption>{caption}</caption>\n<thead><tr>{head}</tr></thead>\n' \
           f"<tbody>\n{body}\n</tbody></table>"


def render_figure(figure: FigureRef, png: bytes | None = None) -> str:
    """The figure embedded (`png` given) or linked by its relative path."""
    name = figure.path.rsplit("/", 1)[-1]
    caption = _e(name) + (f" — {_e(figure.caption)}" if figure.caption else "")
    if png is not None:
        src = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
        return f'<figure><img src="{src}" alt="{_e(name)}"><figcaption>{caption}</figcaption></figure>'
    return (f'<figure><a href="{_e(figure.path)}"><img src="{_e(figure.path)}" alt="{_e(name)}" loading="lazy">'
            f"</a><figcaption>{caption}</figcaption></figure>")


def _render_section(section: Section, images: Mapping[str, bytes]) -> str:
    parts = [f'<section id="{_e(_anchor(section.title))}"><h2>{_e(section.title)}</h2>']
    if section.how_to_read:
        parts.append(f'<p class="how">{_e(section.how_to_read)}</p>')
    parts += [f'<p class="note">{_e(n)}</p>' for n in section.notes]
    parts += [render_figure(f, images.get(f.path)) for f in section.figures]
    parts += [render_table(t) for t in section.tables]
    if section.html:
        parts.append(section.html)
    parts.append("</section>")
    return "\n".join(parts)


def _run_table(run_info: Mapping[str, Any]) -> str:
    rows = "\n".join(f"<tr><td>{_e(k)}</td><td>{_e(format_value(v))}</td></tr>" for k, v in run_info.items())
    return f'<table data-name="run"><caption>run, model, data and settings</caption>\n<tbody>\n{rows}\n' \
           "</tbody></table>"


def render_report(sections: Sequence[Section], run_info: Mapping[str, Any],
                  title: str = "Layer-wise Integrated Gradients: analysis report",
                  images: Mapping[str, bytes] | None = None) -> str:
    """The whole page: title, the run's settings, a table of contents, then each section in order.
    `images`: PNG bytes by figure path, embedded in the page."""
    toc = "\n".join(f'<li><a href="#{_e(_anchor(s.title))}">{_e(s.title)}</a></li>' for s in sections)
    body = "\n".join(_render_section(s, images or {}) for s in sections)
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{_e(title)}</title>\n'
            f"{_STYLE}\n</head>\n<body>\n<h1>{_e(title)}</h1>\n"
            '<section id="run"><h2>Run</h2>\n<p class="how">What was analysed and how: the model, the data, '
            "the IG settings and the analysis options this page was made with.</p>\n"
            f"{_run_table(run_info)}\n</section>\n<nav><h2>Contents</h2><ul>\n{toc}\n</ul></nav>\n"
            f"{body}\n</body>\n</html>\n")
