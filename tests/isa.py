"""Lower instruction sets, forced: how the CI shows another CPU's rounding on this one.

`python tests/isa.py` prints the environment of the forced pass (one KEY=VALUE a line): numpy without any of its
dispatched SIMD targets (its compiled baseline: X86_V2 on x86-64; its float32 exp / log / sin then take other
code paths, as on another CPU), and torch one level below what this CPU has: on an AVX-512 machine (Sapphire
Rapids, EPYC Zen 4) ATen's and oneDNN's AVX2 kernels, on an AVX2 machine ATen's scalar kernels and oneDNN at
SSE4.1 (scalar ATen everywhere would triple the pass's time). ONNX Runtime (MLAS) and OpenVINO's CPU plugin
have no public switch for this: their kernels still follow the machine. `probe()` computes a few results whose last bits
depend on the kernels (float32 exp / log / sin in numpy, a torch convolution and softmax), so a test can show
that the forced pass really ran other code.
"""

from __future__ import annotations

import json
import sys

FORCED_MARK = "TANGO_RT_FORCED_ISA"  # set in the forced pass, so its own check knows to run


def numpy_dispatch_targets() -> list[str]:
    """The SIMD targets numpy was built to dispatch to and this CPU has (the ones we can turn off)."""
    try:
        from numpy._core import _multiarray_umath as umath
    except ImportError:  # numpy 1.x
        from numpy.core import _multiarray_umath as umath
    return [t for t in umath.__cpu_dispatch__ if umath.__cpu_features__.get(t, False)]


def forced_env() -> dict[str, str]:
    targets = numpy_dispatch_targets()
    wide = any(t.startswith(("AVX512", "X86_V4")) for t in targets)
    torch_level = ("avx2", "AVX2") if wide else ("default", "SSE41")
    return {"NPY_DISABLE_CPU_FEATURES": ",".join(targets), "ATEN_CPU_CAPABILITY": torch_level[0],
            "ONEDNN_MAX_CPU_ISA": torch_level[1], FORCED_MARK: "1"}


def probe() -> dict[str, float]:
    import numpy as np
    import torch

    x = np.linspace(0.1, 30, 100_001, dtype=np.float32)
    t = torch.from_numpy(x)
    weight = torch.randn(64, 32, 3, 3, generator=torch.Generator().manual_seed(0))
    image = torch.randn(1, 32, 40, 40, generator=torch.Generator().manual_seed(1))
    return {
        "numpy_exp": float(np.exp(x / np.float32(7)).astype(np.float64).sum()),
        "numpy_log": float(np.log(x).astype(np.float64).sum()),
        "numpy_sin": float(np.sin(x).astype(np.float64).sum()),
        "torch_conv": float(torch.nn.functional.conv2d(image, weight).double().sum()),
        "torch_softmax": float(torch.softmax(t[:4096].reshape(64, 64) * 3, -1).double().pow(2).sum()),
        "torch_capability": torch.backends.cpu.get_cpu_capability(),
    }


if __name__ == "__main__":
    if sys.argv[1:] == ["probe"]:
        print(json.dumps(probe()))
    else:
        print("\n".join(f"{k}={v}" for k, v in forced_env().items()))
