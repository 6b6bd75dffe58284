"""The FastAPI application factory."""

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from kafka.admin import KafkaAdminClient
from kafka.errors import KafkaError
from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

from geodata.contract import Topics
from geodata.db import migrate
from geodata.db.engine import create_db_engine
from grid_service import metrics
from grid_service.admin import router as admin_router
from grid_service.auth import AuthConfig, install_auth
from grid_service.compliance import router as compliance_router
from grid_service.docs import install_docs
from grid_service.edges import install_edges
from grid_service.errors import install_error_handlers
from grid_service.gateway import create_producer
from grid_service.gateway import router as gateway_router
from grid_service.grids import router as grids_router
from grid_service.incidents import router as incidents_router
from grid_service.map import install_map
from grid_service.ogc import router as ogc_router
from grid_service.stream import open_live_stream
from grid_service.stream import router as stream_router
from grid_service.tiles import router as tiles_router

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ApiConfig:
    """What the API needs to know, built by the composition root from settings."""

    database_url: str
    kafka_bootstrap: str
    topics: Topics = field(default_factory=Topics)
    auth: AuthConfig = field(default_factory=AuthConfig)


def _database_health(engine: Engine) -> dict[str, object]:
    try:
        with engine.connect() as connection:
            grids = connection.execute(
                text("SELECT count(*) FROM grids WHERE valid_to IS NULL")
            ).scalar_one()
        revision = migrate.current_revision(engine)
    except SQLAlchemyError as exc:
        logger.warning("database health check failed: %s", exc)
        return {"ok": False, "error": "database unreachable or schema missing"}
    return {"ok": revision == migrate.head_revision(), "revision": revision, "grids": grids}


def _broker_health(bootstrap: str) -> dict[str, object]:
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap, client_id="wangge-healthz", request_timeout_ms=3000
        )
        try:
            topics = sorted(t for t in admin.list_topics() if t.startswith("grid."))
        finally:
            admin.close()
    except KafkaError as exc:
        logger.warning("broker health check failed: %s", exc)
        return {"ok": False, "error": "broker unreachable"}
    return {"ok": True, "topics": topics}


def create_app(config: ApiConfig) -> FastAPI:
    """Build the API around one engine for the app's lifetime."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.engine = create_db_engine(config.database_url)
        app.state.producer = create_producer(config.kafka_bootstrap, topics=config.topics)
        app.state.live = open_live_stream(config.kafka_bootstrap, config.topics)
        yield
        await app.state.live.aclose()
        app.state.producer.close()
        app.state.engine.dispose()

    app = FastAPI(
        title="wangge",
        description="Urban grid governance: grids, check-ins, incidents and patrol compliance.",
        version="0.1.0",
        lifespan=lifespan,
        # FastAPI's pages load their assets from a CDN; install_docs serves /docs locally.
        docs_url=None,
        redoc_url=None,
    )

    install_error_handlers(app)
    install_auth(app, config.auth)
    app.include_router(metrics.router)
    app.include_router(gateway_router)
    app.include_router(compliance_router)
    app.include_router(grids_router)
    app.include_router(incidents_router)
    app.include_router(admin_router)
    app.include_router(ogc_router)
    app.include_router(tiles_router)
    app.include_router(stream_router)
    install_map(app)
    install_docs(app)
    install_edges(app)  # last: the outermost middleware, around the token check

    @app.get(
        "/healthz",
        tags=["operations"],
        responses={503: {"description": "degraded: the database or the broker is not ready"}},
    )
    def healthz(request: Request) -> JSONResponse:
        """Liveness and readiness of the database (schema, grids) and the broker."""
        database = _database_health(request.app.state.engine)
        broker = _broker_health(config.kafka_bootstrap)
        ready = bool(database["ok"] and broker["ok"])
        return JSONResponse(
            {"status": "ok" if ready else "degraded", "database": database, "broker": broker},
            status_code=200 if ready else 503,
        )

    return app
