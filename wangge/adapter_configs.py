"""The adapters' config objects, built from the `WANGGE_*` settings in this one place.

`wangge serve` runs the API with `api_config()`, `wangge consume` the consumers with
`runner_config()`; a new knob of either adapter is read from its settings here.
"""

from event_consumers.runner import RunnerConfig
from geodata.coverage import CoverageConfig
from geodata.db.engine import libpq_url
from grid_service.app import ApiConfig
from grid_service.auth import AuthConfig
from grid_service.health import HealthConfig
from wangge.settings import (
    AccountSettings,
    ApiSettings,
    AttachmentSettings,
    BasemapSettings,
    CorsSettings,
    CoverageSettings,
    DatabaseSettings,
    DuplicateSettings,
    GridSnapshotSettings,
    IntakeSettings,
    KafkaSettings,
    NotifySettings,
    PatrolSettings,
    TileCacheSettings,
)


def _auth_config() -> AuthConfig:
    accounts = AccountSettings()
    return AuthConfig(
        sign_in=accounts.policy(),
        sign_in_rate_per_s=accounts.sign_in_per_minute / 60,
        session_cookie_secure=accounts.session_cookie_secure,
    )


def api_config() -> ApiConfig:
    """The HTTP API's config."""
    kafka = KafkaSettings()
    database = DatabaseSettings()
    return ApiConfig(
        database.url,
        kafka.bootstrap,
        kafka.topics,
        topic_partitions=kafka.topic_partitions,
        consumer_group=kafka.group_id,
        health=HealthConfig(heartbeat_window_s=ApiSettings().heartbeat_window_s),
        auth=_auth_config(),
        event_limits=IntakeSettings().limits(),
        compliance=PatrolSettings().compliance_config(),
        grid_snapshot=GridSnapshotSettings().policy(),
        cors_allow_origins=CorsSettings().origins(),
        db_pool=database.pool_policy(),
        tile_cache_bytes=TileCacheSettings().max_bytes(),
        tile_draws=TileCacheSettings().tile_draws,
        compliance_refresh_s=ApiSettings().compliance_refresh_s,
        compliance_clock=ApiSettings().compliance_clock,
        attachments=AttachmentSettings().config(),
        duplicates=DuplicateSettings().rule(),
        basemap=BasemapSettings().basemap_config(),
        notify=NotifySettings().config(),
    )


def _coverage_config() -> CoverageConfig:
    patrol = PatrolSettings().compliance_config()
    return CoverageSettings().config(patrol.timezone, patrol.max_accuracy_m)


def runner_config(group: str | None = None) -> RunnerConfig:
    """The consumers' config; `group` overrides WANGGE_CONSUMER_GROUP."""
    kafka = KafkaSettings()
    return RunnerConfig(
        bootstrap=kafka.bootstrap,
        database_url=libpq_url(DatabaseSettings().url),
        group_id=group or kafka.group_id,
        topic_partitions=kafka.topic_partitions,
        event_limits=IntakeSettings().limits(),
        compliance=PatrolSettings().compliance_config(),
        grid_snapshot=GridSnapshotSettings().policy(),
        duplicates=DuplicateSettings().rule(),
        coverage=_coverage_config(),
    )
