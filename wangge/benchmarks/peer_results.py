"""What `wangge bench peers` measured: each read on both servers, and how it is shown.

A read's throughput is every round's answers over every round's seconds; its p50 and p99
are the medians of the rounds' (with one pair of rounds, that round's; with two, their
mean), so that one round disturbed by the machine moves them less than it would a pool.
"""

import statistics
from dataclasses import dataclass

from rich.table import Table

from wangge.benchmarks.loadgen import LoadResult
from wangge.benchmarks.peer_env import PeerEnvironment
from wangge.benchmarks.peer_reads import CONNECTIONS, SERVER_NAMES, TIPG, Read
from wangge.benchmarks.rows import BenchmarkRow


@dataclass(frozen=True)
class Side:
    """One server's rounds of one read."""

    server: str
    rounds: list[LoadResult]
    answer_bytes: int

    @property
    def rate(self) -> float:
        """Requests answered per second over every round."""
        return sum(r.requests for r in self.rounds) / sum(r.seconds for r in self.rounds)

    @property
    def p50_ms(self) -> float:
        """The median of the rounds' p50s."""
        return statistics.median(r.p50_ms for r in self.rounds)

    @property
    def p99_ms(self) -> float:
        """The median of the rounds' p99s (with two rounds, their mean)."""
        return statistics.median(r.p99_ms for r in self.rounds)


@dataclass(frozen=True)
class PeerRow:
    """A read measured on wangge and on its peer, and whether the target is met."""

    read: Read
    ours: Side
    peer: Side

    @property
    def ratio(self) -> float:
        """wangge's throughput as a share of the peer's."""
        return self.ours.rate / self.peer.rate

    @property
    def p99_ratio(self) -> float:
        """wangge's p99 as a multiple of the peer's."""
        return self.ours.p99_ms / self.peer.p99_ms

    @property
    def met(self) -> bool:
        """Every part of the read's target."""
        read = self.read
        return (
            self.ratio >= read.min_ratio
            and (not read.p99_at_most_peer or self.ours.p99_ms <= self.peer.p99_ms)
            and (read.p99_at_most_ms is None or self.ours.p99_ms <= read.p99_at_most_ms)
        )


@dataclass(frozen=True)
class Sessions:
    """New PostgreSQL sessions on each server's database, from before it started."""

    pool_size: int
    wangge: int
    wangge_under_load: int
    rendering: int
    tipg: int

    @property
    def met(self) -> bool:
        """wangge opened no more sessions than its pool holds."""
        return self.wangge <= self.pool_size


@dataclass(frozen=True)
class PeersResult:
    """Every read's row, the sessions, and what ran."""

    rows: list[PeerRow]
    sessions: Sessions
    peer: PeerEnvironment
    rounds: int
    duration_s: float


# --------------------------------------------------------------------------- report


def _judged(met: bool) -> str:
    return "yes" if met else "NO"


def render_table(result: PeersResult) -> Table:
    """Each read's throughput and p99 on both servers, the ratios and the target."""
    how = f"closed loop, {CONNECTIONS} connections"
    rounds = f"{result.rounds} round(s) of {result.duration_s:g} s on each side, alternated"
    title = f"wangge bench peers: {rounds}, {how}"
    table = Table(title=title)
    left = ("read", "wangge", "peer", "target", "met")
    for column in ("read", "wangge", "requests/s", "p99 ms", "peer", "requests/s", "p99 ms",
                   "× throughput", "× p99", "target", "met"):  # fmt: skip
        table.add_column(column, justify="left" if column in left else "right")
    for row in result.rows:
        table.add_row(
            row.read.name, SERVER_NAMES[row.ours.server], f"{row.ours.rate:,.0f}",
            f"{row.ours.p99_ms:.1f}", SERVER_NAMES[row.peer.server], f"{row.peer.rate:,.0f}",
            f"{row.peer.p99_ms:.1f}", f"{row.ratio:.2f}", f"{row.p99_ratio:.2f}",
            row.read.target, _judged(row.met),
        )  # fmt: skip
    sessions = result.sessions
    table.add_row(
        "new PostgreSQL sessions", "wangge", f"{sessions.wangge}", "", "pool size",
        f"{sessions.pool_size}", "", "", "", "≤ pool size", _judged(sessions.met),
    )  # fmt: skip
    return table


def _detail(row: PeerRow) -> str:
    ours, peer = row.ours, row.peer
    rates = "; ".join(
        f"{a.requests / a.seconds:,.0f} / {b.requests / b.seconds:,.0f}"
        for a, b in zip(ours.rounds, peer.rounds, strict=True)
    )
    cpu = max(r.client_cpu_share for r in (*ours.rounds, *peer.rounds))
    return (
        f"p99 {ours.p99_ms:.1f} ms vs {peer.p99_ms:.1f} ms ({row.p99_ratio:.2f}×), p50 "
        f"{ours.p50_ms:.1f} vs {peer.p50_ms:.1f} ms; requests/s by round pair (ours / peer): "
        f"{rates}; {ours.answer_bytes:,} vs {peer.answer_bytes:,} bytes per answer; "
        f"client CPU ≤ {cpu:.0%}"
    )


def _peer_name(row: PeerRow, peer: PeerEnvironment) -> str:
    name = SERVER_NAMES[row.peer.server]
    return f"{name} {peer.tipg}" if row.peer.server == TIPG else name


def as_benchmark_rows(result: PeersResult) -> list[BenchmarkRow]:
    """The rows in the shape every benchmark shares: throughput, the peer's beside it."""
    shared = [
        BenchmarkRow(
            row.read.name, row.ours.rate, "requests/s", row.peer.rate,
            _peer_name(row, result.peer),
            row.ratio, row.read.target, row.met, _detail(row),
        )
        for row in result.rows
    ]  # fmt: skip
    sessions = result.sessions
    shared.append(
        BenchmarkRow(
            "new PostgreSQL sessions, wangge, start to end", sessions.wangge, "sessions",
            sessions.pool_size, "pool size (WANGGE_DB_POOL_SIZE)",
            sessions.wangge / sessions.pool_size, "≤ pool size", sessions.met,
            f"{sessions.wangge_under_load} under the measured load (after each read once and"
            " a warm-up round on each server);"
            f" wangge with its tile cache off {sessions.rendering}; tipg {sessions.tipg}",
        )
    )  # fmt: skip
    return shared
