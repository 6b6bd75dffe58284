"""The incident lifecycle: GB/T 30428's closed loop as a state machine, and who may move it.

Pure rules over plain data, so that the API, the CLI and the tests run the same code.

    action    from                                          to           by          note
    dispatch  reported, dispatched, in_progress, escalated  dispatched   supervisor
    start     dispatched                                    in_progress  assignee
    resolve   in_progress                                   resolved     assignee    yes
    close     resolved                                      closed       supervisor
    reopen    resolved                                      in_progress  supervisor  yes
    escalate  reported, dispatched, in_progress, escalated  escalated    supervisor  yes
    cancel    any of those or resolved                      cancelled    supervisor  yes
    confirm_duplicate  reported, dispatched, in_progress,   cancelled    supervisor
                       escalated; a probable duplicate
    split     the same; a probable duplicate                (unchanged)  supervisor
    pick_up   reported, dispatched; a locker's task         in_progress  assignee
    return    in_progress; a locker's task                  closed       assignee

- The consumer files every report as `reported` (信息采集, 立案). A supervisor of the area
  dispatches it (派遣) to a worker of the incident's community, and may reassign it
  while it is dispatched or in progress.
- The assigned worker starts it (处置) and resolves it with a note (反馈).
- A supervisor verifies: `close` (核查结案), or `reopen` with a note, back to in progress.
- `escalate` blows the whistle (吹哨) to the street office or the district (or, as the
  deadlines do first when a case is overdue, back to its community): from then on only
  supervisors covering that level move the incident, and they may dispatch it to a
  worker anywhere under it. `cancel` (a duplicate, a non-issue) needs a note.
- A report the consumer linked as a probable duplicate of an open case
  (`geodata.duplicates`) is confirmed as one (`confirm_duplicate`: cancelled, its reporter
  follows the original) or split from it (`split`: the link goes, the status stays).
- A cloud locker's task (source `locker`, `geodata.lockers`) is filed with the worker of
  the locker's grid, who picks the documents up (`pick_up`, from reported or dispatched)
  and returns the result to the locker (`return`: closed, the resident's collection being
  the check). `start` and `resolve` are for cases, `pick_up` and `return` for these tasks.
- An admin may make any transition the state allows; `closed` and `cancelled` are final.

Every transition names the version it was decided on, so that two supervisors cannot
silently overwrite each other.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final
from uuid import UUID

from geodata.accounts import OutsideArea, PermissionDenied, Principal, Role, WorkerMismatch
from geodata.categories import CATEGORIES
from geodata.errors import WanggeError

MAX_NOTE_LENGTH: Final = 2000

COMMUNITY_LEVEL_CODE_LENGTH: Final = 12
STREET_CODE_LENGTH: Final = 9
DISTRICT_CODE_LENGTH: Final = 6


class Status(StrEnum):
    """Where an incident stands."""

    REPORTED = "reported"
    DISPATCHED = "dispatched"
    IN_PROGRESS = "in_progress"
    RESOLVED = "resolved"
    CLOSED = "closed"
    ESCALATED = "escalated"
    CANCELLED = "cancelled"


FINAL_STATUSES: Final = frozenset({Status.CLOSED, Status.CANCELLED})


class Action(StrEnum):
    """What a PATCH asks to do to an incident."""

    DISPATCH = "dispatch"
    START = "start"
    RESOLVE = "resolve"
    CLOSE = "close"
    REOPEN = "reopen"
    ESCALATE = "escalate"
    CANCEL = "cancel"
    CONFIRM_DUPLICATE = "confirm_duplicate"
    SPLIT = "split"
    PICK_UP = "pick_up"
    RETURN = "return"


DUPLICATE_ACTIONS: Final = frozenset({Action.CONFIRM_DUPLICATE, Action.SPLIT})
"""The actions that settle a probable duplicate link: only an incident with one takes them."""

LOCKER_SOURCE: Final = "locker"
LOCKER_ACTIONS: Final = frozenset({Action.PICK_UP, Action.RETURN})
"""The actions of a cloud locker's task (source `locker`): only such a task takes them."""
CASE_ACTIONS: Final = frozenset({Action.START, Action.RESOLVE})
"""The assignee's actions on a case, which a locker's task takes as `LOCKER_ACTIONS`."""


class Performer(StrEnum):
    """Who, besides an admin, makes a transition."""

    ASSIGNEE = "assignee"
    SUPERVISOR = "supervisor"


class EscalationLevel(StrEnum):
    """Where a whistle is blown to."""

    COMMUNITY = "community"
    STREET = "street"
    DISTRICT = "district"


