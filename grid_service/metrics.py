"""GET /metrics: Prometheus exposition of this process, or of every wangge process."""

import os

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

router = APIRouter(tags=["operations"])


@router.get("/metrics", response_class=Response)
def metrics() -> Response:
    """Prometheus metrics: events in, assigned, refused by reason, duplicates, lag, latency.

    Under `wangge up` every consumer process writes its samples to a shared directory
    (PROMETHEUS_MULTIPROC_DIR) and this adds them up.
    """
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry = REGISTRY
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
