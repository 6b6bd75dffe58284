"""An HTTP/1.1 load generator, run as its own process: closed loop, or open loop at a rate.

Closed loop: each of N keep-alive connections sends its next request as soon as the last
answer is in, so the rate is the server's maximum at that concurrency. Open loop: request
i is sent at start + i / rate whatever the server does (never waiting for an answer, and
waiting for a free connection counts), so a server that falls behind shows it in the
percentiles instead of slowing the client down (no coordinated omission). Its latency
counts from when it was sent, not from when it was due: how late the client's timer
woke is the client's delay, not the server's.

Plain asyncio streams rather than an HTTP library: the client must cost the server's two
cores as little as possible, and every request here is a GET with a Content-Length answer.

`python -m wangge.benchmarks.loadgen PORT PATHS_FILE --closed N | --rate R` prints a
`LoadResult` as JSON. PATHS_FILE is a JSON list of paths, or of `{"path": P, "headers":
{NAME: VALUE}}` for a request that needs headers (a token, an If-None-Match).
"""

import argparse
import asyncio
import itertools
import json
import math
import resource
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

OPEN_LOOP_CONNECTIONS = 64
"""Connections an open-loop run opens up front; a request due when all are busy waits."""
TIMEOUT_S = 60.0


@dataclass(frozen=True)
class LoadResult:
    """What one run measured: answered requests, their rate and latency, the client's CPU."""

    requests: int
    failures: int
    seconds: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    client_cpu_share: float
    statuses: dict[str, int]

    @property
    def rate(self) -> float:
        """Requests answered per second (closed: of the window; open: until the last)."""
        return self.requests / self.seconds


