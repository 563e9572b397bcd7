"""The report's files: every table as CSV, every figure under ``figures/``, then report.md/html and W&B.

Sections (``analysis/sections``) hand their tables and figures to one `ReportWriter`, which
writes them at once and remembers them, so the W&B run at the end logs exactly what the
report's folder holds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from embryo_xai.analysis.document import Figure, Section, render_html, render_markdown
from embryo_xai.analysis.tables import write_table


class ReportWriter:
    """Owns the report's folder (`out_dir`, `fig_dir`) and what has been written into it."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.fig_dir = out_dir / "figures"
        self.fig_dir.mkdir(parents=True, exist_ok=True)
        self.tables: dict[str, pd.DataFrame] = {}  # W&B name -> frame, in the order written
        self.figures: dict[str, Path] = {}  # W&B name -> PNG

    def add_table(
        self,
        name: str,
        frame: pd.DataFrame,
        *,
        index: str | None = None,
        caption: str | None = None,
        mark_best: bool = False,
        decimals: int | None = None,
        log: bool = True,
    ) -> pd.DataFrame:
        """Write `name`.csv and return the frame as logged to W&B (unless ``log=False``).

        `index`: the rows' labels are data (a matrix, a per-stage table); the CSV keeps them as its
        first column, headed by the frame's own index name, and the returned frame has them as
        column `index`. `caption`: a paper table, also written as `name`.md and `name`.tex.
        """
        if caption is not None:
            write_table(frame, self.out_dir, name, caption, mark_best, decimals)
        else:
            frame.to_csv(self.out_dir / f"{name}.csv", index=index is not None)
        flat = frame.reset_index(names=index) if index is not None else frame
        if log:
            self.tables[name] = flat
        return flat

    def stem(self, name: str) -> Path:
        """Where figure `name` is drawn (the figure functions add .png and .svg)."""
        return self.fig_dir / name

    def add_figure(self, png: Path, caption: str) -> Figure:
        """A drawn figure as a report block; logged to W&B under its file name."""
        self.figures[png.stem] = png
        return Figure(png, caption)

    def write(self, title: str, sections: list[Section]) -> Path:
        """report.md and report.html from `sections`; return report.md's path."""
        report_md = self.out_dir / "report.md"
        report_md.write_text(render_markdown(title, sections, self.out_dir))
        (self.out_dir / "report.html").write_text(render_html(title, sections))
        return report_md

    def log_wandb(self, cfg: DictConfig) -> None:
        """Log every table and figure to W&B (a ``report`` run in the study's group; offline unless
        ``wandb=online``: `wandb sync` uploads later)."""
        import wandb

        from embryo_xai.tracking import init_run

        settings = {"project": cfg.get("wandb_project", "embryo_xai"), "offline": str(cfg.wandb) != "online"}
        run = init_run(cfg, "report", f"report-{self.out_dir.name}", self.out_dir, settings)
        if run is None:
            return
        payload = {
            f"table/{name}": wandb.Table(dataframe=frame.reset_index(drop=True).replace({np.nan: None}))
            for name, frame in self.tables.items()
        }
        payload |= {f"figure/{name}": wandb.Image(str(png)) for name, png in self.figures.items()}
        run.log(payload)
        run.finish()
