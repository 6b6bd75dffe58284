"""Configuration from `WANGGE_*` environment variables (and an optional `.env`)."""

import re
from datetime import timedelta
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from geodata.attachments import DEFAULT_MAX_BYTES as DEFAULT_ATTACHMENT_MAX_BYTES
from geodata.attachments import AttachmentConfig
from geodata.basemap import Basemap, parse_basemap
from geodata.compliance import ComplianceConfig
from geodata.contract import Topics
from geodata.coverage import CoverageConfig
from geodata.db.engine import PoolPolicy
from geodata.db.tile_memory import DEFAULT_DRAWS as DEFAULT_TILE_DRAWS
from geodata.db.tile_memory import DEFAULT_MAX_BYTES as DEFAULT_TILE_CACHE_BYTES
from geodata.duplicates import DEFAULT_RADIUS_M, DEFAULT_WINDOW, DuplicateRule
from geodata.events import EventTimeLimits
from geodata.notify import NotifyConfig
from geodata.passwords import SignInPolicy
from geodata.snapshot_policy import SnapshotPolicy

LOCAL_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/wangge"


def _config() -> SettingsConfigDict:
    return SettingsConfigDict(env_prefix="WANGGE_", env_file=".env", extra="ignore")


class DatabaseSettings(BaseSettings):
    """Where PostGIS is; unset means the local cluster that `wangge services` manages."""

    model_config = _config()

    database_url: str | None = None
    allow_apt: bool = Field(
        default=True, description="may `services start` apt-get install PostGIS when missing"
    )
    db_pool_size: int = Field(
        default=PoolPolicy.size,
        ge=5,
        description="connections the API keeps open; it runs routes in this many threads"
        " less four, the connections of its health probe, grid snapshot check, tile"
        " stamp reads and compliance memory refresh",
    )
    db_pool_recycle_s: float = Field(
        default=PoolPolicy.recycle_s, gt=0, description="seconds before a connection is replaced"
    )

    @property
    def is_configured(self) -> bool:
        """True when the user pointed us at a database of their own."""
        return self.database_url is not None

    @property
    def url(self) -> str:
        """The effective libpq URL."""
        return self.database_url or LOCAL_DATABASE_URL

    def pool_policy(self) -> PoolPolicy:
        """The API's connection pool these settings describe."""
        return PoolPolicy(size=self.db_pool_size, recycle_s=self.db_pool_recycle_s)


class KafkaSettings(BaseSettings):
    """Where the Kafka broker is; unset means a local Tansu broker that we start."""

    model_config = _config()

    kafka_bootstrap: str | None = None
    local_broker_port: int = Field(default=9092, description="port of the local Tansu broker")
    topic_partitions: int = Field(default=6, ge=1)
    topic_namespace: str = Field(default="", description="prefix of every topic name")
    consumer_group: str = Field(default="wangge-consumers", description="Kafka consumer group")

    @property
    def is_configured(self) -> bool:
        """True when the user pointed us at a broker of their own."""
        return self.kafka_bootstrap is not None

    @property
    def bootstrap(self) -> str:
        """The effective `host:port[,host:port]` list."""
        return self.kafka_bootstrap or f"127.0.0.1:{self.local_broker_port}"

    @property
    def group_id(self) -> str:
        """The consumer group, under the same namespace as the topics it reads."""
        return f"{self.topic_namespace}{self.consumer_group}"

    @property
    def topics(self) -> Topics:
        """The contract's topic names under the configured namespace."""
        return Topics.under(self.topic_namespace)


class IntakeSettings(BaseSettings):
    """What events the gateway and the consumers take."""

    model_config = _config()

    event_max_age_days: int = Field(
        default=30,
        ge=0,
        description="refuse events (stale_timestamp) dated more than this many days before"
        " now; 0: only the fixed floor (2000-01-01), for replays of history",
    )

    def limits(self) -> EventTimeLimits:
        """The event-time limits these settings ask for."""
        if self.event_max_age_days == 0:
            return EventTimeLimits()
        return EventTimeLimits(max_age=timedelta(days=self.event_max_age_days))


class DuplicateSettings(BaseSettings):
    """How near a report must be to an open case of its category to be linked as a
    probable duplicate (geodata.duplicates): the consumers link, the gateway shows."""

    model_config = _config()

    duplicate_radius_m: float = Field(
        default=DEFAULT_RADIUS_M, gt=0, le=1000, description="metres from the open case"
    )
    duplicate_window_h: float = Field(
        default=DEFAULT_WINDOW.total_seconds() / 3600,
        gt=0,
        le=24 * 30,
        description="hours between the two reports' times, either way",
    )

    def rule(self) -> DuplicateRule:
        """The duplicate rule these settings ask for."""
        return DuplicateRule(self.duplicate_radius_m, timedelta(hours=self.duplicate_window_h))