@dataclass(frozen=True, slots=True)
class Rule:
    """One row of the transition table."""

    sources: frozenset[Status]
    #: None: the status stays (a split moves the link, not the case).
    target: Status | None
    performer: Performer
    note_required: bool


_OPEN_BEFORE_RESOLVED: Final = frozenset(
    {Status.REPORTED, Status.DISPATCHED, Status.IN_PROGRESS, Status.ESCALATED}
)

TRANSITIONS: Final[Mapping[Action, Rule]] = {
    Action.DISPATCH: Rule(_OPEN_BEFORE_RESOLVED, Status.DISPATCHED, Performer.SUPERVISOR, False),
    Action.START: Rule(
        frozenset({Status.DISPATCHED}), Status.IN_PROGRESS, Performer.ASSIGNEE, False
    ),
    Action.RESOLVE: Rule(
        frozenset({Status.IN_PROGRESS}), Status.RESOLVED, Performer.ASSIGNEE, True
    ),
    Action.CLOSE: Rule(frozenset({Status.RESOLVED}), Status.CLOSED, Performer.SUPERVISOR, False),
    Action.REOPEN: Rule(
        frozenset({Status.RESOLVED}), Status.IN_PROGRESS, Performer.SUPERVISOR, True
    ),
    Action.ESCALATE: Rule(_OPEN_BEFORE_RESOLVED, Status.ESCALATED, Performer.SUPERVISOR, True),
    Action.CANCEL: Rule(
        _OPEN_BEFORE_RESOLVED | {Status.RESOLVED}, Status.CANCELLED, Performer.SUPERVISOR, True
    ),
    Action.CONFIRM_DUPLICATE: Rule(
        _OPEN_BEFORE_RESOLVED, Status.CANCELLED, Performer.SUPERVISOR, False
    ),
    Action.SPLIT: Rule(_OPEN_BEFORE_RESOLVED, None, Performer.SUPERVISOR, False),
    Action.PICK_UP: Rule(
        frozenset({Status.REPORTED, Status.DISPATCHED}),
        Status.IN_PROGRESS,
        Performer.ASSIGNEE,
        False,
    ),
    Action.RETURN: Rule(frozenset({Status.IN_PROGRESS}), Status.CLOSED, Performer.ASSIGNEE, False),
}
"""Every legal transition: from which statuses, to which, by whom, with a note or not."""


# --------------------------------------------------------------------------- errors


class IncidentNotFound(WanggeError):
    """No incident has the requested id."""

    code = "incident_not_found"


class IllegalTransition(WanggeError):
    """The action is not allowed from the incident's current status."""

    code = "illegal_transition"


class StaleVersion(WanggeError):
    """The transition was decided on a version of the incident that is no longer current."""

    code = "stale_version"


class VersionRequired(WanggeError):
    """A transition came without the version it was decided on (If-Match or `version`)."""

    code = "version_required"


class InvalidTransitionRequest(WanggeError):
    """A transition request that is malformed whatever the incident's state."""

    code = "invalid_transition"


class UnknownAction(InvalidTransitionRequest):
    """An action that is not one of `Action`."""

    code = "unknown_action"


class NoteRequired(InvalidTransitionRequest):
    """The action needs a note (resolve, reopen, escalate, cancel) and none came."""

    code = "note_required"


class InvalidAssignee(InvalidTransitionRequest):
    """A dispatch to nobody, or to a worker not assigned to the incident's area."""

    code = "invalid_assignee"


class InvalidIncidentFilter(WanggeError):
    """A listing filter (status, category) that names nothing that exists."""

    code = "invalid_filter"


# --------------------------------------------------------------------------- data


@dataclass(frozen=True, slots=True)
class IncidentState:
    """What the rules need to know about an incident."""

    status: Status
    version: int
    assignee: str | None
    grid_code: str | None
    community_code: str | None
    escalated_to: str | None
    source: str
    reporter_id: str | None
    #: The open case the consumer linked this report to, until confirmed or split.
    probable_duplicate_of: UUID | None = None

    @property
    def area_code(self) -> str | None:
        """The finest area the incident lies in: its grid, else its community, else none."""
        return self.grid_code or self.community_code

    @property
    def control_area(self) -> str | None:
        """The area whose supervisors move the incident: the whistle's level once blown."""
        if self.escalated_to and len(self.escalated_to) <= STREET_CODE_LENGTH:
            return self.escalated_to
        return self.area_code

    @property
    def dispatch_area(self) -> str | None:
        """The area a dispatched worker must have a grid in (None: any worker)."""
        if self.escalated_to and len(self.escalated_to) <= STREET_CODE_LENGTH:
            return self.escalated_to
        return self.community_code


