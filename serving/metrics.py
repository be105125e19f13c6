"""Prometheus metrics of one server, in a registry of its own (several servers in one process stay apart)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, PlatformCollector, ProcessCollector

from ..runtime.versions import library_versions

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 60, 120, 300, 600)


class Metrics:
    def __init__(self) -> None:
        from tango_rt import __version__

        self.registry = CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)  # process_cpu_seconds_total, process_resident_memory_bytes, open fds, ...
        PlatformCollector(registry=r)  # python_info
        versions = library_versions("numpy")
        Info("tango_build", "tango-rt build", registry=r).info(
            {"version": __version__, "python": versions["python"], "numpy": versions.get("numpy", "unknown")})
        self.withdrawn = Counter("tango_jobs_withdrawn", "Jobs stopped inside a batch (between UNet steps or before "
                                 "their batch ran) because the client went away or the deadline passed", ["reason"],
                                 registry=r)
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

