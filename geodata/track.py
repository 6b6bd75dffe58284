"""A worker's walk: the rules of a track read (interval, page, cursor) and each fix's flags.

Pure: the repository (`geodata.db.track_read`) reads the rows, the HTTP adapter shapes
them. A fix is one stored check-in; its flags say why a supervisor should doubt it, and
its patrol is the stored patrol whose grid and time span hold it, when the fix is one the
patrol rule could use (docs/PATROL_RULE.md).
"""

import base64
import binascii
import bisect
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from geodata.errors import WanggeError
from geodata.quality import IMPLAUSIBLE_SPEED, LOW_ACCURACY, MOCKED

MAX_SPAN: Final = timedelta(days=31)
"""Longest interval one track read covers: a month, beyond a week's replay."""

DEFAULT_LIMIT: Final = 1000
"""Fixes per page by default: a week's walk (about 500 fixes) in one answer."""

MAX_LIMIT: Final = 5000
"""Most fixes one page holds."""

OUTSIDE_ASSIGNED_GRID: Final = "outside_assigned_grid"
"""A fix outside every grid the worker was assigned to when it was taken."""

TRACK_FLAGS: Final = (LOW_ACCURACY, IMPLAUSIBLE_SPEED, MOCKED, OUTSIDE_ASSIGNED_GRID)
"""Every flag a track's fix may carry, in the order they are listed."""


class InvalidInterval(WanggeError):
    """A track interval whose end is not after its start, or longer than MAX_SPAN."""

    code = "invalid_interval"


class InvalidCursor(WanggeError):
    """A page cursor this server did not write."""

    code = "invalid_cursor"


def check_interval(start: datetime, end: datetime) -> None:
    """Raise InvalidInterval unless `start` < `end` and the span is at most MAX_SPAN."""
    if end <= start:
        raise InvalidInterval("`to` must be after `from`")
    if end - start > MAX_SPAN:
        raise InvalidInterval(f"an interval is at most {MAX_SPAN.days} days long")


@dataclass(frozen=True, order=True)
class Cursor:
    """Where a page ended: the last fix's time and event id (the read's sort key)."""

    recorded_at: datetime
    event_id: uuid.UUID

    def encode(self) -> str:
        """The opaque, URL-safe text of the cursor."""
        micros = _to_micros(self.recorded_at)
        raw = f"{micros}:{self.event_id.hex}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> "Cursor":
        """The cursor `encode` wrote; InvalidCursor for anything else."""
        if len(text) > 96:
            raise InvalidCursor("a cursor is at most 96 characters")
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("ascii")
            micros, _, hex_id = raw.partition(":")
            if not (micros.isascii() and micros.isdigit() and len(micros) <= 18):
                raise ValueError("not a count of microseconds")
            at = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=int(micros))
            event_id = uuid.UUID(hex=hex_id)
        except (ValueError, binascii.Error, OverflowError, UnicodeDecodeError) as exc:
            raise InvalidCursor("the cursor is not one this server wrote") from exc
        return cls(at, event_id)


def _to_micros(at: datetime) -> int:
    delta = at - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


@dataclass(frozen=True)
class StoredFix:
    """One stored check-in as the track read finds it (its event id as text)."""

    event_id: str
    recorded_at: datetime
    lon: float
    lat: float
    accuracy_m: float | None
    grid_code: str | None
    in_assigned_grid: bool | None
    flags: Sequence[str]


@dataclass(frozen=True)
class PatrolSpan:
    """A stored patrol's grid and span, and whether and why it counted."""

    grid_code: str
    started_at: datetime
    ended_at: datetime
    valid: bool
    counted: bool
    reason: str


@dataclass(frozen=True)
class TrackFix:
    """A fix of the track: the stored check-in, its flags and its patrol (if any)."""

    fix: StoredFix
    flags: tuple[str, ...]
    patrol: PatrolSpan | None


def fix_flags(fix: StoredFix) -> tuple[str, ...]:
    """The fix's flags among TRACK_FLAGS: the intake's, and outside its assigned grid."""
    present = set(fix.flags)
    if not fix.in_assigned_grid:
        present.add(OUTSIDE_ASSIGNED_GRID)
    return tuple(flag for flag in TRACK_FLAGS if flag in present)


def usable_for_patrol(fix: StoredFix, max_accuracy_m: float) -> bool:
    """Whether the patrol rule could use the fix: in its assigned grid, accurate enough."""
    return (
        fix.grid_code is not None
        and bool(fix.in_assigned_grid)
        and (fix.accuracy_m is None or fix.accuracy_m <= max_accuracy_m)
    )


def track_of(
    fixes: Iterable[StoredFix], patrols: Iterable[PatrolSpan], max_accuracy_m: float
) -> list[TrackFix]:
    """Each fix with its flags and the patrol whose grid and span hold it (if usable)."""
    by_grid: dict[str, list[PatrolSpan]] = {}
    for span in sorted(patrols, key=lambda p: (p.grid_code, p.started_at)):
        by_grid.setdefault(span.grid_code, []).append(span)
    starts = {code: [p.started_at for p in spans] for code, spans in by_grid.items()}
    track = []
    for fix in fixes:
        patrol: PatrolSpan | None = None
        if fix.grid_code in by_grid and usable_for_patrol(fix, max_accuracy_m):
            spans = by_grid[fix.grid_code]
            i = bisect.bisect_right(starts[fix.grid_code], fix.recorded_at) - 1
            if i >= 0 and spans[i].ended_at >= fix.recorded_at:
                patrol = spans[i]
        track.append(TrackFix(fix, fix_flags(fix), patrol))
    return track
