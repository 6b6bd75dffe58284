"""`wangge archive` and `wangge archive restore`: the store's work behind progress bars."""

from collections.abc import Sequence
from datetime import date, timedelta
from pathlib import Path

from rich.table import Table

from geodata.archive import ArchivedPartition
from geodata.compliance.weeks import IsoWeek
from geodata.db import archive_store
from wangge.commands.common import console, progress_bar


def _table(rows: Sequence[tuple[ArchivedPartition, str]], title: str) -> Table:
    table = Table(
        "week 周", "partition 分区", "rows 行数", "patrol rows 巡查行数", "file 文件", "SHA-256",
        title=title,
    )  # fmt: skip
    for entry, rows_text in rows:
        table.add_row(
            entry.week,
            entry.partition,
            rows_text,
            f"{entry.patrol_rows:,}",
            entry.file,
            entry.sha256[:16] + "…",
        )
    return table


def run_archive(
    database_url: str,
    out: Path,
    before: date | None,
    retention_weeks: int | None,
    allowed_lateness: timedelta,
) -> list[ArchivedPartition]:
    """Archive the weeks ending by `before`, or those WANGGE_RETENTION_WEEKS lets go."""
    with progress_bar() as progress:
        if before is not None:
            entries = archive_store.archive(
                database_url, before, out, allowed_lateness, progress=progress
            )
        elif retention_weeks is None:
            console.print("WANGGE_RETENTION_WEEKS is not set: every week is kept 未设置保留周数")
            return []
        else:
            entries = archive_store.apply_retention(
                database_url, retention_weeks, out, allowed_lateness, progress=progress
            )
    if not entries:
        console.print("no closed week to archive 没有可归档的周")
        return entries
    console.print(_table([(e, f"{e.rows:,}") for e in entries], f"archived to {out} 已归档"))
    return entries


def run_restore(
    database_url: str, directory: Path, weeks: Sequence[IsoWeek] | None
) -> list[tuple[ArchivedPartition, int]]:
    """Restore the archive's weeks (all, or `weeks`) and print what each added."""
    with progress_bar() as progress:
        loaded = archive_store.restore(database_url, directory, weeks, progress=progress)
    rows = [(e, f"{added:,} / {e.rows + e.patrol_rows:,}") for e, added in loaded]
    console.print(_table(rows, f"restored from {directory} 已恢复 (added / archived, both tables)"))
    return loaded
