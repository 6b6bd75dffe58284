"""The servers `wangge bench api` loads: the real app and its ceiling, each under uvicorn.

Both run the same way, one uvicorn worker in a process of its own with the access log
off, so that the only difference between them is what the app does per request.
"""

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI

CEILING_PATH = "/ceiling"
API_FACTORY = "wangge.benchmarks.servers:create_api_app"
CEILING_FACTORY = "wangge.benchmarks.servers:create_ceiling_app"
_START_TIMEOUT_S = 60.0


def create_api_app() -> "FastAPI":
    """The real app as `wangge serve` configures it (a uvicorn factory)."""
    from grid_service.app import create_app
    from wangge.adapter_configs import api_config

    return create_app(api_config())


def create_ceiling_app() -> "FastAPI":
    """The ceiling: FastAPI with one async route returning a constant (a uvicorn factory)."""
    from fastapi import FastAPI

    app = FastAPI()

    @app.get(CEILING_PATH)
    async def ceiling() -> dict[str, bool]:
        return {"ok": True}

    return app


@contextlib.contextmanager
def serve(factory: str, env: dict[str, str]) -> Iterator[int]:
    """Run `factory` under uvicorn, one worker, on a free local port; yield the port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    command = [sys.executable, "-m", "uvicorn", factory, "--factory", "--port", str(port)]
    command += ["--workers", "1", "--log-level", "warning", "--no-access-log"]
    server = subprocess.Popen(command, env=env)
    try:
        deadline = time.monotonic() + _START_TIMEOUT_S
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError(f"{factory} did not start under uvicorn")
            time.sleep(0.05)
        yield port
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
