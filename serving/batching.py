"""Micro-batching: the bounded queue and the one worker thread that owns the model.

Jobs (serving/jobs.py) wait in a bounded queue; the worker takes the first and gathers those that can share its
denoising call (equal BatchKey) until the batch is full or max_wait has passed, then runs them as one call. Every
job it takes or drops ends through `Job.finish`, whatever happens: a failed batch, a runner that miscounts, an
observer that raises, or the worker's own death.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future

from ..runtime.errors import InputError
from .jobs import Job, JobResult

log = logging.getLogger("tango_rt.serving")


class QueueFull(Exception):
    """The bounded queue has no room: the caller answers 429."""


class WorkerDead(Exception):
    """The worker thread is gone: nothing will run; the server answers 503 and exits for its supervisor."""


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
            job.finish(WorkerDead(f"the worker thread died: {exc!r}"))
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
            job.finish(result)


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
