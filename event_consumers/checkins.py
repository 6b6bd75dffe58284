"""Check-ins: decode, assign to a grid (vectorised), flag, store, republish."""

import json
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt
import psycopg

from event_consumers import metrics
from event_consumers.boundaries import BoundaryCache
from event_consumers.records import Headers, InboundRecord, OutboundRecord, dead_letter
from geodata.contract import Topics
from geodata.crs import to_wgs84
from geodata.db import event_store
from geodata.events import (
    ASSIGNMENT_FIELDS,
    DEFAULT_TIME_LIMITS,
    CheckIn,
    EventRefused,
    EventTimeLimits,
    RefusalReason,
    parse_checkin,
)
from geodata.hierarchy import lineage_of
from geodata.quality import (
    EARTH_RADIUS_M,
    IMPLAUSIBLE_SPEED,
    LOW_ACCURACY,
    MAX_ACCURACY_M,
    MAX_SPEED_KMH,
    Fix,
    implied_speed_kmh,
)
from geodata.spatial_index import to_epoch_us

logger = logging.getLogger(__name__)

CHECKIN_ASSIGNMENT_TYPE = "wangge.assignment.checkin.v1"
# Speeds this close to the limit are recomputed with the scalar rule, so that numpy's
# and libm's last-bit differences can never flip a flag.
_SPEED_RECHECK_REL = 1e-9

FloatArray = npt.NDArray[np.float64]


def assignment_record(
    raw: dict[str, object],
    *,
    topic: str,
    grid_code: str | None,
    staff_id: str | None,
    in_assigned_grid: bool | None,
    rule: str,
    flags: list[str],
    assigned_at: str,
    ce_type: str,
    extra: dict[str, object] | None = None,
) -> OutboundRecord:
    """The input event unchanged plus where and to whom it was assigned (EVENTS.md)."""
    lineage = lineage_of(grid_code) if grid_code else None
    body = {
        **raw,
        "grid_code": grid_code,
        "community_code": lineage.community_code if lineage else None,
        "street_code": lineage.street_code if lineage else None,
        "district_code": lineage.district_code if lineage else None,
        "staff_id": staff_id,
        "in_assigned_grid": in_assigned_grid,
        "assignment_rule": rule,
        "assigned_at": assigned_at,
        "flags": flags,
        **(extra or {}),
    }
    event_id = str(raw.get("event_id", ""))
    return OutboundRecord(
        topic=topic,
        key=grid_code.encode() if grid_code else None,
        value=_json(body),
        headers=_ce_headers(event_id, ce_type, assigned_at),
    )


