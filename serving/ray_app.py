"""The same HTTP API on Ray Serve, for more than one replica or machine.

    serve run tango_rt.serving.ray_app:build_app model=declare-lab/tango2 backend=torch replicas=2
    tango-rt serve --ray --replicas 2 --model ...           # the same, started from our CLI

Each replica owns one loaded model. Batching is Ray's `@serve.batch` (rows counted with batch_size_fn, so a
request for n clips takes n places), grouped by the denoising parameters and run by the same batch runner as the
single-process server (batching.run_jobs: one random stream per row). Back-pressure is Ray's:
`max_ongoing_requests` per replica and `max_queued_requests` beyond which the proxy answers 429 with
Retry-After (BackpressureConfig). `num_gpus` per replica is an option; autoscaling takes Ray's
`autoscaling_config` (for example {"min_replicas": 1, "max_replicas": 8, "target_ongoing_requests": 4}) in
place of a fixed replica count.
"""

import asyncio
import os
import time
from dataclasses import asdict, fields
from typing import Any

from fastapi import FastAPI
from ray import serve
from ray.serve.config import BackpressureConfig

from .app import add_routes
from .jobs import Job, run_jobs
from .service import Service, Settings

api = FastAPI(title="tango-rt (Ray Serve)", description="Text-to-audio with Tango models")
UNLOADED = Service(Settings(""))  # what a route sees before its replica's constructor has run


def _replica() -> Service:
    """The service of the replica serving this request: Ray hands its routes a copy of this module's app, so the
    replica's own object comes from Ray's replica context, not from a module global."""
    try:
        servable = serve.get_replica_context().servable_object
    except Exception:  # not inside a replica (documents built outside Ray)
        return UNLOADED
    return getattr(servable, "service", None) or UNLOADED


add_routes(api, _replica, headers=lambda: {"X-Replica-Pid": str(os.getpid())})


class RayService(Service):
    """A Service whose jobs go through the replica's @serve.batch method instead of our own batcher."""

    def __init__(self, settings: Settings, batch):
        super().__init__(settings)
        self.batch = batch

    def make_batcher(self, max_rows: int) -> None:
        return None

    def submit(self, job: Job) -> asyncio.Future:
        return asyncio.ensure_future(self._submit(job))

    async def _submit(self, job: Job) -> list:
        try:
            result = await self.batch(job)
        except BaseException as exc:  # Ray's batching failed or was cancelled: the job ends here too
            job.finish(exc if isinstance(exc, Exception) else RuntimeError(f"the batch was cancelled: {exc!r}"))
            raise
        if isinstance(result, _Raise):
            raise result.exc
        return result


@serve.deployment
@serve.ingress(api)
class TangoDeployment:
    """One replica: loads the model in its constructor (Ray waits for it), then serves."""

    def __init__(self, settings: dict[str, Any]):
        self.service = RayService(Settings(**settings), self.generate_batch)
        self.service.load()
        if self.service.load_error:
            raise RuntimeError(self.service.load_error)  # Ray retries the replica and reports it unhealthy
        self.generate_batch.set_max_batch_size(self.service.max_rows)
        self.generate_batch.set_batch_wait_timeout_s(self.service.settings.max_wait_ms / 1000)

    @serve.batch(max_batch_size=4, batch_wait_timeout_s=0.02, batch_size_fn=lambda jobs: sum(j.samples for j in jobs))
    async def generate_batch(self, jobs: list[Job]) -> list:
        """Ray's batch, split by denoising parameters; each group is one call of the shared runner."""
        results: list = [None] * len(jobs)
        groups: dict = {}
        for index, job in enumerate(jobs):
            groups.setdefault(job.key, []).append(index)
        for indices in groups.values():
            group = [jobs[i] for i in indices]
            started = time.monotonic()
            for job in group:
                job.started = started
            try:
                outcome = await asyncio.to_thread(run_jobs, self.service.tango.runner, group)
            except Exception as exc:  # every job of the group gets the error, the replica goes on
                outcome = [exc] * len(group)
            for i, job, result in zip(indices, group, outcome, strict=True):
                job.finish(result)  # a stream's sink hears how its job ended
                results[i] = result
        return [r if not isinstance(r, BaseException) else _Raise(r) for r in results]

    def check_health(self) -> None:
        """Ray's replica health check: a failed load or a dead worker marks the replica for restart."""
        if self.service.load_error:
            raise RuntimeError(self.service.load_error)


class _Raise:
    """A per-job failure carried out of @serve.batch (which wants one result per input) and raised again."""

    def __init__(self, exc: BaseException):
        self.exc = exc


def deployment(settings: Settings, replicas: int = 1, num_gpus: float = 0, autoscaling: dict | None = None):
    """The bound application: replicas (or autoscaling), GPUs per replica, and back-pressure mapped to 429."""
    options: dict[str, Any] = {
        "ray_actor_options": {"num_cpus": 1, "num_gpus": num_gpus},
        "max_ongoing_requests": 2 * settings.max_batch,
        "max_queued_requests": settings.max_queue,
        "backpressure_config": BackpressureConfig(status_code=429, retry_after_s=5),
        "health_check_period_s": 5,
    }
    if autoscaling:
        options["autoscaling_config"] = autoscaling
    else:
        options["num_replicas"] = replicas
    return TangoDeployment.options(**options).bind(asdict(settings))


def build_app(args: dict):
    """`serve run tango_rt.serving.ray_app:build_app model=... backend=... replicas=2 num_gpus=1 max_batch=4`."""
    numbers = {f.name: type(f.default) for f in fields(Settings) if type(f.default) in (int, float)}
    known = {"model", "backend", "device", "api_key", "preset", "replicas", "num_gpus", *numbers}
    unknown = sorted(set(args) - known)
    if unknown:
        raise ValueError(f"unknown argument(s) {unknown}; known: {sorted(known)}")
    given = {name: cast(args[name]) for name, cast in numbers.items() if name in args}
    settings = Settings(model=args.get("model", "declare-lab/tango2"), backend=args.get("backend", "torch"),
                        device=args.get("device"), api_key=args.get("api_key"), preset=args.get("preset"),
                        warmup=True, **given)
    return deployment(settings, int(args.get("replicas", 1)), float(args.get("num_gpus", 0)))


def run(settings: Settings, host: str = "127.0.0.1", port: int = 8000, replicas: int = 1, num_gpus: float = 0) -> None:
    """Start a local Ray instance (or join RAY_ADDRESS), deploy, and block until SIGINT / SIGTERM, then shut
    Serve and the local Ray instance down (their worker processes with them)."""
    import signal

    import ray

    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    address = os.environ.get("RAY_ADDRESS")
    local = {} if address else {"object_store_memory": 256 * 2**20, "include_dashboard": False}
    ray.init(address=address, ignore_reinit_error=True, **local)
    try:
        serve.start(http_options={"host": host, "port": port})
        serve.run(deployment(settings, replicas, num_gpus), name="tango", route_prefix="/")
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        serve.shutdown()
        ray.shutdown()