@dataclass(frozen=True, slots=True)
class TransitionRequest:
    """A checked request: the action and what it carries."""

    action: Action
    note: str | None = None
    assignee: str | None = None
    level: EscalationLevel | None = None


@dataclass(frozen=True, slots=True)
class Transition:
    """A decided transition: what the incident becomes, at which version."""

    action: Action
    from_status: Status
    to_status: Status
    assignee: str | None
    escalated_to: str | None
    note: str | None
    version: int


def transition_request(
    action: str,
    *,
    note: str | None = None,
    assignee: str | None = None,
    level: str | None = None,
) -> TransitionRequest:
    """Check a request's shape; raise UnknownAction, NoteRequired, InvalidAssignee or the base."""
    try:
        kind = Action(action)
    except ValueError:
        names = ", ".join(a.value for a in Action)
        raise UnknownAction(f"action {action[:40]!r} is not one of {names}") from None
    text = (note or "").strip() or None
    if text is not None and len(text) > MAX_NOTE_LENGTH:
        raise InvalidTransitionRequest(f"a note is at most {MAX_NOTE_LENGTH} characters")
    if TRANSITIONS[kind].note_required and text is None:
        raise NoteRequired(f"{kind} needs a note saying why or what was done")
    if kind is Action.DISPATCH and not assignee:
        raise InvalidAssignee("dispatch needs an assignee, a worker id such as W00042")
    if kind is not Action.DISPATCH and assignee is not None:
        raise InvalidTransitionRequest(f"only dispatch takes an assignee, not {kind}")
    escalation: EscalationLevel | None = None
    if level is not None:
        if kind is not Action.ESCALATE:
            raise InvalidTransitionRequest(f"only escalate takes a level, not {kind}")
        try:
            escalation = EscalationLevel(level)
        except ValueError:
            raise InvalidTransitionRequest(
                f"level {level[:40]!r} is not one of community, street, district"
            ) from None
    return TransitionRequest(kind, text, assignee, escalation)


# --------------------------------------------------------------------------- reads


def may_read(principal: Principal, state: IncidentState) -> bool:
    """Whether the caller may see the incident: admin; supervisor of its area; its people."""
    if principal.role is Role.ADMIN:
        return True
    if principal.role is Role.SUPERVISOR:
        area = state.area_code
        return area is not None and principal.can_read_area(area)
    return principal.worker_id is not None and principal.worker_id in _people_of(state)


def check_readable(principal: Principal, state: IncidentState) -> None:
    """Raise WorkerMismatch (a worker) or OutsideArea (a supervisor) unless `may_read`."""
    if may_read(principal, state):
        return
    if principal.role is Role.WORKER:
        raise WorkerMismatch(f"{principal.worker_id} neither reported nor holds this incident")
    raise OutsideArea(f"the incident lies outside the area {principal.area_prefix}")


def _people_of(state: IncidentState) -> set[str]:
    people = {state.assignee} if state.assignee else set()
    if state.source == "worker" and state.reporter_id:
        people.add(state.reporter_id)
    return people


@dataclass(frozen=True, slots=True)
class ListingScope:
    """What a caller's listing is limited to: an area prefix and/or one worker's incidents."""

    area_prefix: str | None
    worker_id: str | None


def listing_scope(principal: Principal, code: str | None) -> ListingScope:
    """The scope of a listing filtered by `code`; OutsideArea for a code beyond a supervisor's."""
    if principal.role is Role.WORKER:
        return ListingScope(code or None, principal.worker_id)
    if principal.role is Role.SUPERVISOR:
        prefix = principal.area_prefix or ""
        if not code:
            return ListingScope(prefix, None)
        if not code.startswith(prefix):
            raise OutsideArea(f"{code} is outside the area {prefix}")
    return ListingScope(code or None, None)


def parse_statuses(text: str | None) -> tuple[Status, ...]:
    """`status=a,b` as statuses (empty: all); InvalidIncidentFilter for an unknown one."""
    if not text:
        return ()
    statuses: list[Status] = []
    for part in text.split(","):
        try:
            statuses.append(Status(part.strip()))
        except ValueError:
            names = ", ".join(s.value for s in Status)
            raise InvalidIncidentFilter(f"status {part[:40]!r} is not one of {names}") from None
    return tuple(dict.fromkeys(statuses))


_CATEGORY_CLASSES: Final = frozenset(category.split(".", 1)[0] for category in CATEGORIES)


def check_category(category: str | None) -> str | None:
    """A category code or class (`environment`); InvalidIncidentFilter for anything else."""
    if not category:
        return None
    if category in CATEGORIES or category in _CATEGORY_CLASSES:
        return category
    raise InvalidIncidentFilter(
        f"category {category[:60]!r} is neither a category code nor one of the classes "
        + ", ".join(sorted(_CATEGORY_CLASSES))
    )