def _json(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def _ce_headers(event_id: str, ce_type: str, assigned_at: str) -> Headers:
    return [
        ("ce_specversion", b"1.0"),
        ("ce_id", event_id.encode()),
        ("ce_source", b"wangge/consumers"),
        ("ce_type", ce_type.encode()),
        ("ce_time", assigned_at.encode()),
    ]


@dataclass(frozen=True)
class PreparedCheckins:
    """A decoded, assigned and formatted batch, waiting to be written."""

    refused: list[OutboundRecord]
    duplicates: int
    rows: str
    #: (event id, rule, flags) of each accepted check-in, in input order.
    accepted: list[tuple[str, str, list[str]]]
    #: Its assignment, produced only if the row turns out to be new.
    assignments: list[OutboundRecord]


class CheckinHandler:
    """Assigns every check-in to its grid; the poster is its staff member."""

    def __init__(
        self,
        boundaries: BoundaryCache,
        topics: Topics,
        max_bytes: int = 64 * 1024,
        limits: EventTimeLimits = DEFAULT_TIME_LIMITS,
    ) -> None:
        self.topic = topics.checkins
        self.topics = topics
        self.boundaries = boundaries
        self.max_bytes = max_bytes
        self.limits = limits
        # Last fix per worker seen by this process; a miss is loaded from the database.
        self._last_fix: dict[str, Fix] = {}
        # JSON fragments of the assignment fields that repeat across events.
        self._lineage_json: dict[str | None, bytes] = {}
        self._staff_json: dict[str, bytes] = {}

    def reset(self) -> None:
        """Forget per-process state after a rolled-back batch."""
        self._last_fix.clear()

    def handle(
        self, records: Sequence[InboundRecord], conn: psycopg.Connection, now: datetime
    ) -> list[OutboundRecord]:
        """Store the batch's valid check-ins once each and return what to produce."""
        return self.write(self.prepare(records, conn, now), conn)

    def prepare(
        self, records: Sequence[InboundRecord], conn: psycopg.Connection, now: datetime
    ) -> "PreparedCheckins":
        """Decode, refuse, assign, flag and format a batch: all but the writing.

        `conn` is only read from, so the runner may prepare the next batch while the
        previous one is written on another connection.
        """
        self.boundaries.refresh_if_changed(conn)
        roster = self.boundaries.roster
        refused: list[OutboundRecord] = []
        accepted: list[InboundRecord] = []
        checkins: list[CheckIn] = []
        seen: set[object] = set()
        duplicates = 0
        for record in records:
            try:
                checkin = parse_checkin(
                    record.value or b"", now=now, max_bytes=self.max_bytes, limits=self.limits
                )
            except EventRefused as refusal:
                self._refuse(record, refusal.reason, refusal.detail, refused)
                continue
            if not roster.is_known(checkin.worker_id):
                detail = f"no worker {checkin.worker_id}"
                self._refuse(record, RefusalReason.UNKNOWN_WORKER, detail, refused)
                continue
            if checkin.event_id in seen:
                duplicates += 1
                continue
            seen.add(checkin.event_id)
            accepted.append(record)
            checkins.append(checkin)
        if not checkins:
            return PreparedCheckins(refused, duplicates, "", [], [])

        n = len(checkins)
        lon, lat = self._wgs84(checkins)
        at_us = np.fromiter((to_epoch_us(c.recorded_at) for c in checkins), np.int64, n)
        located = self.boundaries.index.locate(lon, lat, at_us.astype("datetime64[us]"))
        flags = self._flags(checkins, lon, lat, at_us, conn)
        codes: list[str | None] = located.codes.tolist()
        batch = event_store.CheckinBatch(
            event_ids=[str(c.event_id) for c in checkins],
            worker_ids=[c.worker_id for c in checkins],
            recorded_at=[c.recorded_at for c in checkins],
            lon=[c.lon for c in checkins],
            lat=[c.lat for c in checkins],
            crs=[c.crs for c in checkins],
            accuracy_m=[c.accuracy_m for c in checkins],
            wgs_lon=lon.tolist(),
            wgs_lat=lat.tolist(),
            grid_codes=codes,
            in_assigned_grid=[
                roster.is_assigned(c.worker_id, code, c.recorded_at)
                for c, code in zip(checkins, codes, strict=True)
            ],
            assignment_rules=[str(rule) for rule in located.rules.tolist()],
            flags=flags,
        )
        return PreparedCheckins(
            refused,
            duplicates,
            event_store.format_checkins(batch),
            list(zip(batch.event_ids, batch.assignment_rules, flags, strict=True)),
            self._assignments(accepted, checkins, batch),
        )

    def write(self, prepared: "PreparedCheckins", conn: psycopg.Connection) -> list[OutboundRecord]:
        """Store a prepared batch in the caller's transaction; return what to produce."""
        new_ids = event_store.insert_formatted_checkins(conn, prepared.rows)
        stored = len(prepared.accepted)
        metrics.EVENTS_DUPLICATE.labels(self.topic).inc(prepared.duplicates + stored - len(new_ids))
        outgoing = list(prepared.refused)
        by_rule: Counter[str] = Counter()
        by_flag: Counter[str] = Counter()
        for (event_id, rule, flags), assignment in zip(
            prepared.accepted, prepared.assignments, strict=True
        ):
            if event_id in new_ids:
                outgoing.append(assignment)
                by_rule[rule] += 1
                for flag in flags:
                    by_flag[flag] += 1
        for rule, count in by_rule.items():
            metrics.EVENTS_ASSIGNED.labels(self.topic, rule).inc(count)
        for flag, count in by_flag.items():
            metrics.EVENTS_FLAGGED.labels(self.topic, flag).inc(count)
        return outgoing

    def _refuse(
        self, record: InboundRecord, reason: str, detail: str, outgoing: list[OutboundRecord]
    ) -> None:
        outgoing.append(dead_letter(record, reason, detail, self.topics.deadletter))
        metrics.EVENTS_REFUSED.labels(self.topic, reason).inc()

    def _assignments(
        self,
        accepted: list[InboundRecord],
        checkins: list[CheckIn],
        batch: event_store.CheckinBatch,
    ) -> list[OutboundRecord]:
        """The assignment of each accepted check-in, in input order."""
        assigned_at = datetime.now(UTC).isoformat()
        topic = self.topics.assignments
        tail = b',"assigned_at":' + _json(assigned_at) + b',"flags":'
        out: list[OutboundRecord] = []
        for i, event_id in enumerate(batch.event_ids):
            code, rule, flags = batch.grid_codes[i], batch.assignment_rules[i], batch.flags[i]
            raw = (accepted[i].value or b"").rstrip()
            extras = checkins[i].model_extra
            if not raw.endswith(b"}") or (
                extras and not extras.keys().isdisjoint(ASSIGNMENT_FIELDS)
            ):
                # An extra field named like an assignment field: let the dict merge decide.
                out.append(self._merged(raw, checkins[i], batch, i, assigned_at))
                continue
            # The input event's own bytes, unchanged, with the assignment fields appended:
            # no second JSON decode and encode of the event.
            value = b"".join(
                (
                    raw[:-1],
                    self._lineage_fragment(code),
                    self._staff_fragment(batch.worker_ids[i]),
                    b"true," if batch.in_assigned_grid[i] else b"false,",
                    b'"assignment_rule":"',
                    rule.encode(),
                    b'"',
                    tail,
                    _json(flags) if flags else b"[]",
                    b"}",
                )
            )
            out.append(
                OutboundRecord(
                    topic=topic,
                    key=code.encode() if code else None,
                    value=value,
                    headers=_ce_headers(event_id, CHECKIN_ASSIGNMENT_TYPE, assigned_at),
                )
            )
        return out

    def _merged(
        self, raw: bytes, checkin: CheckIn, batch: event_store.CheckinBatch, i: int, at: str
    ) -> OutboundRecord:
        return assignment_record(
            json.loads(raw),
            topic=self.topics.assignments,
            grid_code=batch.grid_codes[i],
            staff_id=checkin.worker_id,
            in_assigned_grid=batch.in_assigned_grid[i],
            rule=batch.assignment_rules[i],
            flags=list(batch.flags[i]),
            assigned_at=at,
            ce_type=CHECKIN_ASSIGNMENT_TYPE,
        )

    def _lineage_fragment(self, code: str | None) -> bytes:
        """`,"grid_code":…,"district_code":…` for a grid (cached: a few thousand grids)."""
        fragment = self._lineage_json.get(code)
        if fragment is None:
            lineage = lineage_of(code) if code else None
            fields = {
                "grid_code": code,
                "community_code": lineage.community_code if lineage else None,
                "street_code": lineage.street_code if lineage else None,
                "district_code": lineage.district_code if lineage else None,
            }
            fragment = b"," + _json(fields)[1:-1]
            self._lineage_json[code] = fragment
        return fragment

    def _staff_fragment(self, worker_id: str) -> bytes:
        """`,"staff_id":…,"in_assigned_grid":` for a worker (cached per worker)."""
        fragment = self._staff_json.get(worker_id)
        if fragment is None:
            fragment = b',"staff_id":' + _json(worker_id) + b',"in_assigned_grid":'
            self._staff_json[worker_id] = fragment
        return fragment

    @staticmethod
    def _wgs84(checkins: list[CheckIn]) -> tuple[FloatArray, FloatArray]:
        lon = np.fromiter((c.lon for c in checkins), dtype=float, count=len(checkins))
        lat = np.fromiter((c.lat for c in checkins), dtype=float, count=len(checkins))
        crs = np.array([c.crs for c in checkins], dtype=object)
        for name in set(crs.tolist()) - {"EPSG:4326", "EPSG:4490"}:
            mask = crs == name
            lon[mask], lat[mask] = to_wgs84(lon[mask], lat[mask], name)
        return lon, lat

    def _flags(
        self,
        checkins: list[CheckIn],
        lon: FloatArray,
        lat: FloatArray,
        at_us: npt.NDArray[np.int64],
        conn: psycopg.Connection,
    ) -> list[list[str]]:
        """Accuracy and speed flags (quality.quality_flags, vectorised over the batch).

        Fixes are taken in event-time order; each is compared with the worker's previous
        one: the newest seen so far, from this batch or from before it.
        """
        workers = [c.worker_id for c in checkins]
        missing = set(workers) - self._last_fix.keys()
        if missing:
            self._last_fix.update(event_store.last_fixes(conn, missing))
        n = len(checkins)
        accuracy = np.fromiter(
            (np.nan if c.accuracy_m is None else c.accuracy_m for c in checkins), float, n
        )
        worker_rank = np.unique(np.array(workers, dtype=object), return_inverse=True)[1]
        by_time = np.argsort(at_us, kind="stable")
        order = by_time[np.argsort(worker_rank[by_time], kind="stable")]
        w, t, x, y = worker_rank[order], at_us[order], lon[order], lat[order]
        first = np.ones(n, dtype=bool)
        first[1:] = w[1:] != w[:-1]

        cached = [self._last_fix.get(workers[i]) for i in order.tolist()]
        has_cached = np.array([fix is not None for fix in cached], dtype=bool)
        cached_t = np.array([to_epoch_us(f.recorded_at) if f else 0 for f in cached], np.int64)
        cached_x = np.array([f.lon if f else np.nan for f in cached], float)
        cached_y = np.array([f.lat if f else np.nan for f in cached], float)
        prev_t, prev_x, prev_y = np.roll(t, 1), np.roll(x, 1), np.roll(y, 1)
        # The previous batch fix replaced the stored one only if it was not older.
        from_batch = ~first & (~has_cached | (prev_t >= cached_t))
        has_prev = from_batch | has_cached
        prev_t = np.where(from_batch, prev_t, cached_t)
        prev_x = np.where(from_batch, prev_x, cached_x)
        prev_y = np.where(from_batch, prev_y, cached_y)

        speed = _speeds_kmh(prev_t, prev_x, prev_y, t, x, y)
        near = has_prev & (np.abs(speed - MAX_SPEED_KMH) <= _SPEED_RECHECK_REL * MAX_SPEED_KMH)
        for j in np.flatnonzero(near).tolist():
            i = int(order[j])
            previous = self._previous_fix(
                cached[j], bool(from_batch[j]), checkins, order, j, lon, lat
            )
            current = Fix(checkins[i].recorded_at, float(lon[i]), float(lat[i]))
            speed[j] = implied_speed_kmh(previous, current)
        fast = np.zeros(n, dtype=bool)
        fast[order] = has_prev & (speed > MAX_SPEED_KMH)
        low = accuracy > MAX_ACCURACY_M

        last = np.ones(n, dtype=bool)
        last[:-1] = w[:-1] != w[1:]
        for j in np.flatnonzero(last & (~has_cached | (t >= cached_t))).tolist():
            i = int(order[j])
            self._last_fix[workers[i]] = Fix(checkins[i].recorded_at, float(lon[i]), float(lat[i]))
        return [
            [LOW_ACCURACY, IMPLAUSIBLE_SPEED]
            if lo and fa
            else [LOW_ACCURACY]
            if lo
            else [IMPLAUSIBLE_SPEED]
            if fa
            else []
            for lo, fa in zip(low.tolist(), fast.tolist(), strict=True)
        ]

    @staticmethod
    def _previous_fix(
        cached: Fix | None,
        from_batch: bool,
        checkins: list[CheckIn],
        order: npt.NDArray[np.intp],
        j: int,
        lon: FloatArray,
        lat: FloatArray,
    ) -> Fix:
        if not from_batch:
            assert cached is not None
            return cached
        k = int(order[j - 1])
        return Fix(checkins[k].recorded_at, float(lon[k]), float(lat[k]))


def _speeds_kmh(
    t0: npt.NDArray[np.int64],
    x0: FloatArray,
    y0: FloatArray,
    t1: npt.NDArray[np.int64],
    x1: FloatArray,
    y1: FloatArray,
) -> FloatArray:
    """quality.implied_speed_kmh over arrays: haversine metres over |Δt|, km/h."""
    phi0, phi1 = np.radians(y0), np.radians(y1)
    h = (
        np.sin((phi1 - phi0) / 2) ** 2
        + np.cos(phi0) * np.cos(phi1) * np.sin(np.radians(x1 - x0) / 2) ** 2
    )
    metres = 2 * EARTH_RADIUS_M * np.arcsin(np.minimum(1.0, np.sqrt(h)))
    seconds = np.abs(t1 - t0) / 1e6
    with np.errstate(divide="ignore", invalid="ignore"):
        speed = metres / seconds * 3.6
    speed[seconds == 0] = np.where(metres[seconds == 0] == 0, 0.0, np.inf)
    return np.where(np.isnan(x0), 0.0, speed)
