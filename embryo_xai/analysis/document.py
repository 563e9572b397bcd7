"""One report, two renderings: Markdown with figure links and self-contained HTML.

Sections hold paragraphs, tables and figures; the same list renders to `report.md`
(figures as relative links) and `report.html` (figures inline as base64 PNG, so the file
opens anywhere on its own).
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from embryo_xai.analysis.tables import to_html, to_markdown


@dataclass
class Table:
    frame: pd.DataFrame
    mark_best: bool = False
    caption: str = ""
    decimals: int | None = None  # None: 3 for metrics, 1 for accuracy


@dataclass
class Figure:
    png: Path
    caption: str = ""


@dataclass
class Section:
    title: str
    blocks: list[str | Table | Figure] = field(default_factory=list)


def render_markdown(title: str, sections: list[Section], out_dir: Path) -> str:
    lines = [f"# {title}", ""]
    for section in sections:
        lines += [f"## {section.title}", ""]
        for block in section.blocks:
            if isinstance(block, Table):
                lines += ([f"*{block.caption}*", ""] if block.caption else []) + [
                    to_markdown(block.frame, block.mark_best, block.decimals)
                ]
            elif isinstance(block, Figure):
                png = block.png.relative_to(out_dir).as_posix()
                svg = block.png.with_suffix(".svg").relative_to(out_dir).as_posix()
                lines += [f"![{block.caption}]({png})", "", f"*{block.caption}* ([SVG]({svg}))", ""]
            else:
                lines += [block, ""]
    return "\n".join(lines)


def render_html(title: str, sections: list[Section]) -> str:
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
        "table{border-collapse:collapse;margin:0.5em 0 1.2em}td,th{border:1px solid #ccc;padding:3px 8px;"
        "text-align:right}th{background:#f2f2f2}td:first-child,th:first-child{text-align:left}"
        "img{max-width:100%;height:auto}figcaption,.caption{font-style:italic;color:#555}"
    )
    parts = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{style}</style></head><body><h1>{html.escape(title)}</h1>"
    ]
    for section in sections:
        parts.append(f"<h2>{html.escape(section.title)}</h2>")
        for block in section.blocks:
            if isinstance(block, Table):
                if block.caption:
                    parts.append(f"<p class='caption'>{html.escape(block.caption)}</p>")
                parts.append(to_html(block.frame, block.mark_best, block.decimals))
            elif isinstance(block, Figure):
                data = base64.b64encode(block.png.read_bytes()).decode("ascii")
                parts.append(
                    f"<figure><img alt='{html.escape(block.caption)}' src='data:image/png;base64,{data}'>"
                    f"<figcaption>{html.escape(block.caption)}</figcaption></figure>"
                )
            else:
                parts.append(f"<p>{_inline(block)}</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _inline(text: str) -> str:
    """Paragraph text with Markdown backticks and bold turned into HTML; everything else escaped."""
    escaped = html.escape(text)
    out, code, bold = [], False, False
    pieces = escaped.replace("**", "\0").split("`")
    for k, piece in enumerate(pieces):
        code = k % 2 == 1
        if code:
            out.append(f"<code>{piece}</code>")
            continue
        for j, chunk in enumerate(piece.split("\0")):
            if j:
                bold = not bold
                out.append("<b>" if bold else "</b>")
            out.append(chunk)
    return "".join(out).replace("\n- ", "<br>• ").replace("\n", "<br>")
