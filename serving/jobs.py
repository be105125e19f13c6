"""The serving layer's adapter over the runner: jobs (one request each), what lets them share a denoising call, and
one call for a batch of them.

A job is one request: a GenerationRequest for one prompt (its clips, its seed), its deadline, and for a streamed
answer a sink that receives its segments. Jobs share a batch when their requests are equal but for what may
differ between clips (prompt, seed, samples: `GenerationRequest.shared`), their inputs have one length and they
stream alike (`BatchKey`). Their rows are concatenated into one call of the runner, row i drawing from its own
job's `row_generators(seed, samples)`, so a request's audio is what it would be alone. A job past its deadline or
whose client went away is left out before its batch runs and, once it runs, dropped at the next UNet step (its
batch mates go on).

Whatever ends a job (its clips, any exception of the run, a withdrawal, the worker's death) reaches it through
`Job.finish`: the future its handler awaits is resolved and a stream's sink gets its last item (None: complete;
an exception: cut off), exactly once.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field

import numpy as np

from ..runtime.audio_input import InputAudio
from ..runtime.errors import Interrupted, NumericsError
from ..runtime.noise import row_generators
from ..runtime.request import GenerationRequest
from ..runtime.runner import Runner

log = logging.getLogger("tango_rt.serving")


class Expired(Exception):
    """The job's deadline passed before its clips were made: the caller answers 504."""


class Cancelled(Exception):
    """The client went away before its clips were made."""


@dataclass(frozen=True)
class BatchKey:
    """What must be equal for jobs to share one denoising call: the request but for its per-clip options, the
    input's length (inputs of one length stack), and whether it streams (runs window by window)."""

    shared: GenerationRequest
    audio_samples: int | None = None
    stream: bool = False

    @classmethod
    def of(cls, request: GenerationRequest, stream: bool = False) -> BatchKey:
        audio = request.audio
        return cls(request.shared(), audio.samples if isinstance(audio, InputAudio) else None, stream)


Sink = Callable[[np.ndarray | BaseException | None], None]  # a stream's segments, then None or the failure


@dataclass
class Job:
    request: GenerationRequest  # one prompt; its seed is set
    deadline: float  # time.monotonic() after which the result is no longer wanted
    request_id: str = ""
    stream: bool = False
    length: int = 0  # samples per clip (a stream's WAV header says it up front)
    input_sha256: str | None = None  # the input audio's digest, for the clips' settings
    sink: Sink | None = None
    future: Future = field(default_factory=Future)
    cancelled: threading.Event = field(default_factory=threading.Event)
    enqueued: float = field(default_factory=time.monotonic)
    started: float | None = None
    _ended: bool = False

    @property
    def key(self) -> BatchKey:
        return BatchKey.of(self.request, self.stream)

    @property
    def samples(self) -> int:
        return self.request.samples

    @property
    def seed(self) -> int:
        return self.request.seed

    def expired(self) -> bool:
        return time.monotonic() > self.deadline

    def withdrawn(self) -> Exception | None:
        """Why the job's result is no longer wanted, or None while it is: Cancelled when its client left (first, so
        a client that left before the deadline counts as gone, not late), else Expired past its deadline."""
        if self.cancelled.is_set():
            return Cancelled()
        return Expired() if self.expired() else None

    def finish(self, result: JobResult) -> None:
        """End the job with its clips or why it has none: resolve its future and close its sink (None when it
        completed, else the exception, which cuts the stream off). Only the first call counts."""
        if self._ended:
            return
        self._ended = True
        resolve(self.future, result)
        self.send(result if isinstance(result, BaseException) else None)

    def send(self, item: np.ndarray | BaseException | None) -> None:
        """An item for the stream's sink; a sink that fails (its client's event loop gone) is logged, never raised
        into the worker."""
        if self.sink is None:
            return
        try:
            self.sink(item)
        except Exception:
            log.warning("request %s: its stream could not take an item", self.request_id, exc_info=True)


