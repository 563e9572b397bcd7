"""The report's sections, one module per analysis, each with ``section(study, writer, cfg)``.

A section function computes its analysis from the `Study`, hands its tables and figures to the
`ReportWriter` and returns the `Section`s (text, tables, figures) it adds to the report, in
order; `embryo_xai.report` lists them. Prose names metrics, directions and groups through
`analysis.spec`, so it says what the code computed.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Protocol

from omegaconf import DictConfig

from embryo_xai.analysis.document import Section
from embryo_xai.analysis.loading import Study
from embryo_xai.analysis.spec import metric_label, signed_for_higher_better
from embryo_xai.analysis.writer import ReportWriter


class SectionFunction(Protocol):
    def __call__(self, study: Study, writer: ReportWriter, cfg: DictConfig) -> list[Section]: ...


def per_image(function: SectionFunction) -> SectionFunction:
    """A section drawn from per-image rows: absent for a table of means (`means_only` says so once)."""

    @functools.wraps(function)
    def section(study: Study, writer: ReportWriter, cfg: DictConfig) -> list[Section]:
        return function(study, writer, cfg) if study.values is not None else []

    return section


def means_only(study: Study, writer: ReportWriter, cfg: DictConfig) -> list[Section]:
    """Where the per-image sections would be: why they are not, for a published table."""
    if study.values is not None:
        return []
    return [
        Section(
            "Per-image analyses",
            [
                "Only approach means are available (published table): the bootstrap, t-SNE/UMAP and gallery "
                "need per-image rows from faithfulness runs."
            ],
        )
    ]


def listed(words: Sequence[str]) -> str:
    """"A", "A and B", "A, B and C"."""
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + f" and {words[-1]}"


def labels(metrics: Sequence[str]) -> list[str]:
    return [metric_label(m) for m in metrics]


def lower_is_better(metrics: Sequence[str]) -> list[str]:
    """Labels of the metrics among `metrics` whose classes declare lower values better."""
    return labels([m for m in metrics if signed_for_higher_better(m) < 0])


_NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


def number_word(n: int) -> str:
    """"seven" for 7 (prose spells small counts), digits from 11 on."""
    return _NUMBER_WORDS[n] if 0 <= n < len(_NUMBER_WORDS) else str(n)
