"""One bench variant in its own process: load, warm up, measure; print one JSON line on stdout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
from tqdm.auto import tqdm

from ..runtime.feature_cache import full_steps
from ..runtime.flops import UNetShape, run_gflop
from ..runtime.guidance import UNetPlan
from ..runtime.instrument import STAGES, Recorder, instrument
from ..runtime.specs import UNET, UNET_SHALLOW, VAE_ENCODER, component_specs, dims
from ..runtime.tango import Tango
from .machine import proc_status_mb
from .stats import summarize


def peak_rss_mb() -> float | None:
    """Peak resident memory of this process (Linux VmHWM: it belongs to the process image, so it starts afresh
    at exec, where ru_maxrss would count the parent's memory at fork)."""
    return proc_status_mb("VmHWM")


class AnonPeak:
    """Peak anonymous (private) resident memory, sampled every `interval` s on a daemon thread.

    RSS also counts file pages a backend maps (OpenVINO maps the ONNX weight files and keeps them mapped next
    to its compiled copies). Those are clean page cache the kernel drops under memory pressure, so they never
    cause an out-of-memory kill; anonymous memory is what a process cannot give back. The kernel keeps no
    high-water mark for it, hence sampling (a peak shorter than the interval can be missed)."""

    def __init__(self, interval: float = 0.02):
        import threading

        self.peak: float | None = proc_status_mb("RssAnon")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)
        self._thread.start()

    def _run(self, interval: float) -> None:
        while not self._stop.wait(interval):
            value = proc_status_mb("RssAnon")
            if value is not None:
                self.peak = max(self.peak or 0.0, value)

    def stop(self) -> float | None:
        self._stop.set()
        self._thread.join()
        return self.peak


