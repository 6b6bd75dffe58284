"""The live map's incident status messages: what they hold and which supervisor gets one."""

import json
import uuid
from datetime import UTC, datetime

import pytest

from geodata.accounts import Principal, Role
from geodata.incident_status import change_value, reported_change, transition_change
from geodata.incidents import Action, Status, Transition
from geodata.live import LiveKind, StreamFilter, incident_status_message, stream_filter

GRID_X = "610302001001001"
GRID_Y = "610303002004005"
AT = datetime(2020, 9, 7, 2, 10, tzinfo=UTC)


def _dispatched(grid: str | None, community: str | None) -> bytes:
    change = transition_change(
        incident_id=uuid.UUID("5d0e2a9e-8f0a-4c59-a1c9-3f4f2b0d2c11"),
        transition=Transition(
            Action.DISPATCH, Status.REPORTED, Status.DISPATCHED, "W00042", None, "快去", 2
        ),
        actor_role=Role.SUPERVISOR,
        at=AT,
        category="environment.garbage",
        grid_code=grid,
        community_code=community,
        lon=107.149812345,
        lat=34.365234567,
    )
    return change_value(change)


def _supervisor(area: str) -> StreamFilter:
    return stream_filter(Principal(1, 1, "sup", Role.SUPERVISOR, area_prefix=area), None, None)


def test_the_message_carries_the_move_and_a_rounded_position_but_no_note() -> None:
    raw = _dispatched(GRID_X, GRID_X[:12])
    message = incident_status_message(raw)
    body = json.loads(message.data)
    assert message.kind is LiveKind.INCIDENT_STATUS
    assert message.event_id == json.loads(raw)["change_id"] == body["event_id"]
    assert message.area_code == GRID_X
    assert body == {
        "kind": "incident_status",
        "event_id": message.event_id,
        "incident_id": "5d0e2a9e-8f0a-4c59-a1c9-3f4f2b0d2c11",
        "version": 2,
        "action": "dispatch",
        "from_status": "reported",
        "to_status": "dispatched",
        "category": "environment.garbage",
        "grid_code": GRID_X,
        "community_code": GRID_X[:12],
        "assignee": "W00042",
        "escalated_to": None,
        "lon": 107.1498,
        "lat": 34.3652,
        "at": "2020-09-07T02:10:00+00:00",
    }


def test_only_the_incidents_area_and_admins_receive_its_changes() -> None:
    message = incident_status_message(_dispatched(GRID_X, GRID_X[:12]))
    assert _supervisor(GRID_X[:6]).admits(message)
    assert _supervisor(GRID_X[:12]).admits(message)
    assert not _supervisor(GRID_Y[:6]).admits(message)
    assert StreamFilter("").admits(message)
    assert not StreamFilter(GRID_X[:6], frozenset({LiveKind.INCIDENT})).admits(message)


def test_a_change_without_a_grid_is_placed_by_its_community_and_none_by_nothing() -> None:
    in_community = incident_status_message(_dispatched(None, GRID_X[:12]))
    assert in_community.area_code == GRID_X[:12]
    assert _supervisor(GRID_X[:9]).admits(in_community)
    nowhere = incident_status_message(
        change_value(
            reported_change(
                incident_id=uuid.uuid4(),
                category="other.unclassified",
                grid_code=None,
                community_code=None,
                assignee=None,
                escalated_to=None,
                lon=100.0,
                lat=30.0,
                reported_at=AT,
            )
        )
    )
    assert nowhere.area_code is None
    assert not _supervisor(GRID_X[:6]).admits(nowhere)
    assert StreamFilter("").admits(nowhere)


@pytest.mark.parametrize(
    "raw",
    [b"", b"{}", b'{"incident_id": "x"}', _dispatched(GRID_X, GRID_X[:12]).replace(b'"2', b'"x')],
)
def test_an_unreadable_record_raises_value_error(raw: bytes) -> None:
    with pytest.raises(ValueError, match="IncidentStatusChange"):
        incident_status_message(raw)