@dataclass(frozen=True)
class Made:
    """A job's clips (none for a stream: its audio went to its sink) and the loudness gain of each."""

    clips: list[np.ndarray]
    gains_db: list[float | None]


JobResult = Made | BaseException  # a job's clips, or why it has none


def run_jobs(runner: Runner, jobs: Sequence[Job]) -> list[JobResult]:
    """One denoising call for jobs with the same key: each job's clips or exception, in order. Withdrawn jobs are
    left out before the call and dropped between its UNet steps. A NaN in an unstreamed batch is retried job by
    job, so only the request whose clip is bad fails. Never raises for a failure of the run: every job gets it."""
    results: list[JobResult | None] = [job.withdrawn() for job in jobs]
    live = [job for job, result in zip(jobs, results, strict=True) if result is None]
    if live:
        outcome = iter(_run_live(runner, live))
        results = [next(outcome) if result is None else result for result in results]
    return results  # type: ignore[return-value]


def _run_live(runner: Runner, jobs: list[Job]) -> list[JobResult]:
    owners = [job for job in jobs for _ in range(job.samples)]
    first = jobs[0].request
    request = dataclasses.replace(first.shared(), prompts=tuple(job.request.prompts[0] for job in owners))
    streams = [g for job in jobs for g in row_generators(job.seed, job.samples)]
    inputs = [job.request.audio for job in owners] if first.audio is not None else None
    wanted = lambda: [job.withdrawn() is None for job in owners]  # noqa: E731
    pieces: list[list[np.ndarray]] = [[] for _ in owners]  # per row: its clip, or the segments of an unsent stream
    made = [False] * len(owners)  # per row: its whole clip was made (and sent, for a stream)
    gains: list[float | None] = [None] * len(owners)
    failure: BaseException | None = None
    try:
        prepared = runner.prepare(request, inputs, stream=jobs[0].stream)
        if prepared.windowed:
            last: dict = {}
            for last in runner.segments(prepared, streams, wanted):
                for row, segment in last.items():
                    _deliver(owners[row], pieces[row], segment)
            made = [row in last for row in range(len(owners))]
        else:
            levels = [(job.request.loudness, job.request.peak) for job in owners]  # per clip, as each job asked
            rendered = runner.render(prepared, streams, wanted, levels=levels)
            gains = rendered.gains_db
            for row, clip in enumerate(rendered.clips):
                pieces[row], made[row] = [clip], clip is not None
    except Interrupted:
        pass  # every row withdrawn: each job says why below
    except NumericsError as exc:
        if len(jobs) > 1 and not jobs[0].stream:
            return [result for job in jobs for result in run_jobs(runner, [job])]
        failure = exc
    except Exception as exc:  # any failure of the run (a backend's, out of memory, a bug) ends its jobs
        failure = exc
    return _outcomes(jobs, pieces, made, gains, failure)


def _deliver(job: Job, kept: list[np.ndarray], segment: np.ndarray) -> None:
    """A streamed job's segment goes to its sink as it is made; a windowed job answered whole keeps it."""
    if job.sink is None:
        kept.append(segment)
    else:
        job.send(segment)


def _outcomes(jobs: list[Job], pieces: list[list[np.ndarray]], made: list[bool], gains: list[float | None],
              failure: BaseException | None) -> list[JobResult]:
    """Each job's result from what was made, not from the clock after the fact: a job whose every clip (or whose
    whole stream) was made has its result even if its deadline passed meanwhile. A stream's result is empty (its
    audio went to its sink)."""
    results: list[JobResult] = []
    start = 0
    for job in jobs:
        rows = range(start, start + job.samples)
        start += job.samples
        if all(made[row] for row in rows):
            results.append(Made([], []) if job.sink is not None else
                           Made([np.concatenate(pieces[row]) for row in rows], [gains[row] for row in rows]))
        else:
            results.append(failure or job.withdrawn() or Cancelled())
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
