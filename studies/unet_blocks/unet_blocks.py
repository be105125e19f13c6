"""Where one full-size UNet call spends its time, block by block: what the shallow branch's cut is chosen from.

    python studies/unet_blocks/unet_blocks.py --out studies/unet_blocks/results

Runs the full-size Tango UNet (random weights: timing needs no training) on torch FP32, CPU, one guided call
(batch 2, 10.24 s, 32 tokens), `--repeat` times after a warm-up, with hooks timing every top-level module and every
(resnet, attention) pair of the first down block and the last up block. Next to the seconds, the analytic FLOPs of
the same pieces (runtime/flops.py) and, for each possible cut of the shallow branch (the last up block entered at
resnet 0, 1 or 2), its share of a full call in time and in FLOPs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from tango_rt.benchmarks.machine import machine_info
from tango_rt.benchmarks.report import save_study
from tango_rt.runtime.checkpoint import random_checkpoint
from tango_rt.runtime.flops import UNetShape, unet_flops


def _timers(unet) -> tuple[dict[str, list[float]], list]:
    """Hooks that time each named piece's forward; returns (times, handles)."""
    times: dict[str, list[float]] = {}
    handles = []

    def watch(name: str, module) -> None:
        started: list[float] = []

        def before(*_args, **_kwargs) -> None:
            started.append(time.perf_counter())

        def after(*_args, **_kwargs) -> None:
            times.setdefault(name, []).append(time.perf_counter() - started.pop())

        handles.append(module.register_forward_pre_hook(before))
        handles.append(module.register_forward_hook(after))

    for name in ("conv_in", "time_embedding", "mid_block", "conv_out"):
        watch(name, getattr(unet, name))
    for i, block in enumerate(unet.down_blocks):
        watch(f"down_blocks.{i}", block)
    for i, block in enumerate(unet.up_blocks):
        watch(f"up_blocks.{i}", block)
    for prefix, block in (("down_blocks.0", unet.down_blocks[0]), (f"up_blocks.{len(unet.up_blocks) - 1}",
                                                                   unet.up_blocks[-1])):
        for j, resnet in enumerate(block.resnets):
            watch(f"{prefix}.resnets.{j}", resnet)
        for j, attention in enumerate(getattr(block, "attentions", None) or []):
            watch(f"{prefix}.attentions.{j}", attention)
    return times, handles


def measure(repeat: int, frames: int, text_len: int) -> dict:
    import torch

    from tango_rt.runtime.backends.torch_models import ModelBuilder

    checkpoint = random_checkpoint("full")
    unet = ModelBuilder(checkpoint).build(["unet"])["unet"].unet
    sample = torch.randn(2, 8, frames, 16)
    timestep = torch.full((2,), 500.0)
    text = torch.randn(2, text_len, 1024)
    mask = torch.ones(2, text_len, dtype=torch.bool)
    times, handles = _timers(unet)
    totals = []
    with torch.inference_mode():
        for index in range(repeat + 1):
            if index == 1:
                times.clear()  # the first call warms up
            started = time.perf_counter()
            unet(sample, timestep, encoder_hidden_states=text, encoder_attention_mask=mask)
            totals.append(time.perf_counter() - started)
    for handle in handles:
        handle.remove()
    full_s = statistics.median(totals[1:])
    medians = {name: statistics.median(values) for name, values in times.items()}
    shape = UNetShape.from_config(checkpoint.unet_config)
    full_flops = unet_flops(shape, frames, 16, text_len)
    last = f"up_blocks.{len(unet.up_blocks) - 1}"
    layers = len(unet.up_blocks[-1].resnets)
    cuts = {}
    for cut in range(layers):
        pieces = ["conv_in", "time_embedding", "conv_out"]
        pieces += [f"down_blocks.0.{kind}.{j}" for j in range(layers - 1 - cut) for kind in ("resnets", "attentions")]
        pieces += [f"{last}.{kind}.{j}" for j in range(cut, layers) for kind in ("resnets", "attentions")]
        seconds = sum(medians.get(p, 0.0) for p in pieces)
        cuts[str(cut)] = {"seconds": seconds, "time_share": seconds / full_s,
                          "flop_share": unet_flops(shape, frames, 16, text_len, cut) / full_flops}
    return {"full_call_s": full_s, "full_call_gflop_per_row": full_flops / 1e9, "pieces_s": medians, "cuts": cuts,
            "frames": frames, "text_len": text_len, "repeat": repeat}


def table(result: dict) -> str:
    lines = [f"One guided full-size UNet call (batch 2, {result['frames']} latent frames, {result['text_len']} "
             f"tokens), torch FP32, CPU: {result['full_call_s']:.2f} s (median of {result['repeat']}), "
             f"{2 * result['full_call_gflop_per_row']:.0f} GFLOP.", "",
             "| piece | seconds | share of the call |", "|---|---|---|"]
    for name, seconds in result["pieces_s"].items():
        lines.append(f"| {name} | {seconds:.3f} | {seconds / result['full_call_s']:.1%} |")
    lines += ["", "| shallow branch entering the last up block at | seconds | time share | FLOP share |",
              "|---|---|---|---|"]
    for cut, row in result["cuts"].items():
        lines.append(f"| resnet {cut} | {row['seconds']:.3f} | {row['time_share']:.1%} | {row['flop_share']:.1%} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--frames", type=int, default=256)
    parser.add_argument("--text-len", type=int, default=32)
    parser.add_argument("--out", default="studies/unet_blocks/results")
    args = parser.parse_args(argv)
    machine = machine_info()
    result = measure(args.repeat, args.frames, args.text_len)
    text = table(result)
    save_study(Path(args.out), __file__, argv, machine, result, "UNet blocks", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
