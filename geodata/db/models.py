"""ORM models of the grid hierarchy, staff, points of interest and event tables."""

import uuid
from datetime import date, datetime

from geoalchemy2 import Geometry, WKBElement
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, BIT, JSON, JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Stable constraint names so that Alembic migrations can refer to them.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def _geometry(kind: str) -> Geometry:
    # GiST indexes are declared explicitly in __table_args__ so migrations own them.
    return Geometry(kind, srid=4326, spatial_index=False)


class Base(DeclarativeBase):
    """Declarative base with the project's naming convention."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class District(Base):
    """A district (区), the top level below the city."""

    __tablename__ = "districts"
    __table_args__ = (
        CheckConstraint("code ~ '^[0-9]{6}$'", name="code_format"),
        Index("ix_districts_geom", "geom", postgresql_using="gist"),
    )

    code: Mapped[str] = mapped_column(String(6), primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    name_en: Mapped[str | None] = mapped_column(Text)
    geom: Mapped[WKBElement] = mapped_column(_geometry("MULTIPOLYGON"))


class Street(Base):
    """A street office (街道)."""

    __tablename__ = "streets"
    __table_args__ = (
        CheckConstraint(
            "code ~ '^[0-9]{9}$' AND left(code, 6) = district_code", name="code_format"
        ),
        Index("ix_streets_geom", "geom", postgresql_using="gist"),
    )

    code: Mapped[str] = mapped_column(String(9), primary_key=True)
    district_code: Mapped[str] = mapped_column(ForeignKey("districts.code"), index=True)
    name: Mapped[str] = mapped_column(Text)
    geom: Mapped[WKBElement] = mapped_column(_geometry("MULTIPOLYGON"))


class Community(Base):
    """A community (社区), the residents' committee area cut into grids."""

    __tablename__ = "communities"
    __table_args__ = (
        CheckConstraint("code ~ '^[0-9]{12}$' AND left(code, 9) = street_code", name="code_format"),
        Index("ix_communities_geom", "geom", postgresql_using="gist"),
    )

    code: Mapped[str] = mapped_column(String(12), primary_key=True)
    street_code: Mapped[str] = mapped_column(ForeignKey("streets.code"), index=True)
    name: Mapped[str] = mapped_column(Text)
    geom: Mapped[WKBElement] = mapped_column(_geometry("MULTIPOLYGON"))


