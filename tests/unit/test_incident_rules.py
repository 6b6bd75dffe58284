"""The incident lifecycle rules: the whole transition table, who may act, notes, versions."""

import uuid
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from geodata.accounts import OutsideArea, PermissionDenied, Principal, Role, WorkerMismatch
from geodata.incidents import (
    Action,
    IllegalTransition,
    IncidentState,
    InvalidAssignee,
    InvalidIncidentFilter,
    InvalidTransitionRequest,
    ListingScope,
    NoteRequired,
    StaleVersion,
    Status,
    TransitionRequest,
    UnknownAction,
    check_category,
    check_readable,
    decide,
    listing_scope,
    may_read,
    parse_statuses,
    transition_request,
)

GRID = "610302001001001"
COMMUNITY = GRID[:12]
STREET = GRID[:9]
DISTRICT = GRID[:6]

ADMIN = Principal(1, 1, "admin", Role.ADMIN)
SUP_DISTRICT = Principal(2, 2, "sup-x", Role.SUPERVISOR, area_prefix=DISTRICT)
SUP_STREET = Principal(3, 3, "sup-s", Role.SUPERVISOR, area_prefix=STREET)
SUP_COMMUNITY = Principal(4, 4, "sup-c", Role.SUPERVISOR, area_prefix=COMMUNITY)
SUP_OTHER = Principal(5, 5, "sup-y", Role.SUPERVISOR, area_prefix="610303")
HOLDER = Principal(6, 6, "w1", Role.WORKER, worker_id="W00001")
REPORTER = Principal(7, 7, "w2", Role.WORKER, worker_id="W00002")
STRANGER = Principal(8, 8, "w3", Role.WORKER, worker_id="W00003")

# The table written out, not read from TRANSITIONS: (action, from) -> to.
LEGAL: dict[tuple[Action, Status], Status] = {
    (Action.DISPATCH, Status.REPORTED): Status.DISPATCHED,
    (Action.DISPATCH, Status.DISPATCHED): Status.DISPATCHED,
    (Action.DISPATCH, Status.IN_PROGRESS): Status.DISPATCHED,
    (Action.DISPATCH, Status.ESCALATED): Status.DISPATCHED,
    (Action.START, Status.DISPATCHED): Status.IN_PROGRESS,
    (Action.RESOLVE, Status.IN_PROGRESS): Status.RESOLVED,
    (Action.CLOSE, Status.RESOLVED): Status.CLOSED,
    (Action.REOPEN, Status.RESOLVED): Status.IN_PROGRESS,
    (Action.ESCALATE, Status.REPORTED): Status.ESCALATED,
    (Action.ESCALATE, Status.DISPATCHED): Status.ESCALATED,
    (Action.ESCALATE, Status.IN_PROGRESS): Status.ESCALATED,
    (Action.ESCALATE, Status.ESCALATED): Status.ESCALATED,
    (Action.CANCEL, Status.REPORTED): Status.CANCELLED,
    (Action.CANCEL, Status.DISPATCHED): Status.CANCELLED,
    (Action.CANCEL, Status.IN_PROGRESS): Status.CANCELLED,
    (Action.CANCEL, Status.ESCALATED): Status.CANCELLED,
    (Action.CANCEL, Status.RESOLVED): Status.CANCELLED,
    # A cloud locker's task (source locker): the worker picks up and returns.
    (Action.PICK_UP, Status.REPORTED): Status.IN_PROGRESS,
    (Action.PICK_UP, Status.DISPATCHED): Status.IN_PROGRESS,
    (Action.RETURN, Status.IN_PROGRESS): Status.CLOSED,
}
NEEDS_NOTE = {Action.RESOLVE, Action.REOPEN, Action.ESCALATE, Action.CANCEL}
BY_ASSIGNEE = {Action.START, Action.RESOLVE, Action.PICK_UP, Action.RETURN}
LOCKER_ACTIONS = {Action.PICK_UP, Action.RETURN}


