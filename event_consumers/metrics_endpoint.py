"""`wangge consume --metrics-port`: one Prometheus endpoint for every stage of the command.

The compliance stage may run in a child process, so the samples of both stages go to a
multiprocess directory and the endpoint adds them up. prometheus-client picks its value
store when the first metric is made, so this must run before `event_consumers.metrics`
is imported; it imports nothing of wangge for that reason.
"""

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


@contextmanager
def serve_metrics(port: int, host: str = "127.0.0.1") -> Iterator[None]:
    """Serve every process's metrics of this command on `port` until the block ends."""
    own_dir = None
    if not os.environ.get(MULTIPROC_ENV):
        # Under `wangge up` the directory is shared with the API's /metrics already.
        own_dir = tempfile.mkdtemp(prefix="wangge-consume-metrics-")
        os.environ[MULTIPROC_ENV] = own_dir
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    server, thread = start_http_server(port, addr=host, registry=registry)
    try:
        yield
    finally:
        server.shutdown()
        thread.join(timeout=5)
        if own_dir is not None:
            del os.environ[MULTIPROC_ENV]
            shutil.rmtree(own_dir, ignore_errors=True)
