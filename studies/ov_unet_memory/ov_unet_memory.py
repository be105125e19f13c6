"""Where OpenVINO's memory goes: the full-size UNet alone, file-backed and anonymous resident memory per stage.

    python studies/ov_unet_memory/ov_unet_memory.py --out studies/ov_unet_memory/results

One child process per precision (fp32, bf16) reads the exported `unet.onnx`, compiles it for the CPU, drops the
model, and runs two steps (batch 2, the default clip, 32 tokens), reading /proc/self/status after each stage:
RssFile counts the pages of the memory-mapped weight file, RssAnon the process's own memory (compiled or repacked
weights, activations). The evidence for README's memory section: which copy of the weights OpenVINO keeps.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from tango_rt.benchmarks.machine import machine_info, proc_status_mb
from tango_rt.benchmarks.report import save_results
from tango_rt.runtime.precision import BF16, FP32

FIELDS = ("RssFile", "RssAnon", "VmHWM")
PRECISIONS = (FP32, BF16)


def measure(folder: str, precision: str) -> dict:
    """Runs in the child: the stages of one compile-and-run, with memory after each."""
    import openvino as ov

    from tango_rt.runtime.artifacts import open_artifact
    from tango_rt.runtime.specs import UNET, component_specs, dims

    artifact = open_artifact(folder)
    config = artifact.pipeline_config
    feeds = component_specs(config)[UNET].sample_inputs(dims(config, 1, 32), config)
    stages: dict[str, dict] = {}

    def record(stage: str, started: float) -> None:
        stages[stage] = {"seconds": time.perf_counter() - started, **{f: proc_status_mb(f) for f in FIELDS}}

    core = ov.Core()
    started = time.perf_counter()
    model = core.read_model(str(artifact.files(UNET, "onnx")[0]))
    record("read", started)
    if precision == BF16:  # static shapes, as the backend compiles BF16 (see runtime/backends/ov_backend.py)
        model.reshape({name: list(array.shape) for name, array in feeds.items()})
    started = time.perf_counter()
    compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": {FP32: "f32", BF16: "bf16"}[precision],
                                                 "PERFORMANCE_HINT": "LATENCY"})
    del model
    record("compiled, model dropped", started)
    request = compiled.create_infer_request()
    for step in (1, 2):
        started = time.perf_counter()
        request.infer(feeds)
        record(f"step {step}", started)
    return {"precision": precision, "weights_file_mb": sum(p.stat().st_size for p in artifact.files(UNET, "onnx"))
            / 2**20, "stages": stages}


def markdown(result: dict) -> str:
    lines = ["# OpenVINO: the full-size UNet's memory, stage by stage", "",
             f"Machine: {result['machine']['cpu']}, {result['machine']['cores']} cores. Command: "
             f"`{result['command']}`. Created {result['created']}. MB are MiB; RssFile = mapped weight-file pages, "
             "RssAnon = private memory.", "",
             "| precision | stage | seconds | RssFile MB | RssAnon MB | peak RSS MB |", "|---|---|---|---|---|---|"]
    for run in result["runs"]:
        for stage, v in run["stages"].items():
            lines.append(f"| {run['precision']} | {stage} | {v['seconds']:.1f} | {v['RssFile']:.0f} | "
                         f"{v['RssAnon']:.0f} | {v['VmHWM']:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--folder", default=str(Path.home() / ".cache" / "tango-rt" / "bench" / "random-full-fp32"),
                        help="an FP32 export of the full-size model (tango-rt bench leaves one here)")
    parser.add_argument("--out", default="studies/ov_unet_memory/results")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.folder, args.child)))
        return 0
    runs = []
    for precision in PRECISIONS:  # one process each: peak RSS and mappings start afresh
        output = subprocess.run([sys.executable, __file__, "--folder", args.folder, "--child", precision],
                                capture_output=True, text=True, check=True).stdout
        runs.append(json.loads(output.strip().splitlines()[-1]))
    result = {"benchmark": "ov_unet_memory", "command": "python studies/ov_unet_memory/ov_unet_memory.py",
              "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine_info(), "runs": runs}
    save_results(Path(args.out), result, markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
