"""A self-contained HTML report: a PNG figure embedded as base64 and tables of
(label, value) rows. No external files, scripts or fonts."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from rtcal.report.live_run import Rows

_STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; max-width: 1500px; }
img { max-width: 100%; border: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.5em 2em 1.5em 0; display: inline-table;
        vertical-align: top; }
th { text-align: left; padding: 0.3em 0.6em; background: #eee; }
td { padding: 0.2em 0.6em; border-bottom: 1px solid #eee; font-family: monospace; }
p.note { color: #555; }
"""


def write_html_report(
    path: str | Path,
    *,
    title: str,
    figure_png: str | Path,
    tables: list[tuple[str, Rows]],
    notes: list[str] = (),
) -> Path:
    """Write ``path``: title, notes (paragraphs), the figure inlined, then the tables.
    Every text is HTML-escaped."""
    png = base64.b64encode(Path(figure_png).read_bytes()).decode("ascii")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        *(f'<p class="note">{html.escape(n)}</p>' for n in notes),
        f'<img alt="{html.escape(title)}" src="data:image/png;base64,{png}">',
        "<div>",
        *(_table(heading, rows) for heading, rows in tables),
        "</div></body></html>",
    ]
    path = Path(path)
    path.write_text("\n".join(parts) + "\n", encoding="utf-8")
    return path


def _table(heading: str, rows: Rows) -> str:
    body = "".join(
        f"<tr><td>{html.escape(label)}</td><td>{html.escape(value)}</td></tr>"
        for label, value in rows
    )
    return f'<table><tr><th colspan="2">{html.escape(heading)}</th></tr>{body}</table>'
