"""What the supervisors' live map receives, and who may receive it: pure rules, no I/O.

The API reads `grid.assignments.v1`, `grid.compliance.v1` and `grid.incident-status.v1`
and turns each record into a `MapMessage`: only what a map needs (ids, grid and community
codes, a rounded position, a status), serialised once for every client. `StreamFilter`
decides which client gets which message: a supervisor what happens under its area code
prefix, an admin all.
"""

import json
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from geodata.accounts import OutsideArea, PermissionDenied, Principal, Role
from geodata.crs import to_wgs84
from geodata.errors import InvalidAreaCode, WanggeError
from geodata.events import (
    CheckInAssignment,
    IncidentAssignment,
    parse_assignment,
    parse_compliance_change,
)
from geodata.incident_status import parse_incident_status_change

POSITION_DECIMALS: Final = 4
"""Decimal places of a live position: about 10 m at Baoji's latitude, enough to put a dot
in its grid on a wall screen, and no finer than a phone's fix (a track stays coarse)."""

_CODE: Final = re.compile(r"[0-9]{1,15}")


class LiveKind(StrEnum):
    """The kinds of map message; `?types=` picks among them."""

    CHECKIN = "checkin"
    INCIDENT = "incident"
    COMPLIANCE = "compliance"
    INCIDENT_STATUS = "incident_status"


ALL_KINDS: Final = frozenset(LiveKind)


class InvalidStreamTypes(WanggeError):
    """`?types=` names a kind of map message that does not exist."""

    code = "invalid_types"


@dataclass(frozen=True, slots=True)
class MapMessage:
    """One event as the map gets it: its kind, id, where it happened and its JSON body."""

    kind: LiveKind
    event_id: str
    area_code: str | None  # the finest code the event has; None: outside every area
    data: str  # the JSON body, made once for every client


def _position(lon: float, lat: float, crs: str) -> dict[str, float]:
    # The assignment carries the input event unchanged, so a GCJ-02 fix is still offset by
    # a few hundred metres: the map draws in WGS84.
    wgs_lon, wgs_lat = to_wgs84(lon, lat, crs)
    return {
        "lon": round(float(wgs_lon), POSITION_DECIMALS),
        "lat": round(float(wgs_lat), POSITION_DECIMALS),
    }


def _message(
    kind: LiveKind, event_id: str, area_code: str | None, body: dict[str, Any]
) -> MapMessage:
    data = json.dumps({"kind": kind.value, "event_id": event_id, **body}, ensure_ascii=False)
    return MapMessage(kind, event_id, area_code, data)


def _checkin_message(event: CheckInAssignment) -> MapMessage:
    return _message(
        LiveKind.CHECKIN,
        str(event.event_id),
        event.grid_code or event.community_code,
        {
            "worker_id": event.worker_id,
            "grid_code": event.grid_code,
            "community_code": event.community_code,
            **_position(event.lon, event.lat, event.crs),
            "recorded_at": event.recorded_at.isoformat(),
            "in_assigned_grid": event.in_assigned_grid,
        },
    )


def _incident_message(event: IncidentAssignment) -> MapMessage:
    # No description and no reporter: free text may name residents, and the map needs
    # neither; the incident's page has them for whoever may read them.
    category, _unknown = event.normalized_category
    return _message(
        LiveKind.INCIDENT,
        str(event.event_id),
        event.grid_code or event.community_code,
        {
            "incident_id": str(event.incident_id),
            "category": category,
            "source": event.source,
            "grid_code": event.grid_code,
            "community_code": event.community_code,
            **_position(event.lon, event.lat, event.crs),
            "reported_at": event.reported_at.isoformat(),
        },
    )


def assignment_message(raw: bytes) -> MapMessage:
    """The map message of a `grid.assignments.v1` value; ValueError if it is malformed."""
    event = parse_assignment(raw)
    if isinstance(event, IncidentAssignment):
        return _incident_message(event)
    return _checkin_message(event)


def compliance_message(raw: bytes) -> MapMessage:
    """The map message of a `grid.compliance.v1` value; ValueError if it is malformed."""
    change = parse_compliance_change(raw)
    return _message(
        LiveKind.COMPLIANCE,
        str(change.event_id),
        change.grid_code,
        {
            "worker_id": change.worker_id,
            "grid_code": change.grid_code,
            "community_code": change.grid_code[:12],
            "week": change.week,
            "old_status": change.old_status,
            "new_status": change.new_status,
            "counted_patrols": change.counted_patrols,
            "required_patrols": change.required_patrols,
            "changed_at": change.changed_at.isoformat(),
        },
    )


def incident_status_message(raw: bytes) -> MapMessage:
    """The map message of a `grid.incident-status.v1` value; ValueError if it is malformed.

    Placed by the incident's grid, else its community, as `may_read` places the incident:
    a supervisor is streamed exactly the changes of the incidents it may read.
    """
    change = parse_incident_status_change(raw)
    return _message(
        LiveKind.INCIDENT_STATUS,
        str(change.change_id),
        change.grid_code or change.community_code,
        {
            "incident_id": str(change.incident_id),
            "version": change.version,
            "action": change.action,
            "from_status": change.from_status,
            "to_status": change.to_status,
            "category": change.category,
            "grid_code": change.grid_code,
            "community_code": change.community_code,
            "assignee": change.assignee,
            "escalated_to": change.escalated_to,
            "lon": round(change.lon, POSITION_DECIMALS),
            "lat": round(change.lat, POSITION_DECIMALS),
            "at": change.at.isoformat(),
        },
    )


@dataclass(frozen=True, slots=True)
class StreamFilter:
    """Which messages one client receives: kinds, and an area code prefix ('' for all)."""

    area_prefix: str = ""
    kinds: frozenset[LiveKind] = ALL_KINDS

    def admits(self, message: MapMessage) -> bool:
        """Whether the client gets `message`; one outside every area goes to '' only."""
        if message.kind not in self.kinds:
            return False
        if not self.area_prefix:
            return True
        return message.area_code is not None and message.area_code.startswith(self.area_prefix)


def parse_kinds(types: str | None) -> frozenset[LiveKind]:
    """The kinds a comma-separated `?types=` asks for; none given means all of them."""
    names = {name.strip() for name in (types or "").split(",") if name.strip()}
    if not names:
        return ALL_KINDS
    unknown = sorted(names - {kind.value for kind in LiveKind})
    if unknown:
        known = ", ".join(kind.value for kind in LiveKind)
        raise InvalidStreamTypes(f"unknown types {', '.join(unknown)}; known: {known}")
    return frozenset(LiveKind(name) for name in names)


def stream_filter(principal: Principal, code: str | None, types: str | None) -> StreamFilter:
    """The filter of a caller's stream; raises for workers and codes outside its area.

    `code` narrows the stream to a prefix inside the caller's own area (a supervisor's
    prefix, the whole city for an admin); a malformed code is `invalid_code` for everyone.
    """
    if code and _CODE.fullmatch(code) is None:
        raise InvalidAreaCode(f"a code is 1 to 15 digits, got {code!r}")
    if principal.role is Role.WORKER:
        raise PermissionDenied("the live stream is for supervisors and admins")
    kinds = parse_kinds(types)
    if principal.role is Role.ADMIN:
        return StreamFilter(code or "", kinds)
    own = principal.area_prefix or ""
    if code and not code.startswith(own):
        raise OutsideArea(f"{code} is outside the area {own}")
    return StreamFilter(code or own, kinds)