class CoverageSettings(BaseSettings):
    """How the storage stage measures the share of a grid its walks cover (geodata.coverage)."""

    model_config = _config()

    coverage_buffer_m: float = Field(
        default=25.0, gt=0, le=500, description="metres around each usable fix counted as walked"
    )

    def config(self, timezone: str, max_accuracy_m: float) -> CoverageConfig:
        """The coverage config, with the patrol rule's zone and accuracy limit."""
        return CoverageConfig(
            buffer_m=self.coverage_buffer_m, timezone=timezone, max_accuracy_m=max_accuracy_m
        )


class PatrolSettings(BaseSettings):
    """The patrol rule's parameters (docs/PATROL_RULE.md), with the rule's defaults.

    The compliance engine, the API and `wangge compliance` each build the rule from these,
    so one setting changes it everywhere at once.
    """

    model_config = _config()

    patrol_weekly_required: int = Field(
        default=3, ge=0, description="counted patrols a worker owes each week in their grid"
    )
    patrol_min_checkins: int = Field(
        default=3, ge=1, description="usable check-ins a walk needs to be a valid patrol"
    )
    patrol_min_duration_minutes: float = Field(
        default=10, ge=0, description="minutes from a patrol's first check-in to its last"
    )
    patrol_gap_minutes: float = Field(
        default=30, ge=0, description="a longer silence between check-ins ends a patrol"
    )
    patrol_max_accuracy_m: float = Field(
        default=100, ge=0, description="a check-in reported less accurate than this is unusable"
    )
    patrol_max_counted_per_day: int = Field(
        default=1, ge=1, description="valid patrols that count on one local day"
    )
    patrol_allowed_lateness_hours: float = Field(
        default=48, ge=0, description="how long after a week ends late check-ins still count"
    )
    patrol_timezone: str = Field(
        default="Asia/Shanghai", description="the IANA time zone days and weeks are cut in"
    )
    patrol_refuse_mocked: bool = Field(
        default=True, description="a check-in the phone says is mocked proves no presence"
    )
    patrol_refuse_implausible_speed: bool = Field(
        default=True, description="a check-in flagged implausible_speed proves no presence"
    )

    @field_validator("patrol_timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}, e.g. Asia/Shanghai") from exc
        return value

    def compliance_config(self) -> ComplianceConfig:
        """The rule these settings describe, as the core takes it."""
        return ComplianceConfig(
            timezone=self.patrol_timezone,
            max_accuracy_m=self.patrol_max_accuracy_m,
            patrol_gap=timedelta(minutes=self.patrol_gap_minutes),
            min_checkins=self.patrol_min_checkins,
            min_duration=timedelta(minutes=self.patrol_min_duration_minutes),
            max_counted_per_day=self.patrol_max_counted_per_day,
            weekly_required=self.patrol_weekly_required,
            allowed_lateness=timedelta(hours=self.patrol_allowed_lateness_hours),
            refuse_mocked=self.patrol_refuse_mocked,
            refuse_implausible_speed=self.patrol_refuse_implausible_speed,
        )


class GridSnapshotSettings(BaseSettings):
    """How often the API and the consumers check their grid snapshot for changes.

    Both adapters build their `SnapshotPolicy` from these, so a boundary or staff change
    reaches the API's locate and the consumers' assignment within the same interval.
    """

    model_config = _config()

    grid_check_interval_s: float = Field(
        default=SnapshotPolicy.check_interval_s,
        ge=0,
        description="seconds between checks of grids and staff for changes (a reload only"
        " when they changed)",
    )

    def policy(self) -> SnapshotPolicy:
        """The snapshot policy these settings describe."""
        return SnapshotPolicy(check_interval_s=self.grid_check_interval_s)


class TileCacheSettings(BaseSettings):
    """How much of the rendered vector tiles the API keeps in memory, and how many it
    draws at once."""

    model_config = _config()

    tile_cache_mb: float = Field(
        default=DEFAULT_TILE_CACHE_BYTES / 2**20,
        ge=0,
        description="MiB of rendered public tiles kept per API process (least recently used"
        " dropped first); 0 keeps none",
    )

    tile_draws: int = Field(
        default=DEFAULT_TILE_DRAWS,
        ge=1,
        description="vector tiles one API process draws from the database at once; the"
        " others wait their turn",
    )

    def max_bytes(self) -> int:
        """The bound in bytes."""
        return int(self.tile_cache_mb * 2**20)


