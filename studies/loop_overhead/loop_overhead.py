"""What the numpy loop itself costs per UNet step, at full size, with the UNet replaced by an instant stand-in.

    python studies/loop_overhead/loop_overhead.py --out studies/loop_overhead/results

Every step the loop hands the UNet host arrays and takes one back: a GPU backend copies them host -> device and
the result device -> host and synchronises. This measures, on the CPU, the loop's own work per step (sampler
update, CFG split and combine, input concatenation, the shape and finiteness checks) and the bytes a GPU backend
moves per step, for the default and the fast sampler at batch 1 and 4. The copy's share of a GPU step is those
bytes over the link's bandwidth divided by the GPU UNet step time; the GPU script (studies/first_gpu) measures the
latter. Keeping latents on the device would need device-side samplers (torch or CuPy arrays in place of numpy):
every sampler's update and multistep history moved, which is why this measures first.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from tango_rt.benchmarks.machine import machine_info
from tango_rt.benchmarks.report import save_results
from tango_rt.runtime.backends.base import Component
from tango_rt.runtime.checkpoint import load_checkpoint
from tango_rt.runtime.noise import NoiseSource, row_generators
from tango_rt.runtime.pipeline import TangoPipeline, TextConditioning
from tango_rt.runtime.schedulers import make_scheduler
from tango_rt.runtime.specs import TYPICAL_TEXT_LEN, UNET, component_specs

TEXT_LEN = TYPICAL_TEXT_LEN


class InstantUNet(Component):
    """Returns a fixed output of the right shape at once: only the loop's own cost remains."""

    backend = "stand-in"

    def __init__(self, spec):
        super().__init__(spec)
        self.bytes_in = 0
        self.calls = 0

    def run(self, feeds: dict[str, np.ndarray], outputs: list[str]) -> np.ndarray | tuple[np.ndarray, ...]:
        self.calls += 1
        self.bytes_in += sum(a.nbytes for a in feeds.values())
        dims = self.spec.infer_dims(feeds)
        arrays = tuple(np.full(t.resolve(dims), 0.01, np.float32) for t in self.spec.outputs if t.name in outputs)
        return arrays[0] if len(arrays) == 1 else arrays


def measure(sampler: str, steps: int, batch: int, repeat: int) -> dict:
    checkpoint = load_checkpoint("random:full")  # configs only: no weights are built
    config = checkpoint.pipeline_config()
    unet = InstantUNet(component_specs(config)[UNET])
    pipeline = TangoPipeline({UNET: unet}, checkpoint.tokenizer(), config, checkpoint.scheduler_config)
    rng = np.random.default_rng(0)
    text = TextConditioning(rng.standard_normal((2 * batch, TEXT_LEN, config.text_hidden_size), dtype=np.float32),
                            np.ones((2 * batch, TEXT_LEN), bool), guided=True)
    times = []
    for _ in range(repeat):
        noise = NoiseSource(row_generators(0, batch))
        started = time.perf_counter()
        pipeline.denoise(text, make_scheduler(sampler, checkpoint.scheduler_config), steps, 3.0, noise)
        times.append((time.perf_counter() - started) / steps)
    per_step = float(np.median(times))
    bytes_in = unet.bytes_in / unet.calls
    bytes_out = 2 * batch * config.latent_channels * config.latent_frames * config.latent_bins * 4
    return {"sampler": sampler, "steps": steps, "batch": batch, "loop_ms_per_step": 1000 * per_step,
            "h2d_bytes_per_step": int(bytes_in), "d2h_bytes_per_step": int(bytes_out)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="studies/loop_overhead/results")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    rows = [measure(s, n, b, args.repeat) for s, n in (("ddpm", 100), ("unipc", 15)) for b in (1, 4)]
    lines = ["| sampler, steps | batch | loop's own work per step ms | host->device per step MB | "
             "device->host per step MB |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['sampler']} {r['steps']} | {r['batch']} | {r['loop_ms_per_step']:.2f} | "
                     f"{r['h2d_bytes_per_step'] / 1e6:.2f} | {r['d2h_bytes_per_step'] / 1e6:.2f} |")
    table = "\n".join(lines)
    print(table)
    result = {"command": "python studies/loop_overhead/loop_overhead.py", "machine": machine_info(), "rows": rows}
    save_results(Path(args.out), result, f"# Loop overhead per UNet step (UNet stand-in, full-size shapes)\n\n"
                 f"Command: `{result['command']}`\n\n{table}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
