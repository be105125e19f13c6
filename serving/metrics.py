"""Prometheus metrics of one server, in a registry of its own (several servers in one process stay apart)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 60, 120, 300, 600)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("tango_requests", "Generation requests by HTTP status", ["status"], registry=r)
        self.rejections = Counter("tango_rejections", "Requests refused or dropped, by reason", ["reason"],
                                  registry=r)
        self.queue_depth = Gauge("tango_queue_depth", "Requests waiting for a batch", registry=r)
        self.queue_wait = Histogram("tango_queue_wait_seconds", "Time from arrival to the start of its batch",
                                    buckets=LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram("tango_batch_size", "Clips per denoising call", buckets=(1, 2, 3, 4, 6, 8, 12, 16),
                                    registry=r)
        self.batch_seconds = Histogram("tango_batch_seconds", "Wall time of one batch", buckets=LATENCY_BUCKETS,
                                       registry=r)
        self.stage = Histogram("tango_stage_seconds", "Per-call latency of each pipeline stage", ["stage"],
                               buckets=LATENCY_BUCKETS, registry=r)
        self.latency = Histogram("tango_request_seconds", "End-to-end latency of successful requests",
                                 buckets=LATENCY_BUCKETS, registry=r)
