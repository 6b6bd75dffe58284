"""A real local HTTP receiver for the notify webhook: fails the first calls, then accepts."""

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Receiver:
    """What the receiver was sent: (HTTP status it answered, headers, JSON body) per POST."""

    url: str
    failures_left: int
    received: list[tuple[int, dict[str, str], dict[str, Any]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def wait_for(self, count: int, timeout_s: float = 20) -> None:
        """Until `count` POSTs arrived, or AssertionError after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while len(self.received) < count:
            assert time.monotonic() < deadline, f"{len(self.received)} of {count}: {self.received}"
            time.sleep(0.05)


@contextlib.contextmanager
def receiver(failures: int) -> Iterator[Receiver]:
    """An HTTP server on a free local port answering 503 to its first `failures` POSTs."""
    state = Receiver("", failures)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with state.lock:
                status = 503 if state.failures_left > 0 else 200
                state.failures_left = max(0, state.failures_left - 1)
                state.received.append((status, dict(self.headers.items()), body))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
