"""A published table (CSV in Table 1's layout) read as a `Study` of means, for the report's
`table1_csv=` option: the paper's own numbers, or another group's, analysed like runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from embryo_xai.analysis.loading import Study
from embryo_xai.analysis.spec import METRICS, Approach, method_key, model_key
from embryo_xai.errors import UsageError, one_line
from embryo_xai.models import list_models


def _normalised(column: str) -> str:
    """Header spelling that does not matter: case, spaces, underscores, a trailing unit like "(%)"."""
    return "".join(ch for ch in column.split("(")[0].lower() if ch.isalnum())


_ACCURACY_COLUMNS = ("accuracy", "acc", "accuracyvideo", "pervideoaccuracy")


def _split_approach(value: str) -> tuple[str, str]:
    """An ``approach`` cell: ``Model/Method`` (``CNN/Grad-CAM++``), or a name alone as Table 1 prints
    it (a model name means its attention map, a method name the CNN's post-hoc map)."""
    text = str(value).strip()
    if "/" in text:
        model, method = text.split("/", 1)
        return model_key(model), method_key(method)
    if model_key(text) in list_models():
        return model_key(text), method_key("-")
    return "cnn", method_key(text)


def load_published_table(csv_path: str | Path) -> Study:
    """A table of approach means in Table 1's layout (model, method, metric columns, accuracy).

    Either ``model`` and ``method`` columns or one ``approach`` column (``Model/Method``); metric
    headers in any case (``DAUC`` or ``dauc``). Accuracy is in percent as printed; an empty
    accuracy cell inherits the model's value from another row (the paper prints the CNN's accuracy
    once for its five methods). A table without the expected columns raises a UsageError naming the
    columns found and those expected.
    """
    expected = ("model, method (or one approach column written Model/Method), " + ", ".join(m.upper() for m in METRICS)
                + " and optionally accuracy")
    try:
        table = pd.read_csv(csv_path, dtype=str, keep_default_na=False, na_values=[""])
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise UsageError(f"table1_csv={csv_path}: cannot read it as a CSV ({one_line(error)}); expected columns: "
                         f"{expected}") from None
    columns = {_normalised(c): c for c in table.columns}
    found = ", ".join(str(c) for c in table.columns) or "none"
    metric_columns = {m: columns[m] for m in METRICS if m in columns}
    if "model" in columns and "method" in columns:
        keys = [(model_key(m), method_key(t)) for m, t in zip(table[columns["model"]], table[columns["method"]])]
    elif "approach" in columns:
        keys = [_split_approach(a) for a in table[columns["approach"]]]
    else:
        keys = None
    if keys is None or not metric_columns:
        raise UsageError(f"table1_csv={csv_path} lacks the expected columns: found {found}; expected {expected}")
    approaches = [Approach(model, method) for model, method in keys]
    means = pd.DataFrame(
        {m: pd.to_numeric(table[c], errors="coerce").to_numpy() for m, c in metric_columns.items()},
        index=[a.label for a in approaches],
    ).reindex(columns=list(METRICS))
    accuracy = pd.Series(np.nan, index=means.index, name="accuracy")
    accuracy_column = next((columns[c] for c in _ACCURACY_COLUMNS if c in columns), None)
    if accuracy_column is not None:
        raw = pd.to_numeric(table[accuracy_column], errors="coerce")
        per_model = pd.Series(raw.to_numpy(), index=[a.model for a in approaches]).dropna()
        per_model = per_model[~per_model.index.duplicated()]
        accuracy[:] = [per_model.get(a.model, np.nan) for a in approaches]
    # The table's own row order is kept: it is the "order of appearance" that breaks rank ties.
    labels = [a.label for a in approaches]
    missing = [
        (label, m.upper(), "missing in table") for label in labels for m in METRICS if np.isnan(means.at[label, m])
    ]
    return Study(
        approaches=approaches,
        means=means,
        accuracy=accuracy,
        incomplete=pd.DataFrame(missing, columns=["approach", "metric", "problem"]),
    )