def state(status: Status = Status.REPORTED, **changes: Any) -> IncidentState:
    """An incident in GRID held by W00001, reported by W00002, at version 3."""
    base = IncidentState(
        status=status,
        version=3,
        assignee="W00001",
        grid_code=GRID,
        community_code=COMMUNITY,
        escalated_to=None,
        source="worker",
        reporter_id="W00002",
    )
    return replace(base, **changes)


def of_kind(action: Action) -> dict[str, Any]:
    """What makes `state()` the kind of incident `action` is for: a locker's task or a case."""
    return {"source": "locker", "reporter_id": None} if action in LOCKER_ACTIONS else {}


def request_for(action: Action, assignee: str = "W00009") -> TransitionRequest:
    """A well-formed request of `action`."""
    return transition_request(
        action.value,
        note="checked on site" if action in NEEDS_NOTE else None,
        assignee=assignee if action is Action.DISPATCH else None,
    )


def run(
    current: IncidentState, principal: Principal, action: Action, grids: tuple[str, ...] = (GRID,)
) -> IncidentState:
    """Decide `action` and apply the result to `current`."""
    transition = decide(
        current,
        principal,
        request_for(action),
        expected_version=current.version,
        assignee_grids=grids,
    )
    return replace(
        current,
        status=transition.to_status,
        version=transition.version,
        assignee=transition.assignee,
        escalated_to=transition.escalated_to,
    )


@pytest.mark.parametrize("status", list(Status))
@pytest.mark.parametrize("action", list(Action))
def test_every_status_and_action_is_legal_exactly_as_the_table_says(
    action: Action, status: Status
) -> None:
    current = state(status, **of_kind(action))
    principal = HOLDER if action in BY_ASSIGNEE else SUP_DISTRICT
    expected = LEGAL.get((action, status))
    if expected is None:
        with pytest.raises(IllegalTransition):
            run(current, principal, action)
        return
    after = run(current, principal, action)
    assert after.status is expected
    assert after.version == current.version + 1


@pytest.mark.parametrize("status", list(Status))
@pytest.mark.parametrize("action", list(Action))
def test_an_admin_may_make_every_legal_transition(action: Action, status: Status) -> None:
    expected = LEGAL.get((action, status))
    if expected is None:
        with pytest.raises(IllegalTransition):
            run(state(status, **of_kind(action)), ADMIN, action)
    else:
        assert run(state(status, **of_kind(action)), ADMIN, action).status is expected


def test_the_full_loop_with_a_failed_verification() -> None:
    current = state(Status.REPORTED, assignee=None)
    for principal, action, status in [
        (SUP_COMMUNITY, Action.DISPATCH, Status.DISPATCHED),
        (Principal(9, 9, "w9", Role.WORKER, worker_id="W00009"), Action.START, Status.IN_PROGRESS),
        (Principal(9, 9, "w9", Role.WORKER, worker_id="W00009"), Action.RESOLVE, Status.RESOLVED),
        (SUP_STREET, Action.REOPEN, Status.IN_PROGRESS),
        (Principal(9, 9, "w9", Role.WORKER, worker_id="W00009"), Action.RESOLVE, Status.RESOLVED),
        (SUP_DISTRICT, Action.CLOSE, Status.CLOSED),
    ]:
        current = run(current, principal, action)
        assert current.status is status
    assert current.version == 3 + 6
    assert current.assignee == "W00009"


