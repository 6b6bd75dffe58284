"""An evaluation as CSV: one row for the area's total, then one per unit (docs/EVALUATION.md).

The API's `?format=csv` and `wangge evaluate --csv` write this, so a file from either reads
the same. UTF-8 with a byte-order mark, which spreadsheet programs need to read Chinese names.
"""

from typing import Final

from geodata.evaluation import STAGES, Evaluation, Figures
from geodata.table_files import csv_text

FIXED_COLUMNS: Final = (
    "level",
    "code",
    "name",
    "reported",
    "dispatched",
    "closed",
    "closed_on_time",
    "on_time_rate",
    "overdue",
    "escalations",
    "escalations_by_deadlines",
    "reopened",
    "reopen_rate",
    *(f"{stage}_{what}" for stage in STAGES for what in ("count", "mean_s", "p90_s")),
)
"""The columns every file has; `source:KEY` and `category:KEY` counts follow them."""


def _cell(value: str | int | float | None) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}".rstrip("0").rstrip(".") if value % 1 else f"{value:.0f}"
    return str(value)


def _row(figures: Figures, sources: list[str], categories: list[str]) -> list[str]:
    values: list[str | int | float | None] = [
        figures.level,
        figures.code,
        figures.name,
        figures.reported,
        figures.dispatched,
        figures.closed,
        figures.closed_on_time,
        figures.on_time_rate,
        figures.overdue,
        figures.escalations,
        figures.escalations_by_deadlines,
        figures.reopened,
        figures.reopen_rate,
    ]
    for stage in STAGES:
        time = figures.stages[stage]
        values += [time.count, time.mean_s, time.p90_s]
    by_source = {share.key: share.count for share in figures.by_source}
    by_category = {share.key: share.count for share in figures.by_category}
    values += [by_source.get(key, 0) for key in sources]
    values += [by_category.get(key, 0) for key in categories]
    return [_cell(value) for value in values]


def evaluation_csv(evaluation: Evaluation) -> str:
    """The evaluation as CSV text (with its byte-order mark), the total's row first."""
    rows = (evaluation.total, *evaluation.items)
    sources = sorted({share.key for row in rows for share in row.by_source})
    categories = sorted({share.key for row in rows for share in row.by_category})
    header = [*FIXED_COLUMNS, *(f"source:{key}" for key in sources)]
    header += [f"category:{key}" for key in categories]
    return csv_text(header, (_row(figures, sources, categories) for figures in rows))
