"""The Kafka topic names of the event contract (docs/EVENTS.md); plain names, no client."""

from dataclasses import astuple, dataclass

CHECKINS_TOPIC = "grid.checkins.v1"
INCIDENTS_TOPIC = "grid.incidents.v1"
ASSIGNMENTS_TOPIC = "grid.assignments.v1"
COMPLIANCE_TOPIC = "grid.compliance.v1"
DEADLETTER_TOPIC = "grid.deadletter.v1"
INCIDENT_STATUS_TOPIC = "grid.incident-status.v1"
LOCKER_DROPOFFS_TOPIC = "grid.locker-dropoffs.v1"

ALL_TOPICS: tuple[str, ...] = (
    CHECKINS_TOPIC,
    INCIDENTS_TOPIC,
    ASSIGNMENTS_TOPIC,
    COMPLIANCE_TOPIC,
    DEADLETTER_TOPIC,
    INCIDENT_STATUS_TOPIC,
    LOCKER_DROPOFFS_TOPIC,
)


@dataclass(frozen=True)
class Topics:
    """The contract's topics, optionally under a namespace prefix.

    Production uses the bare names; tests and benchmarks give each run its own
    namespace so that runs never read each other's events.
    """

    checkins: str = CHECKINS_TOPIC
    incidents: str = INCIDENTS_TOPIC
    assignments: str = ASSIGNMENTS_TOPIC
    compliance: str = COMPLIANCE_TOPIC
    deadletter: str = DEADLETTER_TOPIC
    incident_status: str = INCIDENT_STATUS_TOPIC
    locker_dropoffs: str = LOCKER_DROPOFFS_TOPIC

    @classmethod
    def under(cls, namespace: str) -> "Topics":
        """The topics prefixed with `namespace` (empty: the contract's own names)."""
        return cls(*(f"{namespace}{name}" for name in ALL_TOPICS))

    def all(self) -> tuple[str, ...]:
        """Every topic name, in the contract's order."""
        return astuple(self)