@pytest.mark.parametrize("action", sorted(BY_ASSIGNEE))
@pytest.mark.parametrize(
    ("principal", "code"),
    [
        (STRANGER, "worker_mismatch"),
        (REPORTER, "worker_mismatch"),
        (SUP_DISTRICT, "forbidden"),
        (SUP_COMMUNITY, "forbidden"),
    ],
)
def test_only_the_assignee_or_an_admin_starts_and_resolves(
    action: Action, principal: Principal, code: str
) -> None:
    status = Status.DISPATCHED if action in (Action.START, Action.PICK_UP) else Status.IN_PROGRESS
    current = state(status, **of_kind(action))
    with pytest.raises(PermissionDenied) as raised:
        run(current, principal, action)
    assert raised.value.code == code
    assert run(current, HOLDER, action).status is LEGAL[(action, status)]
    assert run(current, ADMIN, action).status is LEGAL[(action, status)]


SUPERVISOR_ACTIONS = sorted(set(Action) - BY_ASSIGNEE)


def _source_of(action: Action) -> Status:
    return Status.RESOLVED if action in (Action.CLOSE, Action.REOPEN) else Status.REPORTED


# A probable duplicate's link, which confirm_duplicate and split need (and others ignore).
ORIGINAL = uuid.UUID("00000000-0000-4000-8000-000000000001")


@pytest.mark.parametrize("action", SUPERVISOR_ACTIONS)
def test_supervisor_actions_need_a_supervisor_of_the_area(action: Action) -> None:
    current = state(_source_of(action), probable_duplicate_of=ORIGINAL)
    for principal in (SUP_DISTRICT, SUP_STREET, SUP_COMMUNITY, ADMIN):
        run(current, principal, action)
    with pytest.raises(OutsideArea):
        run(current, SUP_OTHER, action)
    for worker in (HOLDER, REPORTER):
        with pytest.raises(PermissionDenied) as raised:
            run(current, worker, action)
        assert raised.value.code == "forbidden"
    with pytest.raises(WorkerMismatch):  # cannot even see it
        run(current, STRANGER, action)


@pytest.mark.parametrize("action", SUPERVISOR_ACTIONS)
def test_after_a_whistle_to_the_street_the_community_supervisor_no_longer_acts(
    action: Action,
) -> None:
    status = _source_of(action)
    whistled = state(status, escalated_to=STREET, probable_duplicate_of=ORIGINAL)
    assert may_read(SUP_COMMUNITY, whistled)
    with pytest.raises(OutsideArea):
        run(whistled, SUP_COMMUNITY, action)
    run(whistled, SUP_STREET, action)
    run(whistled, SUP_DISTRICT, action)


def test_a_community_escalation_by_the_consumer_keeps_the_community_in_charge() -> None:
    # The consumer escalates a grid without workers to its community: not a whistle.
    current = state(Status.REPORTED, assignee=None, escalated_to=COMMUNITY)
    assert run(current, SUP_COMMUNITY, Action.DISPATCH).status is Status.DISPATCHED


def test_escalation_climbs_street_then_district_and_clears_the_assignee() -> None:
    street = run(state(Status.IN_PROGRESS), SUP_COMMUNITY, Action.ESCALATE)
    assert (street.escalated_to, street.assignee) == (STREET, None)
    district = run(street, SUP_STREET, Action.ESCALATE)
    assert district.escalated_to == DISTRICT
    with pytest.raises(IllegalTransition, match="already escalated"):
        run(district, SUP_DISTRICT, Action.ESCALATE)
    # The district may now dispatch to a worker anywhere in it.
    other_street_grid = DISTRICT + "002001001"
    dispatched = run(district, SUP_DISTRICT, Action.DISPATCH, grids=(other_street_grid,))
    assert dispatched.assignee == "W00009"


def test_escalating_straight_to_the_district_and_back_down_is_refused() -> None:
    request = transition_request("escalate", note="beyond the street", level="district")
    transition = decide(state(), SUP_DISTRICT, request, expected_version=3)
    assert transition.escalated_to == DISTRICT
    to_street = transition_request("escalate", note="down", level="street")
    with pytest.raises(IllegalTransition):
        decide(
            state(Status.ESCALATED, escalated_to=DISTRICT),
            SUP_DISTRICT,
            to_street,
            expected_version=3,
        )


