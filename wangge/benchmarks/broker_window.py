"""What an in-memory broker that dies loses: events accepted but not yet stored.

The gateway answers 202 once the broker has an event; the intake stage stores it a
little later. A broker that keeps its data in memory (the local Tansu) and dies in
between takes those events with it. This measures that window at a steady rate, by
default ten times Baoji's busiest second in the simulated week: how long each event
waits between the broker's acknowledgement and its committed row (ms), and how many
acknowledged events are not yet stored at each moment.

`python -m wangge.benchmarks.broker_window [--rate N] [--seconds S]` on the configured
services; the database must hold the reference city (`wangge up` loads it).
"""

import argparse
import tempfile
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from geodata.compliance import IsoWeek
from geodata.db.engine import create_db_engine
from wangge.benchmarks import pipeline

PEAK_WEEK = "2020-W37"
PEAK_SEED = 2020


def busiest_rates(database_url: str) -> dict[int, float]:
    """Messages a second in the simulated week's busiest 1, 10 and 60 seconds."""
    from wangge.simulation.db import load_world
    from wangge.simulation.week import simulate_week

    week = IsoWeek.parse(PEAK_WEEK)
    tz = ZoneInfo("Asia/Shanghai")
    engine = create_db_engine(database_url)
    try:
        world, _left_out = load_world(engine, week.start(tz), week.end(tz))
    finally:
        engine.dispose()
    send = np.sort(simulate_week(world, week, seed=PEAK_SEED).send_s)
    rates = {}
    for window in (1, 10, 60):
        counts = np.searchsorted(send, send + window) - np.arange(len(send))
        rates[window] = float(counts.max()) / window
    return rates


def _percentiles(values: npt.NDArray[np.float64]) -> str:
    p50, p99, top = np.percentile(values, [50, 99, 100])
    return f"p50 {p50:,.0f}, p99 {p99:,.0f}, max {top:,.0f}"


def measure_window(database_url: str, bootstrap: str, rate: float, seconds: float) -> list[str]:
    """Produce at `rate` for `seconds` into one intake consumer; the window, as lines."""
    logs = Path(tempfile.mkdtemp(prefix="wangge-window-"))
    sent_at, stored_at = pipeline.steady_commit_times(database_url, bootstrap, rate, seconds, logs)
    # At each acknowledgement: the events acknowledged so far that are not yet stored.
    unstored = np.arange(1, len(sent_at) + 1) - np.searchsorted(
        np.sort(stored_at), sent_at, side="right"
    )
    held = len(sent_at) / (sent_at[-1] - sent_at[0])
    return [
        f"rate asked {rate:,.0f}/s, held {held:,.0f}/s, {len(sent_at):,} events",
        f"accepted, not yet stored (ms): {_percentiles((stored_at - sent_at) * 1000)}",
        f"accepted, not yet stored (events): {_percentiles(unstored.astype(float))}",
    ]


def main() -> None:
    """Measure Baoji's busiest second (unless --rate), then the window at ten times it."""
    from wangge.settings import DatabaseSettings, KafkaSettings

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, help="events/s (default: 10x the busiest second)")
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    url, bootstrap = DatabaseSettings().url, KafkaSettings().bootstrap
    rate = args.rate
    if rate is None:
        busiest = busiest_rates(url)
        print(", ".join(f"busiest {w} s: {r:,.1f}/s" for w, r in busiest.items()))
        rate = 10 * busiest[1]
    for line in measure_window(url, bootstrap, rate, args.seconds):
        print(line)


if __name__ == "__main__":
    main()
