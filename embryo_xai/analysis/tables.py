"""Table 1 (approach means + accuracy, best per column marked) and plain-text table writers.

The writers are small and dependency-free (no tabulate) so the report renders the same
Markdown, HTML and LaTeX anywhere.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from embryo_xai.analysis.loading import Study
from embryo_xai.analysis.spec import METRICS, higher_is_better, list_metrics, method_label, metric_label, model_label

ACCURACY = "Accuracy"


def table1(study: Study) -> pd.DataFrame:
    """Model, method, the seven metric means and the model's per-video accuracy (percent)."""
    frame = pd.DataFrame(
        {
            "Model": [model_label(a.model) for a in study.approaches],
            "Method": [method_label(a.method) for a in study.approaches],
            "Approach": study.labels,
        }
    )
    for metric in study.metrics:
        frame[metric_label(metric)] = study.means[metric].to_numpy()
    frame[ACCURACY] = study.accuracy.to_numpy()
    return frame


def best_rows(frame: pd.DataFrame) -> dict[str, list[int]]:
    """Row positions holding the best value of each metric column (and accuracy); all ties marked."""
    metrics = [m for m in list_metrics() if metric_label(m) in frame.columns] or list(METRICS)
    directions = {metric_label(m): higher_is_better(m) for m in metrics} | {ACCURACY: True}
    best = {}
    for column, higher in directions.items():
        values = frame[column].to_numpy(dtype=float)
        if np.isfinite(values).any():
            target = np.nanmax(values) if higher else np.nanmin(values)
            best[column] = list(np.flatnonzero(np.isclose(values, target, rtol=0, atol=1e-12)))
    return best


def table1_with_best(frame: pd.DataFrame) -> pd.DataFrame:
    """Table 1 plus a `best` column naming the columns where each approach is best (for the CSV)."""
    marked = frame.copy()
    best = best_rows(frame)
    marked["best"] = [";".join(c for c, rows in best.items() if i in rows) for i in range(len(frame))]
    return marked


def _cell(value: object, decimals: int) -> str:
    if isinstance(value, float | np.floating):
        return "–" if np.isnan(value) else f"{value:.{decimals}f}"
    return str(value)


def _decimals(column: str, decimals: int | None) -> int:
    if decimals is not None:
        return decimals
    return 1 if column == ACCURACY else 3


def format_cells(
    frame: pd.DataFrame, emphasis: Callable[[str], str] | None = None, decimals: int | None = None
) -> list[list[str]]:
    """Text of every cell (`decimals` for every float, else 3 and 1 for accuracy); with `emphasis`
    (Table 1 only), the best value of each column wrapped by it."""
    best = best_rows(frame) if emphasis is not None else {}
    rows = []
    for i, record in enumerate(frame.itertuples(index=False)):
        cells = []
        for column, value in zip(frame.columns, record):
            text = _cell(value, _decimals(column, decimals))
            cells.append(emphasis(text) if i in best.get(column, []) else text)
        rows.append(cells)
    return rows


def to_markdown(frame: pd.DataFrame, mark_best: bool = False, decimals: int | None = None) -> str:
    rows = format_cells(frame, (lambda t: f"**{t}**") if mark_best else None, decimals)
    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    return "\n".join([header, rule] + ["| " + " | ".join(r) + " |" for r in rows]) + "\n"


def to_html(frame: pd.DataFrame, mark_best: bool = False, decimals: int | None = None) -> str:
    rows = format_cells(frame, (lambda t: f"<b>{t}</b>") if mark_best else None, decimals)
    escaped = [[c if c.startswith("<b>") else html.escape(c) for c in r] for r in rows]
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in escaped)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _latex_escape(text: str) -> str:
    for char, replacement in (
        ("\\", r"\textbackslash{}"),
        ("&", r"\&"),
        ("%", r"\%"),
        ("_", r"\_"),
        ("#", r"\#"),
        ("–", "--"),
    ):
        text = text.replace(char, replacement)
    return text


def to_latex(
    frame: pd.DataFrame, caption: str, label: str, mark_best: bool = False, decimals: int | None = None
) -> str:
    rows = format_cells(frame, (lambda t: f"\\textbf{{{t}}}") if mark_best else None, decimals)
    rows = [[c if c.startswith("\\textbf") else _latex_escape(c) for c in r] for r in rows]
    spec = "".join("r" if pd.api.types.is_numeric_dtype(frame[c]) else "l" for c in frame.columns)
    lines = [
        "\\begin{table}[t]",
        "\\centering",
        f"\\caption{{{_latex_escape(caption)}}}",
        f"\\label{{{label}}}",
        f"\\begin{{tabular}}{{{spec}}}",
        "\\hline",
        " & ".join(_latex_escape(str(c)) for c in frame.columns) + " \\\\",
        "\\hline",
        *(" & ".join(r) + " \\\\" for r in rows),
        "\\hline",
        "\\end{tabular}",
        "\\end{table}",
    ]
    return "\n".join(lines) + "\n"


def write_table(
    frame: pd.DataFrame,
    out_dir: Path,
    stem: str,
    caption: str,
    mark_best: bool = False,
    decimals: int | None = None,
) -> None:
    """`stem`.csv (full precision), `stem`.md and `stem`.tex."""
    csv_frame = table1_with_best(frame) if mark_best else frame
    csv_frame.to_csv(out_dir / f"{stem}.csv", index=False)
    (out_dir / f"{stem}.md").write_text(to_markdown(frame, mark_best, decimals))
    (out_dir / f"{stem}.tex").write_text(to_latex(frame, caption, f"tab:{stem}", mark_best, decimals))