def test_an_incident_outside_every_grid_is_the_admins_alone() -> None:
    outside = state(grid_code=None, community_code=None, assignee=None, source="hotline")
    assert not may_read(SUP_DISTRICT, outside)
    with pytest.raises(OutsideArea):
        run(outside, SUP_DISTRICT, Action.CANCEL)
    with pytest.raises(IllegalTransition, match="no street"):
        run(outside, ADMIN, Action.ESCALATE)
    assert run(outside, ADMIN, Action.DISPATCH, grids=("610399001001001",)).assignee == "W00009"


@pytest.mark.parametrize(
    ("grids", "escalated_to", "ok"),
    [
        ((GRID,), None, True),
        ((COMMUNITY + "002",), None, True),  # another grid of the same community
        ((STREET + "002001",), None, False),  # another community of the street
        ((), None, False),  # unknown, or assigned nowhere now
        ((STREET + "002001",), STREET, True),  # after the whistle, the whole street
        (("610303001001001",), STREET, False),
    ],
)
def test_dispatch_goes_to_a_worker_of_the_incidents_community_or_whistle_area(
    grids: tuple[str, ...], escalated_to: str | None, ok: bool
) -> None:
    current = state(
        Status.ESCALATED if escalated_to else Status.REPORTED, escalated_to=escalated_to
    )
    if ok:
        assert run(current, SUP_DISTRICT, Action.DISPATCH, grids=grids).assignee == "W00009"
    else:
        with pytest.raises(InvalidAssignee):
            run(current, SUP_DISTRICT, Action.DISPATCH, grids=grids)


def test_a_stale_version_is_refused_after_the_permission_check() -> None:
    with pytest.raises(StaleVersion):
        decide(state(), SUP_DISTRICT, request_for(Action.CANCEL), expected_version=2)
    with pytest.raises(OutsideArea):  # an outsider learns nothing of the version
        decide(state(), SUP_OTHER, request_for(Action.CANCEL), expected_version=2)


def test_a_stale_version_wins_over_an_illegal_transition() -> None:
    # The caller decided on an old state: "read it again" is the useful answer.
    with pytest.raises(StaleVersion):
        decide(state(Status.CLOSED), SUP_DISTRICT, request_for(Action.CANCEL), expected_version=1)


@pytest.mark.parametrize("action", sorted(NEEDS_NOTE))
@pytest.mark.parametrize("note", [None, "", "   "])
def test_resolve_reopen_escalate_and_cancel_need_a_note(action: Action, note: str | None) -> None:
    with pytest.raises(NoteRequired):
        transition_request(action.value, note=note)


def test_request_shapes_are_checked_before_any_state() -> None:
    with pytest.raises(UnknownAction):
        transition_request("approve")
    with pytest.raises(InvalidAssignee):
        transition_request("dispatch")
    with pytest.raises(InvalidTransitionRequest):
        transition_request("start", assignee="W00001")
    with pytest.raises(InvalidTransitionRequest):
        transition_request("close", level="street")
    with pytest.raises(InvalidTransitionRequest):
        transition_request("escalate", note="x", level="city")
    with pytest.raises(InvalidTransitionRequest):
        transition_request("cancel", note="x" * 2001)
    assert transition_request("resolve", note="  fixed  ").note == "fixed"


def test_who_reads_an_incident() -> None:
    current = state()
    for principal in (ADMIN, SUP_DISTRICT, SUP_STREET, SUP_COMMUNITY, HOLDER, REPORTER):
        check_readable(principal, current)
    assert not may_read(SUP_OTHER, current)
    assert not may_read(STRANGER, current)
    # A reporter id from another source is no worker's claim on the incident.
    assert not may_read(REPORTER, state(source="hotline"))
    # An incident without a grid is its community's.
    assert may_read(SUP_COMMUNITY, state(grid_code=None))


