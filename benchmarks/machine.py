"""What machine and software produced a benchmark: recorded with every result."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

from ..runtime.versions import library_versions


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def proc_status_mb(field: str, pid: int | str = "self") -> float | None:
    """A memory field of /proc/<pid>/status (VmHWM, VmRSS, RssAnon, ...) in MB; None where /proc or the process
    is not there."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8",
             "avx_vnni", "asimd", "sve", "bf16")


def cpu_flags() -> list[str]:
    """The instruction-set extensions that decide which precisions run fast here (BF16, INT8 units)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                present = set(line.split(":", 1)[1].split())
                return [flag for flag in ISA_FLAGS if flag in present]
    except OSError:
        pass
    return []


def memory_gb() -> float | None:
    try:
        import psutil

        return round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        return None


def gpus() -> list[str]:
    """GPU names from nvidia-smi (no torch import: the lean path must stay lean)."""
    try:
        result = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=20, check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in result.stdout.splitlines() if line.strip()]


def git_revision() -> str | None:
    root = Path(__file__).resolve().parent.parent
    try:
        result = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True, timeout=10, check=True)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() + ("-dirty" if dirty else "")


def machine_info() -> dict:
    return {
        "cpu": cpu_model(),
        "cpu_flags": cpu_flags(),
        "cores": os.cpu_count(),
        "ghz": cpu_ghz(),
        "memory_gb": memory_gb(),
        "gpus": gpus(),
        "platform": platform.platform(),
        "versions": library_versions("numpy", "onnxruntime", "onnxruntime-gpu", "openvino", "nncf", "torch",
                                     "transformers", "diffusers", "tensorrt", "tango-rt"),
        "git_revision": git_revision(),
    }


# Dense multiply-add throughput per core per cycle (a multiply-add counts two), by arithmetic and the best unit the
# flags show: AMX's tiles (BF16 1024, INT8 2048), AVX-512 with two FMA ports (FP32 64; BF16 via VDPBF16PS 128;
# INT8 via VNNI's VPDPBUSD 256), AVX2 / AVX-VNNI at half that. A core with one 512-bit FMA port (some Xeon
# Silver, Zen 4's split 256-bit units) reaches half: the figure is the ceiling, not a promise.
PEAK_OPS_PER_CYCLE: dict[str, tuple[tuple[str, int], ...]] = {
    "int8": (("amx_int8", 2048), ("avx512_vnni", 256), ("avx_vnni", 128), ("avx2", 64)),
    "bf16": (("amx_bf16", 1024), ("avx512_bf16", 128), ("avx512f", 64), ("avx2", 32)),
    "fp32": (("avx512f", 64), ("avx2", 32)),
}


def cpu_ghz() -> float | None:
    """The clock the peak is figured at: the nominal one in the model name (@ 2.10GHz) when given, else the current
    one /proc/cpuinfo reports (cloud vCPUs often hide the nominal)."""
    name = cpu_model()
    if "GHz" in name:
        try:
            return float(name.rsplit("@", 1)[1].strip().removesuffix("GHz"))
        except (IndexError, ValueError):
            pass
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("cpu MHz"):
                return float(line.split(":", 1)[1]) / 1000
    except (OSError, ValueError):
        pass
    return None


def peak_tflops(arithmetic: str, flags: list[str], cores: int, ghz: float) -> tuple[float, str] | None:
    """The machine's dense peak for `arithmetic` (int8 / bf16 / fp32) in TFLOP/s (TOP/s for INT8) and the unit
    it comes from; None without a known unit. `cores`: the CPUs the run may use."""
    for flag, ops in PEAK_OPS_PER_CYCLE[arithmetic]:
        if flag in flags:
            return ops * cores * ghz / 1000, flag
    return None
