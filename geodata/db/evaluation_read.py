"""Evaluation's read: the cases a period touched with their histories, the units' names,
and the answers kept while no incident has changed (docs/EVALUATION.md).

A case is read when it was reported in the period or has a history entry in it (indexes
of migration 0015), with its whole history, because whether it is on time or reworked
depends on what happened before. The figures themselves are `geodata.evaluation`'s.

Kept answers (`geodata.db.kept_answers`): the read costs tens to hundreds of milliseconds
for a month of a city, while the figures change only when an incident does. Every filing
and every transition writes a history entry or a status change (the outbox) with a new
id, so the highest ids of both tables (two index lookups) stamp the data an answer was
made from. An answer is served again while the stamp has not moved, and for `MAX_AGE_S`
at most, which bounds what a transaction that took a lower id but committed later could
leave unseen.
"""

from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from typing import Any, Final

import psycopg
from sqlalchemy import Engine

from geodata.compliance.report import Level
from geodata.db.kept_answers import KEPT_ANSWERS, MAX_AGE_S, KeptAnswers
from geodata.errors import GridNotFound, InvalidAreaCode
from geodata.evaluation import (
    AREA_LEVEL_BY_LENGTH,
    CaseEvent,
    CaseHistory,
    Evaluation,
    Period,
    evaluate,
)
from geodata.incidents import Status


class AreaNotFound(GridNotFound):
    """No district, street, community or grid has the requested code."""

    code = "area_not_found"


_CASES: Final = """
WITH touched AS (
    SELECT incident_id FROM incidents WHERE reported_at >= %(start)s AND reported_at < %(end)s
    UNION
    SELECT incident_id FROM incident_events WHERE at >= %(start)s AND at < %(end)s
)
SELECT i.incident_id, i.category, i.source, i.reporter_id,
       coalesce(i.grid_code, i.community_code), i.reported_at,
       e.action, e.to_status, e.assignee, e.actor_role, e.at
FROM touched JOIN incidents i USING (incident_id)
LEFT JOIN incident_events e ON e.incident_id = i.incident_id
WHERE %(prefix)s = '' OR coalesce(i.grid_code, i.community_code) LIKE %(prefix)s || '%%'
ORDER BY i.incident_id, e.version
"""

_AREA_NAMES: Final[Mapping[str, str]] = {
    "district": "SELECT code, name FROM districts WHERE code LIKE %(prefix)s || '%%'",
    "street": "SELECT code, name FROM streets WHERE code LIKE %(prefix)s || '%%'",
    "community": "SELECT code, name FROM communities WHERE code LIKE %(prefix)s || '%%'",
    # A grid's name as of its latest version that overlaps the period.
    "grid": "SELECT DISTINCT ON (code) code, name FROM grids WHERE code LIKE %(prefix)s || '%%'"
    " AND valid_from < %(end)s AND (valid_to IS NULL OR valid_to > %(start)s)"
    " ORDER BY code, valid_from DESC",
    "worker": "SELECT DISTINCT w.worker_id, w.name FROM worker_assignments a"
    " JOIN workers w USING (worker_id) WHERE a.grid_code LIKE %(prefix)s || '%%'"
    " AND a.valid_from < %(end)s AND (a.valid_to IS NULL OR a.valid_to > %(start)s)",
}


def _cases(conn: psycopg.Connection, period: Period, code: str) -> Iterator[CaseHistory]:
    params = {"start": period.start, "end": period.end, "prefix": code}
    with conn.cursor() as cursor:
        cursor.execute(_CASES, params)
        head: tuple[Any, ...] | None = None
        events: list[CaseEvent] = []
        for row in cursor:
            if head is None or row[0] != head[0]:
                if head is not None:
                    yield _case(head, events)
                head, events = row, []
            if row[6] is not None:
                events.append(CaseEvent(row[6], Status(row[7]), row[8], row[9], row[10]))
        if head is not None:
            yield _case(head, events)