def test_listing_scopes() -> None:
    assert listing_scope(SUP_STREET, None) == ListingScope(STREET, None)
    assert listing_scope(SUP_STREET, COMMUNITY) == ListingScope(COMMUNITY, None)
    with pytest.raises(OutsideArea):
        listing_scope(SUP_COMMUNITY, STREET)
    assert listing_scope(HOLDER, None) == ListingScope(None, "W00001")
    assert listing_scope(HOLDER, DISTRICT) == ListingScope(DISTRICT, "W00001")
    assert listing_scope(ADMIN, None) == ListingScope(None, None)


def test_listing_filters() -> None:
    assert parse_statuses("resolved, closed,resolved") == (Status.RESOLVED, Status.CLOSED)
    assert parse_statuses(None) == ()
    with pytest.raises(InvalidIncidentFilter):
        parse_statuses("open")
    assert check_category("environment") == "environment"
    assert check_category("environment.garbage") == "environment.garbage"
    for bad in ("env", "environment.", "environment.garbage.x"):
        with pytest.raises(InvalidIncidentFilter):
            check_category(bad)


@given(st.lists(st.sampled_from(list(Action)), max_size=12), st.booleans())
def test_any_sequence_of_actions_follows_the_table_and_final_is_final(
    actions: list[Action], locker_task: bool
) -> None:
    current = state(Status.REPORTED, **(of_kind(Action.PICK_UP) if locker_task else {}))
    # A locker's task is not started or resolved; a case is not picked up or returned.
    not_for_it = {Action.START, Action.RESOLVE} if locker_task else LOCKER_ACTIONS
    for action in actions:
        expected = None if action in not_for_it else LEGAL.get((action, current.status))
        try:
            after = run(current, ADMIN, action)
        except IllegalTransition:
            assert expected is None or action is Action.ESCALATE
            continue
        assert after.status is expected
        assert current.status not in (Status.CLOSED, Status.CANCELLED)
        current = after


# --------------------------------------------------------------------------- cloud lockers


def test_a_locker_task_is_picked_up_and_returned_by_its_worker_to_closed() -> None:
    task = state(Status.REPORTED, **of_kind(Action.PICK_UP))
    picked = run(task, HOLDER, Action.PICK_UP)
    assert (picked.status, picked.assignee) == (Status.IN_PROGRESS, "W00001")
    returned = run(picked, HOLDER, Action.RETURN)
    assert (returned.status, returned.version) == (Status.CLOSED, task.version + 2)


@pytest.mark.parametrize("action", sorted(LOCKER_ACTIONS))
def test_pick_up_and_return_are_refused_on_a_case_even_to_an_admin(action: Action) -> None:
    status = Status.REPORTED if action is Action.PICK_UP else Status.IN_PROGRESS
    with pytest.raises(IllegalTransition, match="no cloud locker's task"):
        run(state(status), ADMIN, action)


@pytest.mark.parametrize(
    ("action", "status", "instead"),
    [(Action.START, Status.DISPATCHED, "pick_up"), (Action.RESOLVE, Status.IN_PROGRESS, "return")],
)
def test_a_locker_task_is_not_started_or_resolved_but_picked_up_or_returned(
    action: Action, status: Status, instead: str
) -> None:
    with pytest.raises(IllegalTransition, match=instead):
        run(state(status, source="locker", reporter_id=None), HOLDER, action)


def test_another_worker_cannot_pick_up_a_locker_task_nor_see_it() -> None:
    task = state(Status.REPORTED, source="locker", reporter_id=None)
    assert not may_read(STRANGER, task)
    with pytest.raises(WorkerMismatch):
        run(task, STRANGER, Action.PICK_UP)
    whistled = replace(task, status=Status.ESCALATED, assignee=None, escalated_to=COMMUNITY)
    with pytest.raises(WorkerMismatch):
        run(whistled, HOLDER, Action.PICK_UP)  # the whistle took it from its worker
