"""Micro-batching: jobs that can share a denoising call run as one batch, each row on its own random stream.

A job is one request: a prompt, a number of clips and a seed. Jobs share a batch when every parameter of the
denoising loop is the same (steps, guidance, sampler and its options, duration): their rows are concatenated
into one call of `Tango.generate_rows`, row i drawing from `row_generators(seed, samples)`, so a request's
audio is what it would be alone. The queue is bounded. A job past its deadline or whose client went away is
dropped before its batch runs and, once the batch runs, at the next UNet step (its batch mates go on; a batch
with no job left stops), so the worker is free again within one step.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..runtime.audio_input import InputAudio
from ..runtime.editing import EditOptions
from ..runtime.errors import InputError, Interrupted, NumericsError, TangoError
from ..runtime.guidance import UNetPlan
from ..runtime.noise import row_generators

log = logging.getLogger("tango_rt.serving")


class QueueFull(Exception):
    """The bounded queue has no room: the caller answers 429."""


class WorkerDead(Exception):
    """The worker thread is gone: nothing will run; the server answers 503 and exits for its supervisor."""


class Expired(Exception):
    """The job's deadline passed before its batch ran: the caller answers 504."""


class Cancelled(Exception):
    """The client went away before the job's batch ran."""


@dataclass(frozen=True)
class BatchKey:
    """What must be equal for jobs to share one denoising call: the sampling parameters, what is made (edits: a
    variation's strength, inpainted spans, an extension, a loop), the input's length, and whether it streams."""

    steps: int
    guidance: float
    scheduler: str
    duration: float | None
    scheduler_options: tuple = ()
    edits: EditOptions = field(default_factory=EditOptions)
    audio_samples: int | None = None  # inputs of one length share a call (their latents stack)
    stream: bool = False  # runs window by window (Tango.stream_rows): streamed clips and extensions
    plan: UNetPlan = field(default_factory=UNetPlan)  # guidance interval, cached steps

    @classmethod
    def of(cls, steps: int, guidance: float, scheduler: str, duration: float | None, options: dict,
           edits: EditOptions | None = None, audio_samples: int | None = None, stream: bool = False,
           plan: UNetPlan | None = None) -> BatchKey:
        """A hashable key: option values such as disable_corrector=[0, 1] become tuples (the Ray front door
        groups jobs in a dict by key)."""
        frozen = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in options.items()))
        return cls(steps, float(guidance), scheduler, duration, frozen, edits or EditOptions(), audio_samples, stream,
                   plan or UNetPlan())

    def unet_work(self) -> dict:
        """The plan as Tango's keyword arguments."""
        interval = self.plan.guidance_interval
        return {"guidance_interval": None if interval is None else (interval.low, interval.high),
                "cache_interval": self.plan.cache_interval, "cache_schedule": self.plan.cache_schedule}


@dataclass
class Job:
    prompt: str
    samples: int
    seed: int
    key: BatchKey
    deadline: float  # time.monotonic() after which the result is no longer wanted
    request_id: str = ""
    audio: InputAudio | None = None  # the request's input clip (variations, inpainting, extension)
    sink: Callable[[np.ndarray | BaseException | None], None] | None = None  # a stream's segments, then None
    future: Future = field(default_factory=Future)
    cancelled: threading.Event = field(default_factory=threading.Event)
    enqueued: float = field(default_factory=time.monotonic)
    started: float | None = None

    def expired(self) -> bool:
        return time.monotonic() > self.deadline

    def withdrawn(self) -> Exception | None:
        """Why the job's result is no longer wanted (Cancelled, Expired), or None while it is."""
        if self.expired():
            return Expired()
        return Cancelled() if self.cancelled.is_set() else None


JobResult = list[np.ndarray] | BaseException  # a job's clips, or why it has none


def run_jobs(tango: Any, jobs: Sequence[Job]) -> list[JobResult]:
    """One denoising call for jobs with the same key: each job's clips or exception, in order. Withdrawn jobs
    are left out before the call and dropped between its UNet steps. A NaN in the batch is retried job by job,
    so only the request whose clip is bad fails."""
    results: list[JobResult | None] = [job.withdrawn() for job in jobs]
    live = [job for job, result in zip(jobs, results, strict=True) if result is None]
    if live:
        outcome = iter(_run_live(tango, live))
        results = [next(outcome) if result is None else result for result in results]
    return results  # type: ignore[return-value]


