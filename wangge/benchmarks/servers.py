"""The servers `wangge bench api` loads: the real app and its ceiling, each under uvicorn.

Both run the same way, one uvicorn worker in a process of its own with the access log
off, so that the only difference between them is what the app does per request; so does
the peer `wangge bench peers` runs beside them, from an environment of its own.
"""

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI

CEILING_PATH = "/ceiling"
API_FACTORY = "wangge.benchmarks.servers:create_api_app"
CEILING_FACTORY = "wangge.benchmarks.servers:create_ceiling_app"
# Several servers may start at once on two loaded cores (an app's imports alone take 20 s).
_START_TIMEOUT_S = 120.0


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


@dataclass(frozen=True)
class Server:
    """An app to run under uvicorn, and the environment it runs in.

    `python` may be another environment's interpreter (a peer server installed apart from
    wangge), whose app may be a module attribute rather than a factory (`is_factory`);
    `cwd` keeps a server that reads a `.env` file away from the checkout's.
    """

    app: str
    env: dict[str, str]
    python: str = sys.executable
    is_factory: bool = True
    cwd: Path | None = None


@contextlib.contextmanager
def serve(factory: str, env: dict[str, str]) -> Iterator[int]:
    """Run `factory` under uvicorn, one worker, on a free local port; yield the port."""
    with serve_all([Server(factory, env)]) as ports:
        yield ports[0]


@contextlib.contextmanager
def serve_all(servers: Sequence[Server]) -> Iterator[list[int]]:
    """Start every server at once (their start-ups overlap); yield the ports once all answer."""
    started: list[tuple[Server, subprocess.Popen[bytes], int]] = []
    try:
        for server in servers:
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                port = int(probe.getsockname()[1])
            command = [server.python, "-m", "uvicorn", server.app]
            command += ["--factory"] if server.is_factory else []
            command += ["--port", str(port), "--workers", "1", "--log-level", "warning"]
            command += ["--no-access-log"]
            process = subprocess.Popen(command, env=server.env, cwd=server.cwd)
            started.append((server, process, port))
        deadline = time.monotonic() + _START_TIMEOUT_S
        for server, process, port in started:
            while True:
                with (
                    contextlib.suppress(OSError),
                    socket.create_connection(("127.0.0.1", port), 0.2),
                ):
                    break
                if process.poll() is not None:
                    raise RuntimeError(
                        f"{server.app} exited ({process.returncode}) before answering under "
                        "uvicorn: its error is above"
                    )
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{server.app} did not answer in {_START_TIMEOUT_S:.0f} s")
                time.sleep(0.05)
        yield [port for _, _, port in started]
    finally:
        for _, process, _ in started:
            process.terminate()
        for _, process, _ in started:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