class CorsSettings(BaseSettings):
    """Which other origins' web pages may read the API (a city's own web GIS, say)."""

    model_config = _config()

    cors_allow_origins: str = Field(
        default="",
        description="comma-separated origins (scheme://host[:port]) allowed to read the API"
        " from a browser, or `*` for any; empty: no CORS headers at all",
    )

    @field_validator("cors_allow_origins")
    @classmethod
    def _origins_only(cls, value: str) -> str:
        for origin in _split_origins(value):
            if origin != "*" and not re.fullmatch(r"https?://[^/?#\s]+", origin):
                raise ValueError(f"{origin!r} is not an origin such as https://gis.example.cn")
        return value

    def origins(self) -> tuple[str, ...]:
        """The allowed origins, as the CORS middleware takes them."""
        return _split_origins(self.cors_allow_origins)


def _split_origins(value: str) -> tuple[str, ...]:
    # A browser sends Origin without a trailing slash, so one in the setting would never match.
    return tuple(part.strip().rstrip("/") for part in value.split(",") if part.strip())


class LocalServicesSettings(BaseSettings):
    """Where local services keep their pid files and logs."""

    model_config = _config()

    state_dir: Path = Path.home() / ".local" / "state" / "wangge"


class AttachmentSettings(BaseSettings):
    """Where the API keeps incident photos, and how large an upload may be."""

    model_config = _config()

    attachments_dir: Path | None = Field(
        default=None,
        description="directory of the stored photos (named by SHA-256); unset:"
        " WANGGE_STATE_DIR/attachments",
    )
    attachment_max_bytes: int = Field(
        default=DEFAULT_ATTACHMENT_MAX_BYTES,
        ge=1024,
        description="largest photo upload, bytes (the worker app sends them resized to 1600 px)",
    )

    attachments_s3_endpoint: str | None = Field(
        default=None,
        description="an S3-compatible endpoint, http(s)://host[:port]; set: photos go to"
        " WANGGE_ATTACHMENTS_S3_BUCKET there instead of the directory",
    )
    attachments_s3_bucket: str = Field(default="wangge", description="the photos' bucket")
    attachments_s3_prefix: str = Field(default="attachments/", description="their key prefix")
    attachments_s3_access_key: str = Field(default="", description="the S3 access key")
    attachments_s3_secret_key: SecretStr = Field(
        default=SecretStr(""), description="the S3 secret key"
    )
    attachments_s3_region: str | None = Field(default=None, description="the bucket's region")

    def config(self) -> AttachmentConfig:
        """The attachments' config these settings describe."""
        directory = self.attachments_dir or LocalServicesSettings().state_dir / "attachments"
        s3 = None
        if self.attachments_s3_endpoint:
            from geodata.s3_store import S3Location

            s3 = S3Location(
                self.attachments_s3_endpoint,
                self.attachments_s3_bucket,
                access_key=self.attachments_s3_access_key,
                secret_key=self.attachments_s3_secret_key.get_secret_value(),
                prefix=self.attachments_s3_prefix,
                region=self.attachments_s3_region,
            )
        return AttachmentConfig(directory, self.attachment_max_bytes, s3)


class AccountSettings(BaseSettings):
    """How people sign in: sessions, lock-out, the sign-in rate and the password rule."""

    model_config = _config()

    session_hours: float = Field(
        default=12,
        gt=0,
        le=24 * 90,
        description="a signed-in session ends this long after it began",
    )
    session_cookie_secure: bool = Field(
        default=False,
        description="mark the session cookie Secure on http requests too (TLS ended by a"
        " proxy the API does not see); requests over https get it anyway",
    )
    sign_in_max_failures: int = Field(
        default=5, ge=1, description="failed sign-ins in a row that lock a name"
    )
    sign_in_lockout_minutes: float = Field(
        default=15, gt=0, description="how long a locked name stays locked"
    )
    sign_in_per_minute: float = Field(
        default=10, gt=0, description="sign-in and password-change attempts per client address"
    )
    password_min_length: int = Field(
        default=10, ge=8, le=128, description="characters a chosen password has at least"
    )

    def policy(self) -> SignInPolicy:
        """The sign-in policy these settings describe."""
        return SignInPolicy(
            max_failures=self.sign_in_max_failures,
            lockout=timedelta(minutes=self.sign_in_lockout_minutes),
            session_lifetime=timedelta(hours=self.session_hours),
            min_password_length=self.password_min_length,
        )


