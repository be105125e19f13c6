"""Micro-batching: jobs that can share a denoising call run as one batch, each row on its own random stream.

A job is one request: a prompt, a number of clips and a seed. Jobs share a batch when every parameter of the
denoising loop is the same (steps, guidance, sampler and its options, duration): their rows are concatenated
into one call of `Tango.generate_rows`, row i drawing from `row_generators(seed, samples)`, so a request's
audio is what it would be alone. The queue is bounded; jobs past their deadline or whose client went away are
dropped before their batch runs.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..runtime.errors import InputError, NumericsError
from ..runtime.noise import row_generators


class QueueFull(Exception):
    """The bounded queue has no room: the caller answers 429."""


class Expired(Exception):
    """The job's deadline passed before its batch ran: the caller answers 504."""


class Cancelled(Exception):
    """The client went away before the job's batch ran."""


@dataclass(frozen=True)
class BatchKey:
    """What must be equal for jobs to share one denoising call."""

    steps: int
    guidance: float
    scheduler: str
    duration: float | None
    scheduler_options: tuple = ()

    @classmethod
    def of(cls, steps: int, guidance: float, scheduler: str, duration: float | None, options: dict) -> BatchKey:
        """A hashable key: option values such as disable_corrector=[0, 1] become tuples (the Ray front door
        groups jobs in a dict by key)."""
        frozen = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in options.items()))
        return cls(steps, float(guidance), scheduler, duration, frozen)


@dataclass
class Job:
    prompt: str
    samples: int
    seed: int
    key: BatchKey
    deadline: float  # time.monotonic() after which the result is no longer wanted
    request_id: str = ""
    future: Future = field(default_factory=Future)
    cancelled: threading.Event = field(default_factory=threading.Event)
    enqueued: float = field(default_factory=time.monotonic)
    started: float | None = None

    def expired(self) -> bool:
        return time.monotonic() > self.deadline


def run_jobs(tango: Any, jobs: Sequence[Job]) -> list[list[np.ndarray]]:
    """One denoising call for jobs with the same key: each job's clips, in order. A NaN in the batch is retried
    job by job, so only the request whose clip is bad fails."""
    key = jobs[0].key
    prompts = [job.prompt for job in jobs for _ in range(job.samples)]
    streams = [g for job in jobs for g in row_generators(job.seed, job.samples)]
    options = dict(scheduler=key.scheduler, scheduler_options=dict(key.scheduler_options), duration=key.duration)
    try:
        audio = tango.generate_rows(prompts, streams, key.steps, key.guidance, **options)
    except NumericsError:
        if len(jobs) == 1:
            raise
        return [clip for job in jobs for clip in _run_one(tango, job)]
    clips, start = [], 0
    for job in jobs:
        clips.append(list(audio[start : start + job.samples]))
        start += job.samples
    return clips


def _run_one(tango: Any, job: Job) -> list[list[np.ndarray]]:
    try:
        return run_jobs(tango, [job])
    except NumericsError as exc:
        return [exc]  # type: ignore[list-item]


class Batcher:
    """The bounded queue and the one worker thread that owns the model.

    runner(jobs) -> one result per job: a list of clips, or an exception for that job alone."""

    def __init__(self, runner: Callable[[list[Job]], list], max_batch: int, max_wait_s: float, max_queue: int,
                 on_batch: Callable[[list[Job], float], None] | None = None):
        if max_batch < 1 or max_queue < 1 or max_wait_s < 0:
            raise InputError("max_batch and max_queue must be >= 1, max_wait >= 0")
        self.runner, self.max_batch, self.max_wait_s, self.max_queue = runner, max_batch, max_wait_s, max_queue
        self.on_batch = on_batch
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
        while (batch := self._take()) is not None:
            try:
                self._run(batch)
            finally:
                with self._lock:
                    self._busy = False
                    self._lock.notify_all()

    def _run(self, batch: list[Job]) -> None:
        live = []
        for job in batch:
            if job.cancelled.is_set():
                job.future.set_exception(Cancelled())
            elif job.expired():
                job.future.set_exception(Expired())
            else:
                live.append(job)
        if not live:
            return
        started = time.monotonic()
        for job in live:
            job.started = started
        try:
            results = self.runner(live)
        except Exception as exc:  # one failure answers every job of the batch; the worker goes on
            results = [exc] * len(live)
        if self.on_batch:
            self.on_batch(live, time.monotonic() - started)
        for job, result in zip(live, results, strict=True):
            if isinstance(result, BaseException):
                job.future.set_exception(result)
            else:
                job.future.set_result(result)
