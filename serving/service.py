"""The service behind both front doors: settings, the loaded model, the batcher, readiness and draining."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from ..runtime.audio_input import InputAudio
from ..runtime.errors import InputError
from ..runtime.instrument import Recorder, instrument
from ..runtime.metadata import clip_settings
from ..runtime.precision import FP32
from ..runtime.presets import PRESETS
from . import schema
from .batching import Batcher
from .jobs import Cancelled, Expired, Job, run_jobs
from .metrics import Metrics
from .schema import STREAM_FORMATS, Body, check_caps
from .settings import Settings

log = logging.getLogger("tango_rt.serving")
DEFAULT_SECONDS = 163872 / 16000  # Tango's clip: 256 latent frames


class MetricsRecorder(Recorder):
    """Per-stage times into the latency histograms as they happen."""

    def __init__(self, metrics: Metrics):
        super().__init__()
        self.metrics = metrics

    def record(self, stage: str, seconds: float) -> None:
        self.metrics.stage.labels(stage).observe(seconds)


class Service:
    """Loads the model in the background (liveness answers meanwhile), warms it up, then serves batches."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.metrics = Metrics()
        self.tango: Any = None
        self.batcher: Batcher | None = None
        self.ready = threading.Event()
        self.draining = False
        self.load_error: str | None = None
        self.mean_batch_s = 1.0  # moving average of batch wall time, for Retry-After
        self.in_flight = 0  # requests accepted and not yet answered (the drain waits for 0)
        self.worker_failure: str | None = None  # set when the worker thread died: health answers 503
        self.on_fatal: Callable[[], None] | None = None  # how the process leaves then (the server sets it)
        self._identity: dict | None = None  # what made the clips (Tango.identity), for their settings

    def start(self) -> None:
        threading.Thread(target=self.load, name="tango-load", daemon=True).start()

    def submit(self, job: Job) -> asyncio.Future:
        """Queue a job for the worker; the awaitable resolves to its clips (QueueFull when there is no room)."""
        return asyncio.wrap_future(self.batcher.submit(job))

    def queue_depth(self) -> int:
        return self.batcher.depth if self.batcher else 0

    def idle(self) -> bool:
        return self.in_flight == 0 and (self.batcher is None or self.batcher.idle())

    def make_batcher(self, max_rows: int) -> Batcher | None:
        """The bounded queue and worker thread (the Ray front door batches with @serve.batch instead)."""
        s = self.settings
        return Batcher(lambda jobs: run_jobs(self.tango.runner, jobs), max_rows, s.max_wait_ms / 1000, s.max_queue,
                       on_batch=self.observe_batch, on_death=self.worker_died)

    def worker_died(self, exc: BaseException) -> None:
        self.worker_failure = f"{type(exc).__name__}: {exc}"
        if self.on_fatal:
            self.on_fatal()

    def load(self) -> None:
        from ..runtime.tango import Tango

        s = self.settings
        try:
            started = time.perf_counter()
            self.tango = Tango(s.model, device=s.device, backend=s.backend, **s.options)
            instrument(self.tango.pipeline, MetricsRecorder(self.metrics))
            declared = self.tango.pipeline.ranges.get("batch")
            max_rows = min(s.max_batch, declared.max) if declared else s.max_batch
            self.max_rows = max_rows
            self.batcher = self.make_batcher(max_rows)
            if s.warmup:
                self.tango.generate("warm-up", steps=1, duration=warmup_duration(self.tango.pipeline), seed=0,
                                    scheduler="ddim")
            log.info("model %s loaded on %s in %.1f s; ready", s.model, s.backend, time.perf_counter() - started)
            self.ready.set()
        except Exception as exc:  # reported by /health/ready and the log; the process stays up for inspection
            self.load_error = f"{type(exc).__name__}: {exc}"
            log.exception("loading %s failed", s.model)

    def observe_batch(self, jobs: list[Job], results: list, seconds: float) -> None:
        self.metrics.batch_size.observe(sum(j.samples for j in jobs))
        self.metrics.batch_seconds.observe(seconds)
        self.mean_batch_s = 0.8 * self.mean_batch_s + 0.2 * seconds
        for job, result in zip(jobs, results, strict=True):
            self.metrics.queue_wait.observe((job.started or job.enqueued) - job.enqueued)
            if isinstance(result, Cancelled | Expired):
                self.metrics.withdrawn.labels("disconnected" if isinstance(result, Cancelled) else "deadline").inc()

    def load_audio(self, data: bytes) -> InputAudio:
        """A request's audio file (its bytes, any format soundfile reads): decoded, mono, at the model's rate, within
        the caps (AudioTooLarge: 413; InputError: 422). Called off the event loop: decoding takes milliseconds."""
        s = self.settings
        if s.max_audio_bytes <= 0:
            raise InputError("audio input is turned off on this server (--max-audio-bytes 0)")
        if len(data) > s.max_audio_bytes:
            raise AudioTooLarge(f"audio has {len(data)} bytes; this server takes at most {s.max_audio_bytes}")
        return self.tango.editor.load(data, None, s.max_audio_s, what="audio")

    def job(self, body: Body, request_id: str, audio: InputAudio | None = None) -> Job:
        """A validated job for one request (InputError names the bad field), refused before any model work: the
        options' kinds and bounds, the server's caps, and what the model cannot make (a clip length outside an
        export's range, a span outside the input, a guidance interval holding no step)."""
        if body.stream and body.options.get("samples", 1) != 1:
            raise InputError("stream=true sends one clip: samples must be 1")
        if body.stream and body.response_format not in STREAM_FORMATS:
            raise InputError(f"stream=true sends audio as it is made: response_format {list(STREAM_FORMATS)}, not "
                             f"{body.response_format!r}")
        request = schema.request(body, self.settings, audio)
        check_caps(request, self.settings, self.default_seconds())
        request = request.seeded()
        prepared = self.tango.runner.prepare(request, max_audio_s=self.settings.max_audio_s, stream=body.stream)
        return Job(request, time.monotonic() + self.settings.timeout_s, request_id, stream=body.stream,
                   length=prepared.samples)

    def settings_of(self, job: Job, row: int, gain_db: float | None = None) -> dict:
        """The settings a clip of `job` carries in its file (runtime/metadata.py)."""
        if self._identity is None:
            self._identity = self.tango.identity()
        return clip_settings(job.request, row, self._identity, gain_db, job.input_sha256)

    def default_seconds(self) -> float:
        """A clip's length when a request gives none: the model's (10.24 s for Tango; before it is loaded, Tango's)."""
        return self.tango.pipeline.config.duration() if self.tango is not None else DEFAULT_SECONDS

    def describe(self) -> dict:
        """What is loaded: for GET /v1/models."""
        s = self.settings
        info = {"id": s.model, "backend": s.backend, "device": s.device, "ready": self.ready.is_set(),
                "max_batch": getattr(self, "max_rows", s.max_batch), "limits": s.limits(),
                "preset": s.preset, "presets": PRESETS, "defaults": schema.defaults(s)}
        if self.tango is not None:
            pipeline = self.tango.pipeline
            info["sample_rate"] = pipeline.config.sample_rate
            info["components"] = {n: getattr(c, "backend", "?") for n, c in pipeline.components.items()}
            info["shape_ranges"] = {k: v.to_list() for k, v in pipeline.ranges.items()}
            info["precision"] = s.options.get("precision") or _artifact_precision(s.model)
        return info


class AudioTooLarge(InputError):
    """An audio file past the server's cap: 413."""


def _artifact_precision(model: str) -> str:
    from ..runtime.artifacts import is_artifact, open_artifact

    return open_artifact(model).manifest.get("precision", "?") if is_artifact(model) else FP32


def warmup_duration(pipeline: Any) -> float:
    """The clip length of the warm-up generation: the shortest the model accepts. For engines of one fixed length
    (static TensorRT) that is their length, not the UNet's minimum of 8 latent frames, which they would refuse and
    the server would never become ready."""
    declared = pipeline.ranges.get("latent_frames")
    frames = declared.min if declared is not None else pipeline.config.unet_downsample
    return pipeline.config.duration(frames)
