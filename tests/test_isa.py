"""The forced lower-ISA pass of .ci/run is real: the libraries report the lower level and run other kernels."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from isa import FORCED_MARK, forced_env, numpy_dispatch_targets

pytest.importorskip("torch")
pytestmark = pytest.mark.numerics
HERE = Path(__file__).parent


def _probe(env: dict[str, str]) -> dict:
    clean = {k: v for k, v in os.environ.items() if k not in forced_env()}
    out = subprocess.run([sys.executable, str(HERE / "isa.py"), "probe"], env={**clean, **env}, check=True,
                         capture_output=True, text=True, timeout=120)
    return json.loads(out.stdout)


def test_forcing_lower_instruction_sets_changes_the_kernels():
    """Same computation, default vs forced: torch reports its scalar kernels, and some result moves in its last
    bits. Where this CPU has nothing above the forced level, there is nothing to show."""
    if os.environ.get(FORCED_MARK) == "1":
        pytest.skip("inside the forced pass; the comparison runs in the default one")
    if not numpy_dispatch_targets():
        pytest.skip("this CPU has no SIMD level above numpy's baseline: forcing changes nothing here")
    env = forced_env()
    default, forced = _probe({}), _probe(env)
    assert forced["torch_capability"] == env["ATEN_CPU_CAPABILITY"].upper() != default["torch_capability"]
    moved = {k: (default[k], forced[k]) for k in default if k != "torch_capability" and default[k] != forced[k]}
    print("results that moved under the forced ISA:", moved)
    assert moved, "no result changed: the forced pass would not exercise other kernels"


@pytest.mark.skipif(os.environ.get(FORCED_MARK) != "1", reason="checks the forced pass from inside it")
def test_inside_the_forced_pass_the_lower_level_is_in_effect():
    import numpy as np
    import torch

    assert torch.backends.cpu.get_cpu_capability() == os.environ["ATEN_CPU_CAPABILITY"].upper()
    disabled = [t for t in os.environ["NPY_DISABLE_CPU_FEATURES"].split(",") if t]
    try:
        from numpy._core import _multiarray_umath as umath
    except ImportError:
        from numpy.core import _multiarray_umath as umath
    assert not any(umath.__cpu_features__[t] for t in disabled), np.show_runtime()
