"""`wangge archive` and `wangge archive restore`: the store's work behind progress bars."""

from collections.abc import Sequence
from datetime import date, timedelta
from pathlib import Path

from rich.table import Table

from geodata.archive import ArchivedWeek, WeekArchived
from geodata.compliance.weeks import IsoWeek
from geodata.db import archive_store
from wangge.commands.common import console, progress_bar


def _archived_table(done: Sequence[WeekArchived], title: str) -> Table:
    table = Table(
        "week 周", "part 部分", "rows 行数", "patrol rows 巡查行数", "file 文件", "SHA-256",
        title=title,
    )  # fmt: skip
    for week in done:
        part = week.part
        if part is None:
            # A week archived before whose partition held only rows already archived.
            table.add_row(week.entry.week, "-", "0", "0", "already archived 已归档", "")
            continue
        patrol = part.patrol_checkins
        table.add_row(
            week.entry.week,
            f"{part.part} / {len(week.entry.parts)}",
            f"{part.checkins.rows:,}",
            f"{patrol.rows:,}" if patrol else "0",
            part.checkins.file,
            part.checkins.sha256[:16] + "…",
        )
    return table


def _restored_table(loaded: Sequence[tuple[ArchivedWeek, int]], title: str) -> Table:
    table = Table(
        "week 周", "partition 分区", "parts 部分", "added / archived 新增 / 已归档", title=title
    )
    for entry, added in loaded:
        archived = f"{added:,} / {entry.rows + entry.patrol_rows:,}"
        table.add_row(entry.week, entry.partition, str(len(entry.parts)), archived)
    return table


def run_archive(
    database_url: str,
    out: Path,
    before: date | None,
    retention_weeks: int | None,
    allowed_lateness: timedelta,
) -> list[WeekArchived]:
    """Archive the weeks ending by `before`, or those WANGGE_RETENTION_WEEKS lets go."""
    with progress_bar() as progress:
        if before is not None:
            done = archive_store.archive(
                database_url, before, out, allowed_lateness, progress=progress
            )
        elif retention_weeks is None:
            console.print("WANGGE_RETENTION_WEEKS is not set: every week is kept 未设置保留周数")
            return []
        else:
            done = archive_store.apply_retention(
                database_url, retention_weeks, out, allowed_lateness, progress=progress
            )
    if not done:
        console.print("no closed week to archive 没有可归档的周")
        return done
    console.print(_archived_table(done, f"archived to {out} 已归档"))
    return done


def run_restore(
    database_url: str, directory: Path, weeks: Sequence[IsoWeek] | None
) -> list[tuple[ArchivedWeek, int]]:
    """Restore the archive's weeks (all, or `weeks`, every part of each) and print what
    each added."""
    with progress_bar() as progress:
        loaded = archive_store.restore(database_url, directory, weeks, progress=progress)
    title = f"restored from {directory} 已恢复 (rows of both tables)"
    console.print(_restored_table(loaded, title))
    return loaded
