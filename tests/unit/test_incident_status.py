"""Incident status changes: the model agrees with the workflow, and its records with the
published contract (docs/asyncapi.yaml, read as an outside reader reads it)."""

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, get_args

import jsonschema
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from geodata.accounts import Role
from geodata.contract import Topics
from geodata.incident_status import (
    INCIDENT_STATUS_CE_TYPE,
    INCIDENT_STATUS_EXAMPLE,
    ActionName,
    ActorRole,
    IncidentStatusChange,
    StatusName,
    change_value,
    incident_status_record,
    parse_incident_status_change,
    reported_change,
    transition_change,
)
from geodata.incidents import TRANSITIONS, Action, Status, Transition

ASYNCAPI = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.yaml"
TOPIC = "grid.incident-status.v1"
GRID = "610302001001003"


def _validator() -> jsonschema.Draft202012Validator:
    document = yaml.safe_load(ASYNCAPI.read_text(encoding="utf-8"))
    message = document["components"]["messages"]["IncidentStatusChange"]
    ref = message["payload"]["$ref"]
    schema = {"$ref": ref, "components": document["components"]}
    return jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.FormatChecker(["uuid"])
    )


VALIDATOR = _validator()


def test_the_literals_name_exactly_the_workflows_statuses_actions_and_roles() -> None:
    assert set(get_args(StatusName)) == {s.value for s in Status}
    assert set(get_args(ActionName)) == {a.value for a in Action} | {"report", "overdue"}
    assert set(get_args(ActorRole)) == {r.value for r in Role} | {"system"}


def test_the_documented_example_is_a_valid_change() -> None:
    assert not list(VALIDATOR.iter_errors(INCIDENT_STATUS_EXAMPLE))
    change = parse_incident_status_change(json.dumps(INCIDENT_STATUS_EXAMPLE).encode())
    assert str(change.change_id) == INCIDENT_STATUS_EXAMPLE["change_id"]


def _filing(**changes: Any) -> IncidentStatusChange:
    arguments: dict[str, Any] = {
        "incident_id": uuid.uuid4(),
        "category": "environment.garbage",
        "grid_code": GRID,
        "community_code": GRID[:12],
        "assignee": "W00042",
        "escalated_to": None,
        "lon": 107.1498,
        "lat": 34.3652,
        "reported_at": datetime(2020, 9, 7, 10, 2, tzinfo=timezone(timedelta(hours=8))),
    }
    return reported_change(**(arguments | changes))


def test_a_filing_is_version_one_reported_by_the_platform_at_the_reports_time() -> None:
    change = _filing()
    assert (change.version, change.action, change.from_status, change.to_status) == (
        1,
        "report",
        None,
        "reported",
    )
    assert change.actor_role == "system"
    assert change.at == datetime(2020, 9, 7, 2, 2, tzinfo=UTC)


def test_the_record_is_keyed_by_incident_with_the_change_id_as_ce_id() -> None:
    change = _filing()
    record = incident_status_record(TOPIC, change_value(change))
    headers = {name: value.decode() for name, value in record.headers}
    assert record.topic == TOPIC
    assert record.key == str(change.incident_id).encode()
    assert headers["ce_id"] == str(change.change_id)
    assert headers["ce_type"] == INCIDENT_STATUS_CE_TYPE
    assert headers["ce_time"] == "2020-09-07T02:02:00+00:00"
    assert parse_incident_status_change(record.value) == change


def test_a_filing_outside_every_grid_has_null_codes_and_still_validates() -> None:
    change = _filing(grid_code=None, community_code=None, assignee=None)
    body = json.loads(change_value(change))
    assert body["grid_code"] is None
    assert not list(VALIDATOR.iter_errors(body))


def test_the_value_is_refused_by_the_schema_when_a_required_field_is_missing() -> None:
    # The check below would pass vacuously on a schema that accepts anything.
    body = json.loads(change_value(_filing()))
    del body["version"]
    assert list(VALIDATOR.iter_errors(body))
    assert list(VALIDATOR.iter_errors({**json.loads(change_value(_filing())), "action": "x"}))


_ROLES = st.sampled_from([Role.WORKER, Role.SUPERVISOR, Role.ADMIN])


@given(
    action=st.sampled_from(list(Action)),
    role=_ROLES,
    version=st.integers(2, 2**31 - 1),
    assignee=st.one_of(st.none(), st.from_regex(r"W[0-9]{5}", fullmatch=True)),
    escalated_to=st.sampled_from([None, GRID[:9], GRID[:6]]),
    seconds=st.integers(0, 2_000_000_000),
    note=st.one_of(st.none(), st.text(max_size=50)),
)
def test_every_transition_makes_a_change_the_contract_accepts(
    action: Action,
    role: Role,
    version: int,
    assignee: str | None,
    escalated_to: str | None,
    seconds: int,
    note: str | None,
) -> None:
    rule = TRANSITIONS[action]
    source = sorted(rule.sources)[0]
    target = rule.target or source  # a split keeps the status
    at = datetime(2000, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds)
    change = transition_change(
        incident_id=uuid.uuid4(),
        transition=Transition(action, source, target, assignee, escalated_to, note, version),
        actor_role=role,
        at=at,
        category="street_order.illegal_parking",
        grid_code=GRID,
        community_code=GRID[:12],
        lon=107.15,
        lat=34.37,
    )
    value = change_value(change)
    body = json.loads(value)
    errors = list(VALIDATOR.iter_errors(body))
    assert not errors, errors[0].message
    assert (body["action"], body["to_status"], body["version"]) == (
        action.value,
        target.value,
        version,
    )
    # The note is free text (it may name a resident): it never leaves the database.
    assert "note" not in body
    assert parse_incident_status_change(value) == change


def test_a_reader_of_this_version_accepts_fields_a_later_one_adds() -> None:
    body = {**json.loads(change_value(_filing())), "rework_count": 0, "period": None}
    assert not list(VALIDATOR.iter_errors(body))
    assert parse_incident_status_change(json.dumps(body).encode()).model_extra == {
        "rework_count": 0,
        "period": None,
    }


def test_a_change_carries_its_due_time_in_utc_and_the_overdue_flag() -> None:
    due = datetime(2020, 9, 8, 10, 59, tzinfo=timezone(timedelta(hours=8)))
    body = json.loads(change_value(_filing(due_at=due)))
    assert body["due_at"] == "2020-09-08T02:59:00+00:00"
    assert body["overdue"] is False
    assert not list(VALIDATOR.iter_errors(body))
    assert not list(VALIDATOR.iter_errors({**body, "action": "overdue", "overdue": True}))
    assert list(VALIDATOR.iter_errors({**body, "overdue": "yes"}))


@pytest.mark.parametrize("field", ["version", "to_status", "at", "lon"])
def test_a_malformed_change_is_refused_by_the_model(field: str) -> None:
    body = {**json.loads(change_value(_filing())), field: "nonsense"}
    with pytest.raises(ValidationError, match=field):
        parse_incident_status_change(json.dumps(body).encode())


def test_the_topic_is_one_of_the_contracts_under_any_namespace() -> None:
    assert Topics().incident_status == TOPIC
    assert Topics.under("t1.").incident_status == "t1." + TOPIC
    assert "t1." + TOPIC in Topics.under("t1.").all()
    assert len(set(Topics.under("t1.").all())) == len(Topics().all())
