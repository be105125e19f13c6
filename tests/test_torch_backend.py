"""What only the torch backend does (its golden checks are in tests/test_conformance.py, with every backend's)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")


def test_an_fp16_network_gets_its_inputs_in_the_dtypes_the_spec_and_the_policy_say(tiny_tango):
    """torch FP16 casts float inputs to FP16, but the timestep stays FP32 (runtime/precision.py: Karras timesteps
    are fractional, and FP16 keeps half a step of resolution above 512); the bool mask stays bool. Checked on
    the tensors that reach the module, on the CPU (the cast is the same on a GPU)."""
    import torch

    from tango_rt.runtime.backends.torch_backend import TorchComponent
    from tango_rt.runtime.specs import UNET, component_specs, dims

    config = tiny_tango.pipeline.config
    spec = component_specs(config)[UNET]
    seen = {}

    class Recording(torch.nn.Module):
        def forward(self, *tensors):
            seen.update(zip(spec.input_names, (t.dtype for t in tensors), strict=True))
            return tuple(torch.zeros(1) for _ in spec.output_names)

    component = TorchComponent(spec, Recording(), torch.device("cpu"), torch.float16)
    feeds = spec.sample_inputs(dims(config, 1, 5, 16), config, seed=0)
    feeds["timestep"] = np.full(2, 987.3, np.float32)
    component.run(feeds, spec.output_names[:1])
    assert seen == {"sample": torch.float16, "timestep": torch.float32, "encoder_hidden_states": torch.float16,
                    "encoder_attention_mask": torch.bool}
    assert float(torch.tensor(987.3, dtype=torch.float16)) != pytest.approx(987.3, abs=0.1)  # what FP16 would do