class ApiSettings(BaseSettings):
    """The HTTP API's bind address, and how /healthz judges the consumers."""

    model_config = _config()

    api_host: str = "127.0.0.1"
    api_port: int = 8000
    heartbeat_window_s: float = Field(
        default=30.0,
        gt=0,
        description="/healthz counts a consumer stage alive when a member beat this recently",
    )
    compliance_refresh_s: float = Field(
        default=0.5,
        ge=0,
        description="seconds between the API's reads of the compliance engine's new patrols"
        " into the open weeks it holds in memory; 0 holds none (every read recomputes)",
    )
    compliance_clock: Literal["wall", "engine"] = Field(
        default="wall",
        description="the time compliance is answered as of without as_of: wall, or engine,"
        " the compliance engine's latest check-in time (`wangge up --simulate` sets it for"
        " a replayed week)",
    )


class PublicUrlSettings(BaseSettings):
    """Where phones reach the API: the base of the URLs handed to tracking apps."""

    model_config = _config()

    public_url: str | None = Field(
        default=None,
        description="the API's address as phones reach it (https://wangge.example.cn);"
        " unset: http://WANGGE_API_HOST:WANGGE_API_PORT",
    )

    def base_url(self) -> str:
        """The public address, or the bind address when none is set."""
        if self.public_url:
            return self.public_url.rstrip("/")
        api = ApiSettings()
        return f"http://{api.api_host}:{api.api_port}"


class BasemapSettings(BaseSettings):
    """What the supervisors' map draws under the grids (docs/BASEMAP.md); none by default,
    so the map loads nothing from outside this server."""

    model_config = _config()

    basemap: str = Field(
        default="none",
        description="none; amap (gaode), amap-satellite, tencent (GCJ-02), tianditu,"
        " tianditu-satellite; or an http(s) XYZ template ({z}/{x}/{y}) or style URL",
    )
    basemap_key: str | None = Field(default=None, description="Tianditu's browser key (tk)")
    basemap_crs: Literal["wgs84", "gcj02"] = Field(
        default="wgs84", description="the datum of a URL's tiles (gcj02: AutoNavi, Tencent)"
    )
    basemap_attribution: str = Field(default="", description="a URL's attribution text")
    basemap_subdomains: str = Field(default="", description="the letters {s} takes, e.g. abc")
    basemap_origins: str = Field(
        default="",
        description="comma-separated origins a style's tiles, glyphs and sprites come from",
    )

    @model_validator(mode="after")
    def _usable(self) -> "BasemapSettings":
        self.basemap_config()  # raises InvalidBasemap (a ValueError) with the reason
        return self

    def basemap_config(self) -> Basemap | None:
        """The basemap these settings ask for; None: none."""
        return parse_basemap(
            self.basemap,
            key=self.basemap_key,
            crs=self.basemap_crs,
            attribution=self.basemap_attribution,
            subdomains=self.basemap_subdomains,
            extra_origins=_split_origins(self.basemap_origins),
        )


class NotifySettings(BaseSettings):
    """Calls to workers from the map (docs/NOTIFY.md): the webhook they are POSTed to, and
    how a failed delivery is retried."""

    model_config = _config()

    notify_webhook_url: str | None = Field(
        default=None,
        description="http(s) URL each call is POSTed to as JSON (an SMS or messaging"
        " gateway); unset: calling is off and the notify route answers 503",
    )
    notify_max_attempts: int = Field(default=8, ge=1, le=100, description="attempts per call")
    notify_retry_base_s: float = Field(
        default=5, gt=0, description="seconds before the first retry; each next one doubles"
    )
    notify_retry_max_s: float = Field(default=900, gt=0, description="the longest retry delay")
    notify_timeout_s: float = Field(default=5, gt=0, description="seconds one attempt may take")

    def config(self) -> NotifyConfig:
        """The notify config these settings describe."""
        return NotifyConfig(
            webhook_url=self.notify_webhook_url or None,
            max_attempts=self.notify_max_attempts,
            retry_base_s=self.notify_retry_base_s,
            retry_max_s=max(self.notify_retry_max_s, self.notify_retry_base_s),
            timeout_s=self.notify_timeout_s,
        )


class RetentionSettings(BaseSettings):
    """How many weeks of check-ins stay in PostgreSQL (docs/HISTORY.md, "Archive")."""

    model_config = _config()

    retention_weeks: int | None = Field(
        default=None,
        ge=1,
        description="weeks of check-ins `wangge archive --apply-retention` keeps, the"
        " watermark's week included; unset keeps everything",
    )
