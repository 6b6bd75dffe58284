"""Incident reports of the simulated week, and the few malformed messages phones send.

Incidents come at a city-wide rate (a few hundred a day, mostly in working hours), from
workers on their walks and from residents, the hotline, lockers and sensors, with a
category mix weighted towards what grid workers report most. Malformed messages cover
each refusal reason once before repeating.
"""

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from geodata.categories import CATEGORIES, CATEGORY_NAMES_ZH
from geodata.compliance import IsoWeek
from wangge.simulation.phones import FixTable
from wangge.simulation.plan import SimulationConfig, WorkerPlan
from wangge.simulation.walks import FixQuality

# Share of reports by event class (GB/T 30428's classes as CATEGORIES names them).
_CLASS_WEIGHTS: Final = {
    "environment": 0.34,
    "street_order": 0.25,
    "public_facilities": 0.20,
    "construction": 0.08,
    "advertising": 0.08,
    "emergency": 0.02,
    "other": 0.02,
}
_SOURCES: Final = (("worker", 0.45), ("resident", 0.2), ("hotline", 0.2), ("sensor", 0.1))
_SOURCES_LOCKER: Final = ("locker", 0.05)
_UNKNOWN_SHARE: Final = 0.01  # codes from an old system: accepted as other.unclassified
_UNKNOWN_CODES: Final = ("environment.graffiti", "public_facilities.bench", "misc")
# Hour-of-day weights: little at night, peaks mid-morning and mid-afternoon.
_HOURLY: Final = np.array(
    [1, 1, 1, 1, 1, 2, 4, 8, 12, 14, 14, 12, 9, 10, 13, 14, 13, 11, 9, 7, 5, 4, 2, 1], dtype=float
)


@dataclass(frozen=True)
class Message:
    """One message for the broker, not yet on a topic: which stream, when, key, value."""

    stream: str  # "checkins" or "incidents"
    send_s: float
    key: bytes
    value: bytes
    event_id: str
    event_time: str


def _category(rng: np.random.Generator) -> str:
    if rng.random() < _UNKNOWN_SHARE:
        return str(rng.choice(_UNKNOWN_CODES))
    classes = list(_CLASS_WEIGHTS)
    weights = np.array(list(_CLASS_WEIGHTS.values()))
    chosen = classes[int(rng.choice(len(classes), p=weights / weights.sum()))]
    return str(rng.choice([c for c in CATEGORIES if c.startswith(chosen + ".")]))


def _point_in(geometry: BaseGeometry, rng: np.random.Generator) -> tuple[float, float]:
    x0, y0, x1, y1 = geometry.bounds
    while True:
        x, y = rng.uniform(x0, x1), rng.uniform(y0, y1)
        if shapely.contains_xy(geometry, x, y):
            return round(float(x), 7), round(float(y), 7)


def incidents(
    week: IsoWeek,
    plans: list[WorkerPlan],
    fixes: FixTable,
    grids: dict[str, BaseGeometry],
    share_of_city: float,
    config: SimulationConfig,
    rng: np.random.Generator,
) -> list[Message]:
    """The week's incident reports; `share_of_city` scales the rate to a subset of workers."""
    tz = config.compliance.tz
    codes = sorted(grids)
    on_walks = np.flatnonzero((fixes.walk >= 0) & (fixes.quality == FixQuality.GOOD))
    sources = [*_SOURCES, _SOURCES_LOCKER]
    weights = np.array([w for _, w in sources])
    messages = []
    for day in range(7):
        count = int(rng.poisson(config.incidents_per_day * share_of_city))
        hours = rng.choice(24, size=count, p=_HOURLY / _HOURLY.sum())
        for hour in hours.tolist():
            at = week.start(tz) + timedelta(
                days=day, hours=hour, seconds=float(rng.uniform(0, 3600))
            )
            source = sources[int(rng.choice(len(sources), p=weights / weights.sum()))][0]
            reporter = None
            crs = "EPSG:4326"
            if source == "worker" and len(on_walks):
                # A worker reports what they see on a walk: where and when they were.
                row = int(rng.choice(on_walks))
                plan = plans[int(fixes.worker[row])]
                reporter, crs = plan.worker.worker_id, plan.phone.crs
                lon, lat = float(fixes.lon[row]), float(fixes.lat[row])
                at = datetime.fromtimestamp(int(fixes.recorded_s[row]), tz) + timedelta(
                    seconds=int(rng.integers(5, 120))
                )
            else:
                source = "resident" if source == "worker" else source
                lon, lat = _point_in(grids[codes[int(rng.integers(len(codes)))]], rng)
            at = at.replace(microsecond=0)
            category = _category(rng)
            incident_id = str(uuid.UUID(bytes=rng.bytes(16), version=4))
            body: dict[str, object] = {
                "event_id": incident_id,
                "incident_id": incident_id,
                "category": category,
                "description": CATEGORY_NAMES_ZH.get(category, "其他事件"),
                "lon": lon,
                "lat": lat,
                "reported_at": at.isoformat(),
                "source": source,
            }
            if reporter is not None:
                body["reporter_id"] = reporter
            if crs != "EPSG:4326":
                body["crs"] = crs
            messages.append(
                Message(
                    stream="incidents",
                    send_s=at.timestamp() + float(rng.uniform(1.0, 30.0)),
                    key=incident_id.encode(),
                    value=json.dumps(body, ensure_ascii=False).encode(),
                    event_id=incident_id,
                    event_time=at.isoformat(),
                )
            )
    return messages


MALFORMED_KINDS: Final = (
    "invalid_json",
    "missing_field",
    "coordinate_out_of_range",
    "null_island",
    "unknown_worker",
    "invalid_field",
    "unsupported_crs",
    "future_timestamp",
)
"""What is wrong with each malformed check-in, in the order they are made."""


def malformed(
    week: IsoWeek,
    plans: list[WorkerPlan],
    unknown_worker: str,
    count: int,
    config: SimulationConfig,
    rng: np.random.Generator,
) -> list[Message]:
    """`count` broken check-ins spread over the week; each refusal reason in turn."""
    tz = config.compliance.tz
    start = week.start(tz)
    messages = []
    for i in range(count):
        kind = MALFORMED_KINDS[i % len(MALFORMED_KINDS)]
        at = start + timedelta(seconds=int(rng.integers(0, 7 * 86400)))
        worker = plans[int(rng.integers(len(plans)))].worker.worker_id if plans else "W00001"
        event_id = str(uuid.UUID(bytes=rng.bytes(16), version=4))
        body: dict[str, object] = {
            "event_id": event_id,
            "worker_id": worker,
            "lon": 107.15,
            "lat": 34.37,
            "recorded_at": at.isoformat(),
            "accuracy_m": 10.0,
        }
        if kind == "missing_field":
            del body["recorded_at"]
        elif kind == "coordinate_out_of_range":
            body["lat"] = 134.37
        elif kind == "null_island":
            body["lon"], body["lat"] = 0.0, 0.0
        elif kind == "unknown_worker":
            body["worker_id"] = unknown_worker
        elif kind == "invalid_field":
            body["lon"] = "107.15"
        elif kind == "unsupported_crs":
            body["crs"] = "EPSG:3857"
        elif kind == "future_timestamp":
            body["recorded_at"] = datetime(2099, 1, 1, tzinfo=UTC).isoformat()
        value = json.dumps(body).encode()
        if kind == "invalid_json":
            value = value[: len(value) // 2]  # a connection cut mid-upload
        messages.append(
            Message(
                "checkins", at.timestamp() + 1.0, worker.encode(), value, event_id, at.isoformat()
            )
        )
    return messages