def _run_live(tango: Any, jobs: list[Job]) -> list[JobResult]:
    key = jobs[0].key
    prompts = [job.prompt for job in jobs for _ in range(job.samples)]
    streams = [g for job in jobs for g in row_generators(job.seed, job.samples)]
    owners = [job for job in jobs for _ in range(job.samples)]
    options = dict(scheduler=key.scheduler, scheduler_options=dict(key.scheduler_options), duration=key.duration,
                   **key.unet_work())
    wanted = lambda: [job.withdrawn() is None for job in owners]  # noqa: E731
    try:
        if key.stream:
            return _run_stream(tango, jobs, prompts, streams, options, wanted)
        edits = key.edits
        if edits.audio:
            options.update(audio=[job.audio for job in owners], strength=edits.strength,
                           inpaint=list(edits.inpaint) or None, duration=None)
        rows = tango.generate_rows(prompts, streams, key.steps, key.guidance, **options, loop=edits.loop,
                                   wanted=wanted)
    except Interrupted:
        return [job.withdrawn() or Cancelled() for job in jobs]
    except NumericsError as exc:
        if len(jobs) == 1:
            return [exc]
        return [result for job in jobs for result in run_jobs(tango, [job])]
    results: list[JobResult] = []
    start = 0
    for job in jobs:
        clips = rows[start : start + job.samples]
        start += job.samples
        results.append(clips if all(c is not None for c in clips) else job.withdrawn() or Cancelled())
    return results


def _run_stream(tango: Any, jobs: list[Job], prompts: list[str], streams: list, options: dict, wanted) -> list:
    """Windowed jobs (streamed long-form, extension; one clip each): every window's segment goes to its job's sink
    as it is made, then None (a failure part-way goes there instead: the stream is cut off); a job without a sink
    gets its clip whole as its result."""
    key = jobs[0].key
    audio = [job.audio for job in jobs] if key.edits.audio else None
    kept: list[list[np.ndarray]] = [[] for _ in jobs]  # the segments of jobs answered as one clip (no sink)
    failure: BaseException | None = None
    try:
        for segments in tango.stream_rows(prompts, streams, key.steps, key.guidance, **options, audio=audio,
                                          extend=key.edits.extend, wanted=wanted):
            for row, segment in segments.items():
                if jobs[row].sink is None:
                    kept[row].append(segment)
                else:
                    jobs[row].sink(segment)
    except Interrupted:
        pass  # every row withdrawn: each job says why below
    except (TangoError, ValueError) as exc:  # NaN / Inf part-way, or a bad input found late: not retried
        failure = exc
    results = [job.withdrawn() or failure or [np.concatenate(kept[i]) if job.sink is None else np.zeros(0, np.int16)]
               for i, job in enumerate(jobs)]
    for job, result in zip(jobs, results, strict=True):
        if job.sink is not None:
            job.sink(result if isinstance(result, BaseException) else None)
    return results


