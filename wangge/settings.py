"""Configuration from `WANGGE_*` environment variables (and an optional `.env`)."""

from datetime import timedelta
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from geodata.contract import Topics
from geodata.events import EventTimeLimits

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

    @property
    def is_configured(self) -> bool:
        """True when the user pointed us at a database of their own."""
        return self.database_url is not None

    @property
    def url(self) -> str:
        """The effective libpq URL."""
        return self.database_url or LOCAL_DATABASE_URL


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


class LocalServicesSettings(BaseSettings):
    """Where local services keep their pid files and logs."""

    model_config = _config()

    state_dir: Path = Path.home() / ".local" / "state" / "wangge"


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
