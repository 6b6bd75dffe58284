"""The FastAPI application factory."""

import asyncio
import contextlib
import gc
import logging
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

from anyio import to_thread
from fastapi import FastAPI

from geodata.attachments import AttachmentConfig
from geodata.basemap import Basemap
from geodata.compliance import ComplianceConfig
from geodata.contract import Topics
from geodata.db.compliance_memory import ComplianceMemory
from geodata.db.engine import PoolPolicy, create_db_engine
from geodata.db.engine_clock import EngineClock, utc_now
from geodata.db.grid_cache import GridSnapshotCache
from geodata.db.tile_memory import DEFAULT_DRAWS as DEFAULT_TILE_DRAWS
from geodata.db.tile_memory import DEFAULT_MAX_BYTES as DEFAULT_TILE_CACHE_BYTES
from geodata.db.tile_memory import TileMemory
from geodata.duplicates import DuplicateRule
from geodata.events import DEFAULT_TIME_LIMITS, EventTimeLimits
from geodata.notify import NotifyConfig
from geodata.snapshot_policy import SnapshotPolicy
from grid_service import health, metrics
from grid_service.admin import router as admin_router
from grid_service.attachments import install_attachments
from grid_service.auth import AuthConfig, install_auth
from grid_service.compliance import router as compliance_router
from grid_service.compliance_export import router as compliance_export_router
from grid_service.cors import install_cors
from grid_service.coverage import router as coverage_router
from grid_service.devices import router as devices_router
from grid_service.docs import install_docs
from grid_service.edges import install_edges
from grid_service.errors import install_error_handlers
from grid_service.evaluation import router as evaluation_router
from grid_service.gateway import install_gateway_errors
from grid_service.gateway import router as gateway_router
from grid_service.grids import router as grids_router
from grid_service.health import HealthConfig
from grid_service.incidents import router as incidents_router
from grid_service.map import install_map
from grid_service.notify import install_notify, start_notify_sender
from grid_service.ogc import router as ogc_router
from grid_service.open311 import router as open311_router
from grid_service.producer import create_producer
from grid_service.routing import add_routes
from grid_service.session import install_sessions
from grid_service.stream import open_live_stream
from grid_service.stream import router as stream_router
from grid_service.tiles import router as tiles_router
from grid_service.trackers import install_trackers
from grid_service.tracks import router as tracks_router
from grid_service.worker_app import install_worker_app

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ApiConfig:
    """What the API needs to know, built by the composition root from settings."""

    database_url: str
    kafka_bootstrap: str
    topics: Topics = field(default_factory=Topics)
    auth: AuthConfig = field(default_factory=AuthConfig)
    #: Partitions each topic must have; /healthz is not ready while one has another count.
    topic_partitions: int = 6
    #: The intake stage's consumer group (namespaced); the compliance stage's is + ".compliance".
    consumer_group: str = "wangge-consumers"
    health: HealthConfig = field(default_factory=HealthConfig)
    #: How old (and how far ahead) an event the gateway takes may be.
    event_limits: EventTimeLimits = DEFAULT_TIME_LIMITS
    #: The patrol rule the compliance routes read with (settings: WANGGE_PATROL_*).
    compliance: ComplianceConfig = field(default_factory=ComplianceConfig)
    #: How locate's grid snapshot is checked and built (the consumers' is the same).
    grid_snapshot: SnapshotPolicy = field(default_factory=SnapshotPolicy)
    #: Origins whose pages may read the API from a browser (CORS); empty: no CORS headers.
    cors_allow_origins: tuple[str, ...] = ()
    #: The one connection pool of the process (settings: WANGGE_DB_POOL_*).
    db_pool: PoolPolicy = field(default_factory=PoolPolicy)
    #: Bytes of rendered tiles kept in memory (settings: WANGGE_TILE_CACHE_MB).
    tile_cache_bytes: int = DEFAULT_TILE_CACHE_BYTES
    #: Tiles drawn from the database at once; the others wait (settings: WANGGE_TILE_DRAWS).
    tile_draws: int = DEFAULT_TILE_DRAWS
    #: Seconds between reads of the compliance engine's new patrols into memory; 0: none
    #: held, compliance read from the database (settings: WANGGE_COMPLIANCE_REFRESH_S).
    compliance_refresh_s: float = 0.5
    #: "now" of compliance answers without `as_of`: `wall`, or `engine`, the compliance
    #: engine's watermark, for a replayed week (settings: WANGGE_COMPLIANCE_CLOCK).
    compliance_clock: Literal["wall", "engine"] = "wall"
    #: Where incident photos are kept (settings: WANGGE_ATTACHMENTS_DIR, under the state
    #: directory); a config built in code keeps them in the system's temporary directory.
    attachments: AttachmentConfig = field(
        default_factory=lambda: AttachmentConfig(Path(tempfile.gettempdir()) / "wangge-attachments")
    )
    #: How near a report must be to an open case for the gateway to show it as a probable
    #: original (settings: WANGGE_DUPLICATE_*; the consumers link with the same).
    duplicates: DuplicateRule = field(default_factory=DuplicateRule)
    #: What the map draws under the grids; None: nothing from outside (WANGGE_BASEMAP).
    basemap: Basemap | None = None
    #: Where calls to workers go and how they are retried (settings: WANGGE_NOTIFY_*);
    #: no webhook: calling is off.
    notify: NotifyConfig = field(default_factory=NotifyConfig)


