"""Records of the assignments and compliance topics, as the map's tests produce them."""

import json
import uuid
from typing import Any

from geodata.events import CHECKIN_EXAMPLE, INCIDENT_EXAMPLE


def checkin_assignment(grid_code: str | None, **changes: Any) -> dict[str, Any]:
    """A check-in assignment in `grid_code` (None: outside every area), fresh event id."""
    return {
        **CHECKIN_EXAMPLE,
        "event_id": str(uuid.uuid4()),
        **_codes(grid_code),
        "staff_id": CHECKIN_EXAMPLE["worker_id"],
        "in_assigned_grid": grid_code is not None,
        "assignment_rule": "contains" if grid_code else "outside_area",
        "assigned_at": "2020-09-07T09:15:01+08:00",
        **changes,
    }


def incident_assignment(grid_code: str | None, **changes: Any) -> dict[str, Any]:
    """An incident assignment in `grid_code`, fresh event and incident ids."""
    event_id = str(uuid.uuid4())
    return {
        **INCIDENT_EXAMPLE,
        "event_id": event_id,
        "incident_id": event_id,
        **_codes(grid_code),
        "staff_id": None,
        "in_assigned_grid": None,
        "assignment_rule": "contains" if grid_code else "outside_area",
        "assigned_at": "2020-09-07T10:02:01+08:00",
        **changes,
    }


def compliance_change(grid_code: str, worker_id: str = "W00042", **changes: Any) -> dict[str, Any]:
    """A worker's status change in `grid_code`, week 2020-W37."""
    return {
        "event_id": str(uuid.uuid4()),
        "worker_id": worker_id,
        "grid_code": grid_code,
        "week": "2020-W37",
        "old_status": "on_track",
        "new_status": "met",
        "counted_patrols": 3,
        "required_patrols": 3,
        "changed_at": "2020-09-09T18:00:00+08:00",
        **changes,
    }


def as_bytes(value: dict[str, Any]) -> bytes:
    """The record value: UTF-8 JSON."""
    return json.dumps(value, ensure_ascii=False).encode()


def _codes(grid_code: str | None) -> dict[str, str | None]:
    if grid_code is None:
        return dict.fromkeys(("grid_code", "community_code", "street_code", "district_code"))
    return {
        "grid_code": grid_code,
        "community_code": grid_code[:12],
        "street_code": grid_code[:9],
        "district_code": grid_code[:6],
    }