def _gpu_memory() -> dict | None:
    """GPU memory of this process: nvidia-smi's figure for its PID (any backend), and torch's allocator peaks
    when the variant runs torch on CUDA (torch is never imported here for that)."""
    memory = {}
    try:
        query = ["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"]
        listing = subprocess.run(query, capture_output=True, text=True, timeout=20, check=True).stdout
        used = [line.split(",")[1] for line in listing.splitlines() if line.split(",")[0].strip() == str(os.getpid())]
        if used:
            memory["device_used_mb"] = float(used[0])
    except (OSError, subprocess.SubprocessError, IndexError, ValueError):
        pass
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        memory["peak_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20
        memory["peak_reserved_mb"] = torch.cuda.max_memory_reserved() / 2**20
    return memory or None


def probe_unet(tango: Tango, path: str, prompt: str, frames: int) -> None:
    """The UNet on one fixed input (same seed in every variant), saved for the parent's error column. Its shape
    is the bench's (prompt length, clip length), so backends that compile per shape compile nothing extra."""
    config = tango.pipeline.config
    text_len = tango.pipeline.tokenizer([prompt])[0].shape[1]
    feeds = component_specs(config)[UNET].sample_inputs(dims(config, 1, text_len, frames), config, seed=0)
    np.save(path, tango.pipeline.components[UNET](**feeds)[0])  # noise_pred (the deep feature is [1])


def measure(job: dict) -> dict:
    config, variant = job["config"], job["variant"]
    anon = AnonPeak()
    started = time.perf_counter()
    tango = Tango(job["model"], device=config["device"], backend=variant["backend"], **job["options"])
    load_s = time.perf_counter() - started
    frames = tango.latent_frames(config["duration"])
    probe_unet(tango, job["probe"], config["prompt"], frames)
    recorder = Recorder()
    instrument(tango.pipeline, recorder)
    audio_s = config["duration"] or tango.pipeline.config.duration(frames)
    batches = {str(batch): _measure_batch(tango, recorder, config, variant["name"], batch, audio_s, frames)
               for batch in config["batches"]}
    audio_in = measure_audio_in(tango, recorder, audio_s, config["warmup"], config["repeat"])
    return {
        "variant": variant,
        "label": job["label"],
        "model": job["model"],
        "arithmetic": job.get("arithmetic"),
        "providers_or_device": _device(tango),
        "effective_precision": {name: getattr(c, "effective_precision", None)
                                for name, c in tango.pipeline.components.items()},
        "load_s": load_s,
        "latent_frames": frames,
        "audio_seconds_per_clip": audio_s,
        "peak_rss_mb": peak_rss_mb(),
        "peak_anon_mb": anon.stop(),
        "graphs": {name: getattr(c, "graph", None) for name, c in tango.pipeline.components.items()},
        "gpu_memory": _gpu_memory(),
        "torch_imported": "torch" in sys.modules,
        "batches": batches,
        "audio_in": audio_in,
    }


def _measure_batch(tango: Tango, recorder: Recorder, config: dict, name: str, batch: int, audio_s: float,
                   frames: int) -> dict:
    """One batch size: warm-up, then `repeat` timed generations; per-stage and end-to-end summaries."""
    prompts = [config["prompt"]] * batch

    def generate(seed: int) -> None:
        tango.generate_for_batch(prompts, steps=config["steps"], guidance=config["guidance"], batch_size=batch,
                                 scheduler=config["scheduler"], scheduler_options=config["scheduler_options"],
                                 duration=config["duration"], seed=seed, **config["unet_work"])
        recorder.end_generation()

    for seed in tqdm(range(config["warmup"]), desc=f"{name} batch {batch} warm-up", leave=False):
        generate(seed)
    recorder.reset()
    end_to_end = []
    for seed in tqdm(range(config["repeat"]), desc=f"{name} batch {batch}", file=sys.stderr):
        t0 = time.perf_counter()
        generate(seed)
        end_to_end.append(time.perf_counter() - t0)
    e2e = summarize(end_to_end)
    run = {
        "stages": {stage: summarize(recorder.calls.get(stage, [])) for stage in STAGES},
        "per_generation": {stage: summarize(recorder.per_generation[stage]) for stage in STAGES},
        "end_to_end": e2e,
        "rtf": batch * audio_s / e2e["median"],
        "throughput_clips_per_s": batch / e2e["median"],
    }
    run["extrapolated_s"] = extrapolate(run, config["unet_work"])
    run["unet_gflop_per_clip"] = unet_gflop(tango, config, frames)
    run["unet_tflops"] = unet_tflops(run, batch)
    return run


def unet_tflops(run: dict, batch: int) -> float | None:
    """The UNet's effective TFLOP/s: its analytic FLOPs per generation (batch clips) over the median time a
    generation spent in it (full and shallow calls). None where either is unknown."""
    gflop = run.get("unet_gflop_per_clip")
    seconds = run["per_generation"]["unet_step"].get("median", 0.0) + \
        run["per_generation"].get(UNET_SHALLOW, {}).get("median", 0.0)
    return batch * gflop / seconds / 1e3 if gflop and seconds > 0 else None


def unet_gflop(tango: Tango, config: dict, frames: int) -> float | None:
    """Analytic UNet GFLOP of one clip with the run's sampler and UNet plan (runtime/flops.py); None for a model
    whose export predates the architecture record."""
    pipeline = tango.pipeline
    if pipeline.config.unet_shape is None:
        return None
    sampler = tango.scheduler(config["scheduler"], **config["scheduler_options"])
    sampler.set_timesteps(config["steps"])
    work = config["unet_work"]
    calls = UNetPlan.of(work["guidance_interval"], work["cache_interval"], work["cache_schedule"]).calls(
        sampler, range(config["steps"]), config["guidance"] > 1)
    text_len = pipeline.tokenizer([config["prompt"]])[0].shape[1]
    return run_gflop(UNetShape.from_dict(pipeline.config.unet_shape), calls, 1, frames, pipeline.config.latent_bins,
                     text_len, pipeline.config.unet_cache_cut)


def measure_audio_in(tango: Tango, recorder: Recorder, seconds: float, warmup: int, repeat: int) -> dict:
    """The cost of audio input for one clip of the bench's length: the mel front end and the VAE encoder (loaded
    now, on first use, as in serving), each call timed; the clip is seeded noise (its content costs nothing)."""
    editor = tango.editor
    wave = np.random.default_rng(0).uniform(-0.5, 0.5, round(seconds * tango.sample_rate)).astype(np.float32)
    started = time.perf_counter()
    tango.pipeline.component(VAE_ENCODER)
    load_s = time.perf_counter() - started
    clip = editor.load(wave)
    frames = editor.mel_frames(clip.samples)
    recorder.reset()
    mel_s = []
    for index in range(warmup + repeat):
        t0 = time.perf_counter()
        mel = editor.log_mel(clip.normalized, frames)
        if index >= warmup:
            mel_s.append(time.perf_counter() - t0)
        tango.pipeline.encode_mel(mel[None])
    encoder_s = recorder.calls.get(VAE_ENCODER, [])[warmup:]  # the instrumented encoder's calls, warm-up left out
    return {"encoder_load_s": load_s, "audio_to_mel": summarize(mel_s), VAE_ENCODER: summarize(encoder_s)}


EXTRAPOLATED_STEPS = (15, 20, 25, 50, 100, 200)


def extrapolate(run: dict, work: dict) -> dict[str, float]:
    """Seconds per generation at other step counts from this run's per-stage medians: tokenize + text encoder +
    full calls x full UNet step + shallow calls x shallow step (the cache plan's counts at that step count) + VAE
    + vocoder (the samplers' own arithmetic is ~1 ms per step). None with a guidance interval: its unguided calls
    cost less than guided ones, and how many there are depends on the sigmas of each step count."""
    if work.get("guidance_interval") is not None:
        return {}
    fixed = sum(run["per_generation"][s]["median"] for s in STAGES if s not in ("unet_step", UNET_SHALLOW))
    full, shallow = run["stages"]["unet_step"]["median"], run["stages"][UNET_SHALLOW].get("median") or 0.0
    seconds = {}
    for n in EXTRAPOLATED_STEPS:
        calls = full_steps(n, work.get("cache_interval", 1), work.get("cache_schedule", "uniform"))
        seconds[str(n)] = fixed + sum(calls) * full + (n - sum(calls)) * shallow
    return seconds


def _device(tango: Tango) -> str:
    component = tango.pipeline.components[UNET]
    target = getattr(component, "_target", component)
    if hasattr(target, "session"):
        return ",".join(target.session.get_providers())
    return str(getattr(target, "device", "?"))


if __name__ == "__main__":
    print(json.dumps(measure(json.loads(sys.argv[1]))))