BACKGROUND_CONNECTIONS: Final = 4
"""Connections the API uses outside its route threads, one at a time each: the health
probe's, the grid snapshot's background check, the tile layers' stamp reads and the
compliance memory's refresh."""


def route_threads(pool: PoolPolicy) -> int:
    """How many threads may run routes at once (sync routes, `run_in_threadpool`): the
    pool less the background users' connections, so that no thread waits for one."""
    return max(1, pool.size - BACKGROUND_CONNECTIONS)


def create_app(config: ApiConfig) -> FastAPI:
    """Build the API around one engine for the app's lifetime."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = app.state.engine = create_db_engine(config.database_url, config.db_pool)
        # AnyIO's default limiter runs every sync route and `run_in_threadpool` call; more
        # threads than connections would only queue on the pool (docs/ARCHITECTURE.md).
        limiter = to_thread.current_default_thread_limiter()
        default_threads = limiter.total_tokens
        limiter.total_tokens = route_threads(config.db_pool)
        app.state.grid_snapshots = GridSnapshotCache(engine, config.grid_snapshot)
        # Tile stamps trusted as long as the grid snapshot goes unchecked: one interval.
        tiles = app.state.tile_memory = TileMemory(
            engine, config.grid_snapshot.check_interval_s, config.tile_cache_bytes
        )
        tiles.start()
        app.state.tile_draws = asyncio.Semaphore(config.tile_draws)
        # Loaded and refreshed from the first compliance request on (the route starts it).
        clock = app.state.engine_clock = (
            EngineClock(engine) if config.compliance_clock == "engine" else None
        )
        if clock is not None:
            clock.start()
        app.state.compliance_memory = ComplianceMemory(
            engine,
            config.compliance,
            config.compliance_refresh_s,
            clock=clock if clock is not None else utc_now,
        )
        producer = app.state.producer = create_producer(
            config.kafka_bootstrap, topics=config.topics
        )
        monitor = app.state.health = health.HealthMonitor(
            engine,
            config.kafka_bootstrap,
            topics=config.topics,
            topic_partitions=config.topic_partitions,
            consumer_group=config.consumer_group,
            producer=producer,
            config=config.health,
        )
        monitor.start()
        app.state.live = open_live_stream(config.kafka_bootstrap, config.topics)
        notify_sender = app.state.notify_sender = start_notify_sender(engine, config.notify)
        # What startup made (the modules, the app, its routes: some 250,000 objects) lives
        # as long as the process, yet each full collection walked it, a pause of every
        # request some nine times the rest of the heap's; frozen, collections leave it out.
        # No collect first: startup's little garbage waits for the unfreeze.
        gc.freeze()
        yield
        # Back to the collector, so that an app started again in this process (the tests)
        # does not keep this one's.
        gc.unfreeze()
        await app.state.live.aclose()
        if notify_sender is not None:
            notify_sender.stop()
        monitor.stop()
        app.state.compliance_memory.stop()
        if clock is not None:
            clock.stop()
        tiles.stop()
        producer.close()
        engine.dispose()
        limiter.total_tokens = default_threads

    app = FastAPI(
        title="wangge",
        description="Urban grid governance: grids, check-ins, incidents and patrol compliance.",
        version="0.1.0",
        lifespan=lifespan,
        # FastAPI's pages load their assets from a CDN; install_docs serves /docs locally.
        docs_url=None,
        redoc_url=None,
    )

    app.state.compliance_config = config.compliance
    app.state.event_limits = config.event_limits
    app.state.duplicate_rule = config.duplicates
    install_error_handlers(app)
    install_gateway_errors(app)
    install_auth(app, config.auth)
    # Routes are matched in order, one regular expression after another: the hottest paths
    # (map tiles, phones' posts, GIS clients' reads, locate and nearest, a worker's walk)
    # first, each under a path of its own, so that a tile hit is not tried against fifty
    # routes before it.
    add_routes(app, tiles_router)
    add_routes(app, gateway_router)
    add_routes(app, grids_router)
    add_routes(app, tracks_router)
    # OGC's forty routes (each with its trailing-slash twin) after the short lists.
    add_routes(app, ogc_router)
    install_sessions(app)
    add_routes(app, health.router)
    add_routes(app, metrics.router)
    install_trackers(app)
    add_routes(app, devices_router)
    add_routes(app, compliance_export_router)
    add_routes(app, compliance_router)
    add_routes(app, evaluation_router)
    add_routes(app, coverage_router)
    add_routes(app, incidents_router)
    add_routes(app, admin_router)
    add_routes(app, open311_router)
    add_routes(app, stream_router)
    install_attachments(app, config.attachments)
    install_notify(app)
    install_map(app, config.basemap)
    install_worker_app(app)
    install_docs(app)
    install_edges(app)  # last: the outermost middleware, around the token check
    install_cors(app, config.cors_allow_origins)  # around the edge, so its refusals carry CORS
    # Around even that: every answer is timed and counted, the edge's refusals included.
    metrics.install_http_metrics(app)

    return app