def _case(head: tuple[Any, ...], events: list[CaseEvent]) -> CaseHistory:
    return CaseHistory(head[0], head[1], head[2], head[3], head[4], head[5], tuple(events))


def _names(
    conn: psycopg.Connection, level: Level, code: str, period: Period
) -> dict[str, str | None]:
    params = {"start": period.start, "end": period.end, "prefix": code}
    return {str(key): name for key, name in conn.execute(_AREA_NAMES[level], params)}


def _area_name(conn: psycopg.Connection, code: str, period: Period) -> str | None:
    """The name of the area `code` names (None for the city); AreaNotFound if none does."""
    level = AREA_LEVEL_BY_LENGTH.get(len(code))
    if level is None:
        raise InvalidAreaCode(f"code {code} names no area: 6, 9, 12 or 15 digits")
    if level == "city":
        return None
    params = {"start": period.start, "end": period.end, "prefix": code}
    for key, name in conn.execute(_AREA_NAMES[level], params):
        if key == code:
            return str(name)
    raise AreaNotFound(f"no {level} has the code {code}")


def _worker_names(conn: psycopg.Connection, worker_ids: list[str]) -> dict[str, str | None]:
    rows = conn.execute(
        "SELECT worker_id, name FROM workers WHERE worker_id = ANY(%s)", (worker_ids,)
    )
    return {str(worker_id): name for worker_id, name in rows}


def read_evaluation(engine: Engine, period: Period, level: Level, code: str) -> Evaluation:
    """The period's evaluation at `level` under `code` ('' for the city), in one snapshot.

    Raises InvalidAreaCode for a code that names no level of area, AreaNotFound for one
    that names no area.
    """
    with engine.connect() as connection:
        conn = _driver(connection.connection.driver_connection)
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        total_name = _area_name(conn, code, period)
        names = _names(conn, level, code, period)
        evaluation = evaluate(_cases(conn, period, code), period, level, code, names, total_name)
        if level == "worker":
            unnamed = [item.code for item in evaluation.items if item.code not in names]
            if unnamed:
                # Workers who held a case here but have no grid here: named afterwards.
                found = _worker_names(conn, unnamed)
                items = tuple(replace(i, name=found.get(i.code, i.name)) for i in evaluation.items)
                evaluation = replace(evaluation, items=items)
        connection.rollback()
    return evaluation


def _driver(connection: object) -> psycopg.Connection:
    if not isinstance(connection, psycopg.Connection):
        raise TypeError(f"the evaluation reads through psycopg 3, not {type(connection).__name__}")
    return connection


def read_stamp(engine: Engine) -> tuple[int, int]:
    """The highest ids of the incidents' history and status outbox: moved by any change."""
    with engine.connect() as connection:
        conn = _driver(connection.connection.driver_connection)
        row = conn.execute(
            "SELECT (SELECT coalesce(max(id), 0) FROM incident_events),"
            " (SELECT coalesce(max(id), 0) FROM incident_status_changes)"
        ).fetchone()
        connection.rollback()
    return (int(row[0]), int(row[1])) if row else (0, 0)


AnswerKey = tuple[Period, Level, str, str]
"""(period, level, code, form): one rendering of one evaluation."""


class EvaluationMemory:
    """Rendered answers kept while the incidents have not changed (at most `max_age_s`)."""

    def __init__(
        self, engine: Engine, *, max_age_s: float = MAX_AGE_S, size: int = KEPT_ANSWERS
    ) -> None:
        self._engine = engine
        self._kept: KeptAnswers[AnswerKey] = KeptAnswers(
            lambda: read_stamp(engine), max_age_s=max_age_s, size=size
        )

    def answer(
        self,
        period: Period,
        level: Level,
        code: str,
        form: str,
        render: Callable[[Evaluation], bytes],
    ) -> bytes:
        """`render` of the evaluation, kept or made anew (errors of `read_evaluation` pass)."""
        return self._kept.answer(
            (period, level, code, form),
            lambda: render(read_evaluation(self._engine, period, level, code)),
        )