# --------------------------------------------------------------------------- transitions


def decide(
    state: IncidentState,
    principal: Principal,
    request: TransitionRequest,
    *,
    expected_version: int,
    assignee_grids: Sequence[str] = (),
) -> Transition:
    """The transition `request` makes of `state`, or the error that refuses it.

    Checked in order: the caller may see the incident (403), may make this action (403),
    decided on the current version (412), from a status that allows it (409), and for a
    dispatch, to a worker with a grid (`assignee_grids`) in the incident's area (422).
    """
    check_readable(principal, state)
    rule = TRANSITIONS[request.action]
    _check_performer(state, principal, request.action, rule.performer)
    if expected_version != state.version:
        raise StaleVersion(
            f"the incident is at version {state.version}, not {expected_version}: read it again"
        )
    if state.status not in rule.sources:
        allowed = ", ".join(sorted(rule.sources))
        raise IllegalTransition(
            f"cannot {request.action} an incident that is {state.status} (only from {allowed})"
        )
    if request.action in DUPLICATE_ACTIONS and state.probable_duplicate_of is None:
        raise IllegalTransition(f"cannot {request.action}: the incident is no probable duplicate")
    _check_kind_of_work(state, request.action)
    assignee = state.assignee
    escalated_to = state.escalated_to
    if request.action is Action.DISPATCH:
        assignee = _checked_assignee(state, request.assignee, assignee_grids)
    elif request.action is Action.ESCALATE:
        escalated_to = _escalation_target(state, request.level)
        # The whistle hands the incident up: whoever takes it there dispatches it anew.
        assignee = None
    return Transition(
        action=request.action,
        from_status=state.status,
        to_status=rule.target or state.status,
        assignee=assignee,
        escalated_to=escalated_to,
        note=request.note,
        version=state.version + 1,
    )


def _check_performer(
    state: IncidentState, principal: Principal, action: Action, performer: Performer
) -> None:
    if principal.role is Role.ADMIN:
        return
    if performer is Performer.ASSIGNEE:
        if principal.role is not Role.WORKER:
            raise PermissionDenied(f"only the assigned worker (or an admin) may {action}")
        if state.assignee is None or principal.worker_id != state.assignee:
            raise WorkerMismatch(f"{principal.worker_id} is not assigned this incident")
        return
    if principal.role is not Role.SUPERVISOR:
        raise PermissionDenied(f"only a supervisor of the area (or an admin) may {action}")
    control = state.control_area
    if control is None or not principal.can_read_area(control):
        raise OutsideArea(
            f"{action} belongs to the supervisors of {control or 'no area'}, "
            f"not of {principal.area_prefix}"
        )


def _check_kind_of_work(state: IncidentState, action: Action) -> None:
    """A locker's task moves by pick_up and return; a case by start and resolve."""
    is_locker_task = state.source == LOCKER_SOURCE
    if action in LOCKER_ACTIONS and not is_locker_task:
        raise IllegalTransition(f"cannot {action}: the incident is no cloud locker's task")
    if action in CASE_ACTIONS and is_locker_task:
        instead = "pick_up" if action is Action.START else "return"
        raise IllegalTransition(f"a cloud locker's task is not {action}ed: {instead} it")


def _checked_assignee(
    state: IncidentState, assignee: str | None, assignee_grids: Sequence[str]
) -> str:
    if not assignee:
        raise InvalidAssignee("dispatch needs an assignee")
    area = state.dispatch_area or ""
    if not any(grid.startswith(area) for grid in assignee_grids):
        where = f"a grid under {area}" if area else "a grid"
        raise InvalidAssignee(f"{assignee[:20]} is not a worker assigned to {where}")
    return assignee


def _escalation_target(state: IncidentState, level: EscalationLevel | None) -> str:
    community = state.community_code
    if community is None:
        raise IllegalTransition("an incident outside every grid has no street to escalate to")
    # Not escalated yet: the case stands with its worker, below its community (the
    # deadlines' first whistle hands it back to the community's supervisors).
    current = len(state.escalated_to) if state.escalated_to else len(community) + 1
    if level is None:
        level = EscalationLevel.STREET if current > STREET_CODE_LENGTH else EscalationLevel.DISTRICT
    length = {
        EscalationLevel.COMMUNITY: COMMUNITY_LEVEL_CODE_LENGTH,
        EscalationLevel.STREET: STREET_CODE_LENGTH,
        EscalationLevel.DISTRICT: DISTRICT_CODE_LENGTH,
    }[level]
    if length >= current:
        raise IllegalTransition(f"the incident is already escalated to {state.escalated_to}")
    return community[:length]
