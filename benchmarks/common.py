"""Shared output of every benchmark: a printed table plus JSON and CSV files."""

from __future__ import annotations

import csv
import json
import platform
from pathlib import Path

import torch

RESULTS = Path("bench_results")


def machine() -> dict[str, str]:
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else platform.processor() or "cpu"
    return {"device": device, "torch": torch.__version__, "threads": str(torch.get_num_threads())}


def write_table(name: str, rows: list[dict], title: str, out_dir: Path = RESULTS) -> None:
    """Print ``rows`` as an aligned table and save them as ``<name>.json`` and ``<name>.csv``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    columns = list(rows[0])
    cells = [[f"{r[c]:.3g}" if isinstance(r[c], float) else str(r[c]) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    print(f"\n{title}")
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)))
    (out_dir / f"{name}.json").write_text(json.dumps({"machine": machine(), "rows": rows}, indent=2))
    with open(out_dir / f"{name}.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    print(f"-> {out_dir / name}.json, .csv")
