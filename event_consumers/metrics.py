"""Prometheus metrics of the pipeline.

With PROMETHEUS_MULTIPROC_DIR set (as `wangge up` does), every consumer process writes
its samples there and the API's /metrics aggregates them.
"""

from prometheus_client import Counter, Gauge, Histogram

EVENTS_IN = Counter("wangge_events_in_total", "Events read from Kafka", ["topic"])
EVENTS_ASSIGNED = Counter(
    "wangge_events_assigned_total", "Events stored with their grid, by rule", ["topic", "rule"]
)
EVENTS_REFUSED = Counter(
    "wangge_events_refused_total", "Events sent to the dead-letter topic", ["topic", "reason"]
)
EVENTS_DUPLICATE = Counter(
    "wangge_events_duplicate_total", "Events skipped as already processed", ["topic"]
)
EVENTS_FLAGGED = Counter(
    "wangge_events_flagged_total", "Events kept with a quality flag", ["topic", "flag"]
)
EVENTS_LATE = Counter(
    "wangge_events_late_total", "Check-ins that arrived after their week was final", ["topic"]
)
BATCH_SIZE = Histogram(
    "wangge_consumer_batch_size",
    "Records per processed batch",
    ["topic"],
    buckets=(1, 10, 50, 100, 250, 500, 1000, 2000, 5000, 10000),
)
END_TO_END_LATENCY = Histogram(
    "wangge_event_latency_seconds",
    "From the record's Kafka timestamp to its row being committed",
    ["topic"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
BATCH_SECONDS = Histogram(
    "wangge_consumer_batch_seconds",
    "Processing time of one batch, decode to commit",
    ["topic"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
CONSUMER_LAG = Gauge(
    "wangge_consumer_lag",
    "Records behind the partition's high watermark",
    ["topic", "partition"],
    multiprocess_mode="livemax",
)
TRANSIENT_FAILURES = Counter(
    "wangge_consumer_transient_failures_total",
    "Batches retried after a database or broker failure",
    ["kind"],
)
STATUS_CHANGES = Counter(
    "wangge_compliance_status_changes_total", "Patrol-compliance status changes queued to publish"
)
POISON_BATCHES = Counter(
    "wangge_consumer_poison_batches_total",
    "Batches that failed for one of their records and were run again one record at a time",
)
OFFSET_RESETS = Counter(
    "wangge_consumer_offset_resets_total",
    "Topics read again from the start because the broker had lost or remade them",
    ["topic"],
)
