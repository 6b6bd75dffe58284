"""Probable duplicates in PostGIS: find the open cases a report repeats, link, settle links.

The rule is `geodata.duplicates`; this module runs it as one indexed query: the GiST
index on `incidents.geom` narrows to a box (`search_box_degrees`), then geography's
`ST_DWithin` measures on the ellipsoid. Functions take a psycopg connection inside the
caller's transaction and never commit.
"""

import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

import psycopg

from geodata.duplicates import DuplicateRule, search_box_degrees


@dataclass(frozen=True, slots=True)
class ProbableOriginal:
    """An open case a report probably repeats, and how far from the report it lies."""

    incident_id: uuid.UUID
    status: str
    category: str
    reported_at: datetime
    distance_m: float


_ORIGINALS_SQL = """
SELECT incident_id, status, category, reported_at,
       ST_Distance(geom::geography, q.p::geography) AS distance_m
FROM incidents, (SELECT ST_SetSRID(ST_MakePoint(%(lon)s, %(lat)s), 4326) AS p) AS q
WHERE category = %(category)s
  AND status NOT IN ('closed', 'cancelled')
  AND duplicate_of IS NULL
  AND incident_id <> ALL(%(excluded)s)
  AND reported_at BETWEEN %(at)s - %(window)s AND %(at)s + %(window)s
  AND geom && ST_Expand(q.p, %(dlon)s, %(dlat)s)
  AND ST_DWithin(geom::geography, q.p::geography, %(radius)s)
ORDER BY distance_m, reported_at, incident_id
LIMIT %(limit)s
"""


def probable_originals(
    conn: psycopg.Connection,
    rule: DuplicateRule,
    *,
    category: str,
    lon: float,
    lat: float,
    reported_at: datetime,
    excluded: Collection[uuid.UUID] = (),
    limit: int = 1,
) -> list[ProbableOriginal]:
    """The open cases of `category` within the rule's radius and window of a report at
    (`lon`, `lat`) WGS84, nearest first; none already linked as a duplicate."""
    dlon, dlat = search_box_degrees(rule.radius_m, lat)
    rows = conn.execute(
        _ORIGINALS_SQL,
        {
            "lon": lon,
            "lat": lat,
            "category": category,
            "excluded": list(excluded),
            "at": reported_at,
            "window": rule.window,
            "dlon": dlon,
            "dlat": dlat,
            "radius": rule.radius_m,
            "limit": limit,
        },
    ).fetchall()
    return [ProbableOriginal(*row) for row in rows]


@dataclass(frozen=True, slots=True)
class FiledReport:
    """A report just filed, as the linking needs it."""

    incident_id: uuid.UUID
    category: str
    lon: float
    lat: float
    reported_at: datetime


def link_filed_reports(
    conn: psycopg.Connection, rule: DuplicateRule, reports: Sequence[FiledReport]
) -> dict[uuid.UUID, ProbableOriginal]:
    """Link each report just filed to its nearest probable original; the links made.

    The reports are stored already (this transaction), so a batch's reports of one place
    find each other: taken in order of report time, a report is never linked to one of
    the batch reported after it, and one linked is never an original.
    """
    ordered = sorted(reports, key=lambda report: (report.reported_at, report.incident_id))
    later = {report.incident_id for report in ordered}
    links: dict[uuid.UUID, ProbableOriginal] = {}
    for report in ordered:
        later.discard(report.incident_id)
        found = probable_originals(
            conn,
            rule,
            category=report.category,
            lon=report.lon,
            lat=report.lat,
            reported_at=report.reported_at,
            excluded=[report.incident_id, *later],
        )
        if not found:
            continue
        original = found[0]
        conn.execute(
            "UPDATE incidents SET duplicate_of = %s, duplicate_distance_m = %s"
            " WHERE incident_id = %s",
            (original.incident_id, original.distance_m, report.incident_id),
        )
        links[report.incident_id] = original
    return links


def confirm_link(conn: psycopg.Connection, incident_id: uuid.UUID) -> None:
    """The supervisor confirmed the report a duplicate: its link stays, marked confirmed."""
    conn.execute(
        "UPDATE incidents SET duplicate_confirmed = true WHERE incident_id = %s", (incident_id,)
    )


def remove_link(conn: psycopg.Connection, incident_id: uuid.UUID) -> None:
    """The supervisor split the report from its probable original: the link goes."""
    conn.execute(
        "UPDATE incidents SET duplicate_of = NULL, duplicate_distance_m = NULL,"
        " duplicate_confirmed = false WHERE incident_id = %s",
        (incident_id,),
    )


@dataclass(frozen=True, slots=True)
class Follower:
    """A report confirmed a duplicate of an original: its id, and its reporter when a worker."""

    incident_id: uuid.UUID
    worker_id: str | None


def followers_of(conn: psycopg.Connection, original_id: uuid.UUID) -> list[Follower]:
    """The reports confirmed duplicates of `original_id`, oldest report first."""
    rows = conn.execute(
        "SELECT incident_id, CASE WHEN source = 'worker' THEN reporter_id END FROM incidents"
        " WHERE duplicate_of = %s AND duplicate_confirmed ORDER BY reported_at, incident_id",
        (original_id,),
    ).fetchall()
    return [Follower(*row) for row in rows]