class Grid(Base):
    """One version of a grid's boundary; `valid_to` is NULL for the version in force.

    A boundary change closes the old row and adds a new one, so events are always
    assigned with the boundary that was valid when they happened.
    """

    __tablename__ = "grids"
    __table_args__ = (
        CheckConstraint(
            "code ~ '^[0-9]{15}$' AND left(code, 12) = community_code", name="code_format"
        ),
        CheckConstraint("valid_to IS NULL OR valid_to > valid_from", name="validity_order"),
        UniqueConstraint("code", "valid_from"),
        Index("ix_grids_geom", "geom", postgresql_using="gist"),
        Index(
            "ix_grids_current_code",
            "code",
            unique=True,
            postgresql_where=text("valid_to IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    code: Mapped[str] = mapped_column(String(15), index=True)
    community_code: Mapped[str] = mapped_column(ForeignKey("communities.code"), index=True)
    name: Mapped[str] = mapped_column(Text)
    households: Mapped[int | None] = mapped_column(Integer)
    geom: Mapped[WKBElement] = mapped_column(_geometry("MULTIPOLYGON"))
    valid_from: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    valid_to: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Worker(Base):
    """A grid worker (网格员)."""

    __tablename__ = "workers"
    __table_args__ = (
        CheckConstraint("worker_id ~ '^W[0-9]{5}$'", name="id_format"),
        CheckConstraint("employment IN ('full_time', 'part_time')", name="employment_kind"),
    )

    worker_id: Mapped[str] = mapped_column(String(6), primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    phone: Mapped[str | None] = mapped_column(Text)
    employment: Mapped[str] = mapped_column(Text)
    party_role: Mapped[str | None] = mapped_column(Text)


class WorkerAssignment(Base):
    """A worker's assignment to a grid (定格定人) over a validity period."""

    __tablename__ = "worker_assignments"
    __table_args__ = (
        CheckConstraint("valid_to IS NULL OR valid_to > valid_from", name="validity_order"),
        UniqueConstraint("worker_id", "grid_code", "valid_from"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    worker_id: Mapped[str] = mapped_column(ForeignKey("workers.worker_id"), index=True)
    # A code, not a version row: an assignment outlives boundary changes.
    grid_code: Mapped[str] = mapped_column(String(15), index=True)
    valid_from: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    valid_to: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class PointOfInterest(Base):
    """Something put on the grid (一网统管): compounds, organisations, shops, lockers."""

    __tablename__ = "pois"
    __table_args__ = (Index("ix_pois_geom", "geom", postgresql_using="gist"),)

    poi_id: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(Text, index=True)
    grid_code: Mapped[str] = mapped_column(String(15), index=True)
    geom: Mapped[WKBElement] = mapped_column(_geometry("POINT"))


class Checkin(Base):
    """A GPS check-in as kept by the pipeline, with its assignment.

    Partitioned by event week (migration 0022, `checkin_week_partition`): the key holds
    `recorded_at` because a partitioned table's unique keys must hold its partition key.
    """

    __tablename__ = "checkins"
    __table_args__ = (
        Index("ix_checkins_geom", "geom", postgresql_using="gist"),
        Index("ix_checkins_worker_recorded", "worker_id", "recorded_at"),
        Index("ix_checkins_grid_recorded", "grid_code", "recorded_at"),
        {"postgresql_partition_by": "RANGE (recorded_at)"},
    )

    event_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    worker_id: Mapped[str] = mapped_column(String(6))
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    lon: Mapped[float] = mapped_column(Float)
    lat: Mapped[float] = mapped_column(Float)
    crs: Mapped[str] = mapped_column(Text, server_default="EPSG:4326")
    accuracy_m: Mapped[float | None] = mapped_column(Float)
    geom: Mapped[WKBElement] = mapped_column(_geometry("POINT"))
    grid_code: Mapped[str | None] = mapped_column(String(15))
    staff_id: Mapped[str | None] = mapped_column(String(6))
    in_assigned_grid: Mapped[bool | None] = mapped_column(Boolean)
    assignment_rule: Mapped[str] = mapped_column(Text)
    flags: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default="{}")
    late: Mapped[bool] = mapped_column(Boolean, server_default="false")
    received_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    assigned_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


class Incident(Base):
    """An incident (事件) and where it stands in its lifecycle."""

    __tablename__ = "incidents"
    __table_args__ = (
        Index("ix_incidents_geom", "geom", postgresql_using="gist"),
        Index("ix_incidents_grid_status", "grid_code", "status"),
        # The deadline engine loads the open cases with a due time at start.
        Index("ix_incidents_due_at", "due_at", postgresql_where=text("due_at IS NOT NULL")),
        # An evaluation selects the cases reported in a period (docs/EVALUATION.md).
        Index("ix_incidents_reported_at", "reported_at"),
        # An original's followers: the reports linked to it as duplicates.
        Index(
            "ix_incidents_duplicate_of",
            "duplicate_of",
            postgresql_where=text("duplicate_of IS NOT NULL"),
        ),
        CheckConstraint(
            "status IN ('reported', 'dispatched', 'in_progress', 'resolved', 'closed',"
            " 'escalated', 'cancelled')",
            name="status_kind",
        ),
    )

    incident_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    event_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), unique=True)
    category: Mapped[str] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str] = mapped_column(Text)
    reporter_id: Mapped[str | None] = mapped_column(Text)
    reported_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    lon: Mapped[float] = mapped_column(Float)
    lat: Mapped[float] = mapped_column(Float)
    geom: Mapped[WKBElement] = mapped_column(_geometry("POINT"))
    grid_code: Mapped[str | None] = mapped_column(String(15))
    community_code: Mapped[str | None] = mapped_column(String(12))
    staff_id: Mapped[str | None] = mapped_column(String(6))
    assignment_rule: Mapped[str] = mapped_column(Text)
    escalated_to: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text, server_default="reported")
    flags: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default="{}")
    payload: Mapped[dict[str, object]] = mapped_column(JSONB)
    received_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    # Bumped by every transition: a PATCH names the version it was decided on.
    version: Mapped[int] = mapped_column(Integer, server_default="1")
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # When the current stage falls due (geodata.deadlines); null once closed or cancelled.
    due_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Past a due moment and not yet moved on by a person: a flag, not a status.
    overdue: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    # The open case the consumer linked this report to as a probable duplicate
    # (geodata.duplicates), how far apart they are, and whether a supervisor confirmed it.
    duplicate_of: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("incidents.incident_id"))
    duplicate_distance_m: Mapped[float | None] = mapped_column(Float)
    duplicate_confirmed: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))


