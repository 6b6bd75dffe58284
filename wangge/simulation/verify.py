"""`wangge verify`: the platform's patrols and statuses of a simulated week against its truth."""

from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from geodata.compliance.report import parse_week
from geodata.db.engine import create_db_engine
from geodata.errors import WanggeError
from wangge.simulation import Comparison, Truth, compare
from wangge.simulation.compare import ABSENT
from wangge.simulation.db import read_platform

STATUSES = ("met", "on_track", "at_risk", "missed")


class TruthUnreadable(WanggeError):
    """The truth file is missing, not a truth file, or about another week."""

    code = "truth_unreadable"


def read_truth(path: Path, week: str) -> Truth:
    """The truth file, checked to be about `week`."""
    try:
        truth = Truth.from_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise TruthUnreadable(f"cannot read the truth file {path}: {exc}") from exc
    if truth.week != parse_week(week):
        raise TruthUnreadable(f"{path} is the truth of {truth.week}, not of {week}")
    return truth


def confusion_table(comparison: Comparison, week: str) -> Table:
    """Expected statuses (rows) against the platform's (columns)."""
    actual = [*STATUSES, ABSENT]
    table = Table(title=f"{week}: expected (rows) vs platform status as of the week's end")
    table.add_column("expected \\ platform")
    for status in actual:
        table.add_column(status, justify="right")
    table.add_column("total", justify="right")
    for expected in STATUSES:
        row = [comparison.confusion[(expected, a)] for a in actual]
        cells = [
            f"[green]{n:,}[/]" if n and a == expected else f"[bold red]{n:,}[/]" if n else "·"
            for a, n in zip(actual, row, strict=True)
        ]
        table.add_row(expected, *cells, f"{sum(row):,}")
    return table


def disagreement_table(comparison: Comparison) -> Table:
    """Every disagreement, with its reason."""
    table = Table(title=f"{len(comparison.disagreements):,} disagreement(s)")
    for column in ("worker", "grid", "what", "expected", "platform", "reason"):
        table.add_column(column)
    for d in comparison.disagreements:
        table.add_row(
            d.worker_id,
            d.grid_code,
            d.what,
            escape(d.expected),
            escape(d.actual),
            escape(d.reason),
        )
    return table


def run_verify(database_url: str, truth_path: Path, week: str, console: Console) -> Comparison:
    """Read the platform's view of the truth's workers and compare; print the tables."""
    truth = read_truth(truth_path, week)
    engine = create_db_engine(database_url)
    try:
        platform = read_platform(engine, truth)
    finally:
        engine.dispose()
    comparison = compare(truth, platform)
    console.print(confusion_table(comparison, week))
    if comparison.disagreements:
        console.print(disagreement_table(comparison))
    for note in comparison.notes:
        console.print(f"note: {note}")
    patrols = sum(len(e.patrols) for e in truth.entries)
    engine_part = "; engine statuses compared" if comparison.engine_compared else ""
    console.print(
        f"{comparison.entries:,} (worker, grid) pairs, {patrols:,} expected patrols, "
        f"{sum(e.checkins_in_window for e in truth.entries):,} check-ins in the week's window"
        f"{engine_part}: {len(comparison.disagreements):,} disagreements"
    )
    return comparison