class _Connection:
    """One keep-alive connection that sends GETs and reads their answers."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> "_Connection":
        """Connect to 127.0.0.1:`port`."""
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def get(self, request: bytes) -> int:
        """Send one prepared request and read the whole answer; return its status."""
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length = 0
        chunked = False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        if chunked:
            await self._skip_chunks()
        elif length:
            await self.reader.readexactly(length)
        return status

    async def _skip_chunks(self) -> None:
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await self.reader.readexactly(size + 2)
            if size == 0:
                return

    def close(self) -> None:
        """Close the socket."""
        self.writer.close()


class _Recorder:
    """Latencies and statuses of the requests of the measured window.

    Closed loop keeps the answers that arrived inside the window, however early they were
    sent, so the rate is the window's: keeping only requests both sent and answered in it
    would drop about one answer time per connection, and undercount a server whose answers
    take a good part of the window. Open loop keeps every request sent in the window
    however late its answer, so a server that falls behind shows it in the percentiles,
    and the rate is over until the last.
    """

    def __init__(self, start: float, end: float, *, open_loop: bool) -> None:
        self.start = start
        self.end = end
        self.open_loop = open_loop
        self.last = end
        self.latencies: list[float] = []
        self.statuses: dict[str, int] = {}

    def record(self, began: float, finished: float, status: int) -> None:
        """Keep one answer by the rules above."""
        if self.open_loop:
            if began < self.start:
                return
        elif not self.start <= finished <= self.end:
            return
        self.last = max(self.last, finished)
        self.latencies.append(finished - began)
        self.statuses[str(status)] = self.statuses.get(str(status), 0) + 1

    def result(self, client_cpu_share: float) -> LoadResult:
        """The figures of the window."""
        ordered = sorted(self.latencies)
        failures = sum(n for status, n in self.statuses.items() if not status.startswith("2"))
        return LoadResult(
            requests=len(ordered),
            failures=failures,
            seconds=self.last - self.start,
            p50_ms=percentile(ordered, 0.50) * 1000,
            p99_ms=percentile(ordered, 0.99) * 1000,
            max_ms=(ordered[-1] if ordered else math.nan) * 1000,
            client_cpu_share=client_cpu_share,
            statuses=self.statuses,
        )


def percentile(ordered: Sequence[float], q: float) -> float:
    """The nearest-rank percentile of sorted samples (a real sample, no interpolation)."""
    if not ordered:
        return math.nan
    return ordered[max(1, math.ceil(len(ordered) * q)) - 1]


Target = str | dict[str, Any]
"""A path, or `{"path": P, "headers": {NAME: VALUE}}`, optionally with `"method"` and a
text `"body"` (a POST of a JSON check-in)."""


def _request(target: Target) -> bytes:
    """One request, prepared once: the path and any headers and body it carries."""
    spec: dict[str, Any] = {"path": target} if isinstance(target, str) else target
    body = str(spec.get("body", "")).encode()
    lines = [f"{spec.get('method', 'GET')} {spec['path']} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{name}: {value}" for name, value in spec.get("headers", {}).items()]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _requests(paths: Sequence[Target]) -> Iterator[bytes]:
    return itertools.cycle([_request(target) for target in paths])


async def closed_loop(
    port: int, paths: Sequence[Target], connections: int, duration_s: float, warmup_s: float
) -> _Recorder:
    """N connections, each sending the next request when the last is answered."""
    pending = _requests(paths)
    opened = [await _Connection.open(port) for _ in range(connections)]
    now = time.perf_counter()
    recorder = _Recorder(now + warmup_s, now + warmup_s + duration_s, open_loop=False)

    async def drive(connection: _Connection) -> None:
        while (began := time.perf_counter()) < recorder.end:
            status = await connection.get(next(pending))
            recorder.record(began, time.perf_counter(), status)

    try:
        await asyncio.gather(*(drive(connection) for connection in opened))
    finally:
        for connection in opened:
            connection.close()
    return recorder


async def open_loop(
    port: int, paths: Sequence[Target], rate: float, duration_s: float, warmup_s: float
) -> _Recorder:
    """Requests sent at a fixed rate, whatever the server does; latency from each send."""
    pending = _requests(paths)
    idle: asyncio.Queue[_Connection] = asyncio.Queue()
    opened = [await _Connection.open(port) for _ in range(OPEN_LOOP_CONNECTIONS)]
    for connection in opened:
        idle.put_nowait(connection)
    start = time.perf_counter()
    recorder = _Recorder(start + warmup_s, start + warmup_s + duration_s, open_loop=True)

    async def send(sent: float, request: bytes) -> None:
        connection = await idle.get()
        try:
            status = await connection.get(request)
        finally:
            idle.put_nowait(connection)
        recorder.record(sent, time.perf_counter(), status)

    tasks: set[asyncio.Task[None]] = set()
    try:
        for i in itertools.count():
            due = start + i / rate
            if due >= recorder.end:
                break
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(send(time.perf_counter(), next(pending)))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks)
    finally:
        for connection in opened:
            connection.close()
    return recorder


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(argv: Sequence[str] | None = None) -> None:
    """Run one load and print its LoadResult as JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("port", type=int)
    parser.add_argument("paths", type=Path, help="a JSON list of paths (or objects), sent in turn")
    how = parser.add_mutually_exclusive_group(required=True)
    how.add_argument("--closed", type=int, metavar="CONNECTIONS")
    how.add_argument("--rate", type=float, metavar="REQUESTS_PER_S")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    args = parser.parse_args(argv)
    paths = json.loads(args.paths.read_text())
    cpu_before, wall_before = _cpu_s(), time.perf_counter()
    if args.closed:
        run = closed_loop(args.port, paths, args.closed, args.duration, args.warmup)
    else:
        run = open_loop(args.port, paths, args.rate, args.duration, args.warmup)
    # Bounded: a server that stops answering ends the run with an error, not a hang.
    recorder = asyncio.run(asyncio.wait_for(run, args.warmup + args.duration + TIMEOUT_S))
    # How much of a core the client took: near 1.0, the client, not the server, was the limit.
    share = (_cpu_s() - cpu_before) / (time.perf_counter() - wall_before)
    print(json.dumps(asdict(recorder.result(share))))


if __name__ == "__main__":
    main()