class Batcher:
    """The bounded queue and the one worker thread that owns the model.

    runner(jobs) -> one result per job: a list of clips, or an exception for that job alone. on_batch(jobs, results,
    seconds) observes each batch. The worker survives any failure of a batch, of the runner's result or of the
    observer; should the loop itself still die, `failure` says why, every waiting job gets the error, and
    on_death(exc) is called (the server reports it on its health endpoints and exits non-zero)."""

    def __init__(self, runner: Callable[[list[Job]], list], max_batch: int, max_wait_s: float, max_queue: int,
                 on_batch: Callable[[list[Job], list, float], None] | None = None,
                 on_death: Callable[[BaseException], None] | None = None):
        if max_batch < 1 or max_queue < 1 or max_wait_s < 0:
            raise InputError("max_batch and max_queue must be >= 1, max_wait >= 0")
        self.runner, self.max_batch, self.max_wait_s, self.max_queue = runner, max_batch, max_wait_s, max_queue
        self.on_batch, self.on_death = on_batch, on_death
        self.failure: BaseException | None = None
        self._queue: deque[Job] = deque()
        self._lock = threading.Condition()
        self._busy = False
        self._stopped = False
        self._thread = threading.Thread(target=self._loop, name="tango-worker", daemon=True)
        self._thread.start()

    @property
    def depth(self) -> int:
        with self._lock:
            return len(self._queue)

    def idle(self) -> bool:
        with self._lock:
            return not self._queue and not self._busy

    def submit(self, job: Job) -> Future:
        if self.failure is not None:
            raise WorkerDead(f"the worker thread has died: {self.failure!r}")
        if job.samples > self.max_batch:
            raise InputError(f"samples={job.samples} is more than this server runs per batch ({self.max_batch})")
        with self._lock:
            if len(self._queue) >= self.max_queue:
                raise QueueFull(f"the queue is full ({self.max_queue} requests waiting)")
            self._queue.append(job)
            self._lock.notify_all()
        return job.future

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            self._lock.notify_all()

    def _take(self) -> list[Job] | None:
        """Block for a first job, then gather compatible ones until the batch is full or max_wait has passed."""
        with self._lock:
            while not self._queue and not self._stopped:
                self._lock.wait()
            if self._stopped:
                return None
            first = self._queue.popleft()
            batch, rows = [first], first.samples
            until = time.monotonic() + self.max_wait_s
            while rows < self.max_batch:
                match = next((j for j in self._queue if j.key == first.key and rows + j.samples <= self.max_batch),
                             None)
                if match is not None:
                    self._queue.remove(match)
                    batch.append(match)
                    rows += match.samples
                    continue
                remaining = until - time.monotonic()
                if remaining <= 0:
                    break
                self._lock.wait(remaining)
            self._busy = True
            return batch

    def _loop(self) -> None:
        batch: list[Job] = []
        try:
            while (batch := self._take()) is not None:
                try:
                    self._run(batch)
                finally:
                    with self._lock:
                        self._busy = False
                        self._lock.notify_all()
        except BaseException as exc:
            self._die(exc, batch or [])

    def _die(self, exc: BaseException, running: list[Job]) -> None:
        log.critical("the worker thread died: %r", exc, exc_info=exc)
        with self._lock:
            self.failure = exc
            waiting, self._queue = [*running, *self._queue], deque()
            self._busy = False
        for job in waiting:
            resolve(job.future, WorkerDead(f"the worker thread died: {exc!r}"))
        if self.on_death:
            self.on_death(exc)

    def _run(self, batch: list[Job]) -> None:
        started = time.monotonic()
        for job in batch:
            job.started = started
        results = run_guarded(self.runner, batch)
        if self.on_batch:
            try:
                self.on_batch(batch, results, time.monotonic() - started)
            except Exception:  # metrics must not take the worker down
                log.exception("observing a batch failed")
        for job, result in zip(batch, results, strict=True):
            resolve(job.future, result)


def run_guarded(runner: Callable[[list[Job]], list], jobs: list[Job]) -> list[JobResult]:
    """runner(jobs) with one result per job whatever happens: an exception answers every job of the batch, and a
    runner that returns the wrong number of results is a bug reported to each job, not a dead worker."""
    try:
        results = list(runner(jobs))
    except Exception as exc:
        log.exception("a batch of %d jobs failed", len(jobs))
        return [exc] * len(jobs)
    if len(results) != len(jobs):
        log.error("the batch runner returned %d results for %d jobs", len(results), len(jobs))
        return [RuntimeError(f"internal error: {len(results)} results for {len(jobs)} jobs")] * len(jobs)
    return results


def resolve(future: Future, result: JobResult) -> None:
    """Answer a job's future once; a future already done or cancelled (its waiter gave up) is left alone."""
    if future.done():
        return
    try:
        if isinstance(result, BaseException):
            future.set_exception(result)
        else:
            future.set_result(result)
    except InvalidStateError:  # cancelled between the check and the call
        pass
