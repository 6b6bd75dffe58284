"""The Kafka topic names of the event contract (spec/EVENTS.md); plain names, no client."""

CHECKINS_TOPIC = "grid.checkins.v1"
INCIDENTS_TOPIC = "grid.incidents.v1"
ASSIGNMENTS_TOPIC = "grid.assignments.v1"
COMPLIANCE_TOPIC = "grid.compliance.v1"
DEADLETTER_TOPIC = "grid.deadletter.v1"

ALL_TOPICS: tuple[str, ...] = (
    CHECKINS_TOPIC,
    INCIDENTS_TOPIC,
    ASSIGNMENTS_TOPIC,
    COMPLIANCE_TOPIC,
    DEADLETTER_TOPIC,
)