class IncidentEvent(Base):
    """One transition of an incident, append-only: who, when, from, to, and why."""

    __tablename__ = "incident_events"
    __table_args__ = (
        # One transition per version: the last guard against two writers of one version.
        UniqueConstraint("incident_id", "version"),
        # An evaluation selects the cases with a history entry in a period.
        Index("ix_incident_events_at", "at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    incident_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("incidents.incident_id"))
    version: Mapped[int] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(Text)
    from_status: Mapped[str] = mapped_column(Text)
    to_status: Mapped[str] = mapped_column(Text)
    assignee: Mapped[str | None] = mapped_column(String(6))
    escalated_to: Mapped[str | None] = mapped_column(Text)
    note: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(Text)
    actor_role: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ConsumerOffset(Base):
    """Kafka offsets stored in the same transaction as the rows they produced."""

    __tablename__ = "consumer_offsets"

    consumer_group: Mapped[str] = mapped_column(Text, primary_key=True)
    topic: Mapped[str] = mapped_column(Text, primary_key=True)
    partition: Mapped[int] = mapped_column(Integer, primary_key=True)
    next_offset: Mapped[int] = mapped_column(BigInteger)
    #: The broker's id of the topic incarnation these offsets count in.
    topic_id: Mapped[str | None] = mapped_column(Text)


class ConsumerHeartbeat(Base):
    """A consumer group member's last sign of life and how far behind it is (for /healthz)."""

    __tablename__ = "consumer_heartbeats"
    __table_args__ = (CheckConstraint("stage IN ('intake', 'compliance')", name="stage_kind"),)

    group_id: Mapped[str] = mapped_column(Text, primary_key=True)
    member: Mapped[str] = mapped_column(Text, primary_key=True)
    stage: Mapped[str] = mapped_column(Text)
    topics: Mapped[list[str]] = mapped_column(ARRAY(Text))
    # Records behind the high watermarks of the member's partitions; NULL: not known yet.
    lag: Mapped[int | None] = mapped_column(BigInteger)
    beat_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class DatasetImport(Base):
    """An audit row per boundary import: what file, when, and what it changed."""

    __tablename__ = "dataset_imports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(Text)
    imported_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    summary: Mapped[dict[str, object]] = mapped_column(JSONB)


class PatrolCheckin(Base):
    """A check-in as the compliance engine sees it, copied from the assignments topic.

    Partitioned by event week like `checkins` (migration 0023, `week_partition`), hence
    the key (event_id, recorded_at).
    """

    __tablename__ = "patrol_checkins"
    __table_args__ = (
        Index("ix_patrol_checkins_worker_grid_time", "worker_id", "grid_code", "recorded_at"),
        {"postgresql_partition_by": "RANGE (recorded_at)"},
    )

    event_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    worker_id: Mapped[str] = mapped_column(String(6))
    grid_code: Mapped[str | None] = mapped_column(String(15))
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    accuracy_m: Mapped[float | None] = mapped_column(Float)
    in_assigned_grid: Mapped[bool] = mapped_column(Boolean)
    # Proof of presence (docs/PATROL_RULE.md): the phone's mock flag, the intake's speed flag.
    mock: Mapped[bool] = mapped_column(Boolean, server_default="false")
    implausible_speed: Mapped[bool] = mapped_column(Boolean, server_default="false")
    # Arrived after its week was final: kept and counted, but it changes nothing.
    late: Mapped[bool] = mapped_column(Boolean, server_default="false")
    received_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


class Patrol(Base):
    """One patrol of a worker in a grid, as built from their usable check-ins."""

    __tablename__ = "patrols"
    __table_args__ = (
        Index("ix_patrols_worker_grid_start", "worker_id", "grid_code", "started_at"),
        Index("ix_patrols_week_grid", "week", "grid_code"),
        # A worker's week (the engine's replacements, their patrols), and the patrols
        # ending in or after a track's interval, without reading their history (0024).
        Index("ix_patrols_worker_week", "worker_id", "week", "grid_code", "local_day"),
        Index("ix_patrols_worker_end", "worker_id", "ended_at"),
        # The weeks whose walks became valid as the watermark moved, evaluated again (0026).
        Index("ix_patrols_valid_at", "valid_at", postgresql_where=text("valid_at IS NOT NULL")),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    worker_id: Mapped[str] = mapped_column(String(6))
    grid_code: Mapped[str] = mapped_column(String(15))
    week: Mapped[str] = mapped_column(String(8))
    local_day: Mapped[date] = mapped_column(Date)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    checkin_count: Mapped[int] = mapped_column(Integer)
    valid: Mapped[bool] = mapped_column(Boolean)
    # Event time at which the patrol first met both thresholds: counts "as of" later times.
    valid_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    counted: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str] = mapped_column(Text)


class PatrolWeek(Base):
    """The engine's current status of one (worker, grid, week), as of its watermark."""

    __tablename__ = "patrol_weeks"
    __table_args__ = (
        Index("ix_patrol_weeks_week_grid", "week", "grid_code"),
        # The open weeks the engine's every batch looks for, without the final ones (0024).
        Index("ix_patrol_weeks_open_week", "week", postgresql_where=text("NOT final")),
    )

    worker_id: Mapped[str] = mapped_column(String(6), primary_key=True)
    grid_code: Mapped[str] = mapped_column(String(15), primary_key=True)
    week: Mapped[str] = mapped_column(String(8), primary_key=True)
    required: Mapped[int] = mapped_column(Integer)
    counted: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(Text)
    as_of: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    final: Mapped[bool] = mapped_column(Boolean, server_default="false")


class ComplianceChangeRecord(Base):
    """Outbox of status changes: written with the state, published exactly once."""

    __tablename__ = "compliance_changes"
    __table_args__ = (
        Index(
            "ix_compliance_changes_unpublished",
            "id",
            postgresql_where=text("published_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    change_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), unique=True)
    worker_id: Mapped[str] = mapped_column(String(6))
    grid_code: Mapped[str] = mapped_column(String(15))
    week: Mapped[str] = mapped_column(String(8))
    old_status: Mapped[str | None] = mapped_column(Text)
    new_status: Mapped[str] = mapped_column(Text)
    counted: Mapped[int] = mapped_column(Integer)
    required: Mapped[int] = mapped_column(Integer)
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class IncidentStatusChangeRecord(Base):
    """Outbox of incident status changes: written in the transition's own transaction,
    published once to `grid.incident-status.v1`."""

    __tablename__ = "incident_status_changes"
    __table_args__ = (
        # One change per version: the record's sequence per incident has no gap or repeat.
        UniqueConstraint("incident_id", "version"),
        Index(
            "ix_incident_status_changes_unpublished",
            "id",
            postgresql_where=text("published_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    change_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), unique=True)
    incident_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("incidents.incident_id"))
    version: Mapped[int] = mapped_column(Integer)
    # The record's value as published. json, not jsonb: the text keeps the contract's field
    # order, and a field the contract gains later needs no migration here.
    body: Mapped[dict[str, object]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ComplianceClock(Base):
    """The engine's event-time watermark and the last local day it evaluated everyone."""

    __tablename__ = "compliance_clock"

    name: Mapped[str] = mapped_column(Text, primary_key=True)
    watermark: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    evaluated_day: Mapped[date | None] = mapped_column(Date)


class CompliancePartition(Base):
    """How far the engine's group has read one partition: the watermark is made of these."""

    __tablename__ = "compliance_partitions"

    topic: Mapped[str] = mapped_column(Text, primary_key=True)
    partition: Mapped[int] = mapped_column(Integer, primary_key=True)
    newest: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    read_to_end: Mapped[bool] = mapped_column(Boolean)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Account(Base):
    """Someone who may call the API: a worker, a supervisor of an area, or an admin."""

    __tablename__ = "accounts"
    __table_args__ = (
        CheckConstraint("role IN ('worker', 'supervisor', 'admin')", name="role_kind"),
        # The role's rules, also enforced by geodata.accounts: the database is the last
        # line, so that no hand-written row makes a supervisor of the whole city.
        CheckConstraint(
            "(role = 'supervisor') = (area_prefix IS NOT NULL)"
            " AND (area_prefix IS NULL OR area_prefix ~ '^[0-9]{6}([0-9]{3}){0,2}$')",
            name="supervisor_area",
        ),
        CheckConstraint("(role = 'worker') = (worker_id IS NOT NULL)", name="worker_identity"),
        # Only an argon2id hash fits: a plaintext password stored by mistake is refused.
        CheckConstraint(
            "password_hash IS NULL OR password_hash LIKE '$argon2id$%'", name="argon2_hash"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(Text, unique=True)
    role: Mapped[str] = mapped_column(Text)
    area_prefix: Mapped[str | None] = mapped_column(String(12))
    worker_id: Mapped[str | None] = mapped_column(ForeignKey("workers.worker_id"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    #: argon2id (geodata.passwords); NULL: the account signs in with tokens only.
    password_hash: Mapped[str | None] = mapped_column(Text)
    #: A one-time password handed out: it must be changed before any session starts.
    password_one_time: Mapped[bool] = mapped_column(Boolean, server_default="false")
    password_set_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class AccountToken(Base):
    """A bearer token of an account, kept only as its SHA-256; revoked ones stay for audit."""

    __tablename__ = "account_tokens"
    __table_args__ = (
        # Only a hash fits here: a plaintext token (wg_...) stored by mistake is refused.
        CheckConstraint("token_hash ~ '^[0-9a-f]{64}$'", name="sha256_hex"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class TrackerDevice(Base):
    """A tracking app on a worker's phone (OsmAnd protocol or OwnTracks) that posts the
    worker's check-ins; its secret is kept only as its SHA-256, revoked ones stay for audit."""

    __tablename__ = "tracker_devices"
    __table_args__ = (
        CheckConstraint("kind IN ('osmand', 'owntracks')", name="device_kind"),
        # Only a hash fits here: a plaintext secret (wgd_...) stored by mistake is refused.
        CheckConstraint("secret_hash ~ '^[0-9a-f]{64}$'", name="sha256_hex"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    identifier: Mapped[str] = mapped_column(Text, unique=True)
    kind: Mapped[str] = mapped_column(Text)
    worker_id: Mapped[str] = mapped_column(ForeignKey("workers.worker_id"), index=True)
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    #: The admin's or supervisor's account name; None when registered from the console.
    registered_by: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Attachment(Base):
    """A stored photo, named by the SHA-256 of its bytes (the bytes are in a blob store)."""

    __tablename__ = "attachments"
    __table_args__ = (
        CheckConstraint("content_id ~ '^[0-9a-f]{64}$'", name="content_id_format"),
        CheckConstraint(
            "media_type IN ('image/jpeg', 'image/png', 'image/webp')", name="media_type_kind"
        ),
    )

    content_id: Mapped[str] = mapped_column(Text, primary_key=True)
    media_type: Mapped[str] = mapped_column(Text)
    size_bytes: Mapped[int] = mapped_column(Integer)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    uploaded_by: Mapped[str] = mapped_column(Text)
    uploaded_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


class IncidentAttachment(Base):
    """A photo on an incident: named by its report, or added to show the fix.

    No foreign key to `attachments`: a report produced straight to Kafka may name a photo
    this deployment never stored; the link is kept and reading it answers 404.
    """

    __tablename__ = "incident_attachments"
    __table_args__ = (CheckConstraint("purpose IN ('report', 'resolution')", name="purpose_kind"),)

    incident_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("incidents.incident_id"), primary_key=True
    )
    content_id: Mapped[str] = mapped_column(Text, primary_key=True)
    purpose: Mapped[str] = mapped_column(Text)
    added_by: Mapped[str | None] = mapped_column(Text)
    added_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Open311Client(Base):
    """A program that may post Open311 service requests, by its api key's SHA-256."""

    __tablename__ = "open311_clients"
    __table_args__ = (
        # Only a hash fits here: a plaintext key (wg311_...) stored by mistake is refused.
        CheckConstraint("key_hash ~ '^[0-9a-f]{64}$'", name="sha256_hex"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(Text, unique=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Open311Request(Base):
    """An Open311 service request as posted (its public fields); its incident has the same id.

    No foreign key to `incidents`: the request is stored when its report is produced, and
    the incident when the consumers file it, moments later.
    """

    __tablename__ = "open311_requests"

    incident_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("open311_clients.id"), index=True)
    service_code: Mapped[str] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    lon: Mapped[float] = mapped_column(Float)
    lat: Mapped[float] = mapped_column(Float)
    address_string: Mapped[str | None] = mapped_column(Text)
    media_url: Mapped[str | None] = mapped_column(Text)
    requested_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class Locker(Base):
    """A cloud locker (智慧云柜) of the registry: where it stands and its compartments."""

    __tablename__ = "lockers"
    __table_args__ = (CheckConstraint("compartments BETWEEN 1 AND 200", name="compartments_range"),)

    locker_id: Mapped[str] = mapped_column(Text, primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    poi_id: Mapped[str | None] = mapped_column(String(16))
    compartments: Mapped[int] = mapped_column(Integer)
    lon: Mapped[float] = mapped_column(Float)
    lat: Mapped[float] = mapped_column(Float)
    geom: Mapped[WKBElement] = mapped_column(_geometry("POINT"))
    # The grid that contained it when registered, as the grid snapshot located it.
    grid_code: Mapped[str | None] = mapped_column(String(15))
    added_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class LockerDropoff(Base):
    """A drop-off at a locker, by its event id, which is also its task's incident id."""

    __tablename__ = "locker_dropoffs"
    __table_args__ = (Index("ix_locker_dropoffs_locker_dropped", "locker_id", "dropped_at"),)

    event_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    locker_id: Mapped[str] = mapped_column(ForeignKey("lockers.locker_id"))
    compartment: Mapped[int] = mapped_column(Integer)
    document_kind: Mapped[str] = mapped_column(Text)
    dropped_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    received_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


class Open311Contact(Base):
    """A resident's contact fields of one request: personal, read by no route or listing."""

    __tablename__ = "open311_contacts"

    incident_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("open311_requests.incident_id", ondelete="CASCADE"), primary_key=True
    )
    email: Mapped[str | None] = mapped_column(Text)
    first_name: Mapped[str | None] = mapped_column(Text)
    last_name: Mapped[str | None] = mapped_column(Text)
    phone: Mapped[str | None] = mapped_column(Text)
    device_id: Mapped[str | None] = mapped_column(Text)
    account_id: Mapped[str | None] = mapped_column(Text)


class AccountSession(Base):
    """A signed-in browser session of an account, kept only as its id's SHA-256."""

    __tablename__ = "account_sessions"
    __table_args__ = (
        CheckConstraint("session_hash ~ '^[0-9a-f]{64}$'", name="sha256_hex"),
        CheckConstraint("expires_at > created_at", name="lifetime"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    session_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    #: Signed out, or ended by a password change or reset; kept for audit until pruned.
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class SignInFailure(Base):
    """A username's run of failed sign-ins and its lock, whether or not an account has it."""

    __tablename__ = "sign_in_failures"
    __table_args__ = (CheckConstraint("failures > 0", name="positive"),)

    username: Mapped[str] = mapped_column(Text, primary_key=True)
    failures: Mapped[int] = mapped_column(Integer)
    last_failed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class IncidentDeadline(Base):
    """How long a stage of a category's cases may take: the city's editable table."""

    __tablename__ = "incident_deadlines"
    __table_args__ = (
        CheckConstraint("stage IN ('dispatch', 'handle', 'verify')", name="stage_kind"),
        CheckConstraint("unit IN ('hours', 'working_hours', 'working_days')", name="unit_kind"),
        CheckConstraint("amount > 0 AND amount <= 1000", name="amount_range"),
    )

    # A category code, a class (`environment`) or `*`: the most specific row wins.
    category: Mapped[str] = mapped_column(Text, primary_key=True)
    stage: Mapped[str] = mapped_column(Text, primary_key=True)
    amount: Mapped[float] = mapped_column(Float)
    unit: Mapped[str] = mapped_column(Text)


class CalendarDay(Base):
    """A day the working calendar treats otherwise: a holiday, or a weekend day worked."""

    __tablename__ = "calendar_days"
    __table_args__ = (CheckConstraint("kind IN ('holiday', 'workday')", name="holiday_or_workday"),)

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    kind: Mapped[str] = mapped_column(Text)
    name: Mapped[str | None] = mapped_column(Text)


class NotifyDelivery(Base):
    """A supervisor's call to a worker (from the map's at-risk and missed lists), and its
    delivery to the notify webhook: pending until a 2xx, retried with backoff, then failed."""

    __tablename__ = "notify_deliveries"
    __table_args__ = (
        CheckConstraint("state IN ('pending', 'delivered', 'failed')", name="state_kind"),
        CheckConstraint("attempts >= 0", name="attempts_count"),
        Index(
            "ix_notify_deliveries_due",
            "next_attempt_at",
            postgresql_where=text("state = 'pending'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    delivery_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), unique=True)
    worker_id: Mapped[str] = mapped_column(Text, index=True)
    requested_by: Mapped[str] = mapped_column(Text)
    requested_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # What the webhook receives, as sent on every attempt (the same delivery_id each time).
    body: Mapped[dict[str, object]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)


class NotifyAttempt(Base):
    """One try at delivering a call: when, the receiver's HTTP status or the error."""

    __tablename__ = "notify_attempts"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    delivery_id: Mapped[int] = mapped_column(
        ForeignKey("notify_deliveries.id", ondelete="CASCADE"), index=True
    )
    attempt: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    http_status: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)


class CoverageLattice(Base):
    """A grid version's count of coverage lattice cells (geodata/coverage.py)."""

    __tablename__ = "coverage_lattices"

    grid_code: Mapped[str] = mapped_column(String(15), primary_key=True)
    grid_from: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    cells_inside: Mapped[int] = mapped_column(Integer)


class CoverageDay(Base):
    """The lattice cells of a grid version covered by usable fixes on one local day."""

    __tablename__ = "coverage_days"
    __table_args__ = (Index("ix_coverage_days_day_grid", "local_day", "grid_code"),)

    grid_code: Mapped[str] = mapped_column(String(15), primary_key=True)
    grid_from: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    local_day: Mapped[date] = mapped_column(Date, primary_key=True)
    # One bit per cell of the version's lattice window; days union by OR.
    cells: Mapped[str] = mapped_column(BIT(varying=True))


# A grid's last counted patrol, found per grid without reading its whole history.
Index(
    "ix_patrols_counted_grid_start",
    Patrol.grid_code,
    Patrol.started_at,
    postgresql_where=Patrol.counted,
)
