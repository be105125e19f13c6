"""A host-memory stand-in for CUDA and a TensorRT execution context, so that the TensorRT backend's own code
(runtime/backends/trt_backend.py: buffers, copies, shapes, enqueue, CUDA graphs) runs on a CPU: "device"
buffers are bytearrays, and an "engine" computes with a host function (another backend's network). Used by the
backend's unit tests and by the conformance suite, which runs the golden, sampler and edit checks through it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from tango_rt.runtime.backends import trt_backend
from tango_rt.runtime.backends.trt_backend import TrtComponent, plan_buffers
from tango_rt.runtime.specs import ShapeProfile, dims

ENV = {"version": "10.13.0.35", "gpu": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0"}


class FakeCuda:
    """CUDA runtime stand-in: "device" buffers are bytearrays; graphs record the work enqueued while capturing."""

    def __init__(self):
        self.memory: dict[int, bytearray] = {}
        self.capturing: list | None = None
        self.launches = 0
        self.freed: list[int] = []

    def device_properties(self):
        return ENV["gpu"], ENV["compute_capability"]

    def malloc(self, nbytes):
        pointer = 0x1000 * (len(self.memory) + 1)
        self.memory[pointer] = bytearray(max(nbytes, 1))
        return pointer

    def free(self, pointer):
        self.freed.append(pointer)

    def create_stream(self):
        return 7

    def copy_to_device(self, pointer, array, stream):
        assert self.capturing is None, "copies must stay outside the captured graph"
        self.memory[pointer][: array.nbytes] = array.tobytes()

    def copy_to_host(self, array, pointer, stream):
        array.view(np.uint8).reshape(-1)[:] = np.frombuffer(bytes(self.memory[pointer][: array.nbytes]), np.uint8)

    def synchronize(self, stream):
        pass

    def begin_capture(self, stream):
        self.capturing = []

    def end_capture(self, stream):
        graph, self.capturing = self.capturing, None
        return graph

    def launch(self, graph, stream):
        self.launches += 1
        for work in graph:
            work()


class FakeContext:
    """An execution context computing with a host function, reading and writing the fake device memory; output
    shapes from the spec and the model's shape relations (runtime/specs.dims), as TensorRT infers them."""

    def __init__(self, spec, cuda, compute, dtypes, max_dims, config=None):
        self.spec, self.cuda, self.compute, self.dtypes, self.max_dims = spec, cuda, compute, dtypes, max_dims
        self.config = config
        self.addresses, self.shapes, self.executions, self.fail = {}, {}, 0, False
        self.device_memory = None

    def set_device_memory(self, pointer, size):
        self.device_memory = (pointer, size)

    def set_tensor_address(self, name, pointer):
        self.addresses[name] = pointer
        return True

    def set_input_shape(self, name, shape):
        self.shapes[name] = tuple(shape)
        return all(s <= m for s, m in zip(shape, self.max_dims[name], strict=True))

    def _dims(self) -> dict[str, int]:
        given: dict[str, int] = {}
        for t in self.spec.inputs:
            given.update({d: s for d, s in zip(t.shape, self.shapes[t.name], strict=True) if isinstance(d, str)})
        frames = given.get("latent_frames")
        if frames is None and "mel_frames" in given:  # the vocoder: mel in
            frames = given["mel_frames"] // self.config.mel_frames(1)
        return {**dims(self.config, 1, 1, frames), **given}

    def get_tensor_shape(self, name):
        return next(t for t in self.spec.outputs if t.name == name).resolve(self._dims())

    def _run(self):
        self.executions += 1
        feeds = {}
        for t in self.spec.inputs:
            size = int(np.prod(self.shapes[t.name])) * np.dtype(self.dtypes[t.name]).itemsize
            raw = bytes(self.cuda.memory[self.addresses[t.name]][:size])
            feeds[t.name] = np.frombuffer(raw, self.dtypes[t.name]).reshape(self.shapes[t.name])
        results = self.compute(feeds)
        for name, out in zip(self.spec.output_names, results if isinstance(results, tuple) else (results,),
                             strict=True):
            out = np.asarray(out).astype(self.dtypes[name])
            self.cuda.memory[self.addresses[name]][: out.nbytes] = out.tobytes()

    def execute_async_v3(self, stream_handle):
        if self.fail:
            return False
        if self.cuda.capturing is not None:
            self.cuda.capturing.append(self._run)
        else:
            self._run()
        return True


def stand_in_component(spec, config, compute: Callable[[dict], Any], dtypes: dict | None = None,
                       cuda_graph: bool = False, max_batch: int = 2) -> tuple[TrtComponent, FakeContext, FakeCuda]:
    """The backend's TrtComponent over the stand-ins, its "engine" computing `compute(feeds)`."""
    cuda = FakeCuda()
    ranges = ShapeProfile(max_batch=max_batch).ranges(config)
    dtypes = {t.name: np.dtype((dtypes or {}).get(t.name, t.dtype)) for t in spec.inputs + spec.outputs}
    plans = plan_buffers(spec, ranges, {k: v.name for k, v in dtypes.items()})
    buffers = {p.name: cuda.malloc(p.nbytes) for p in plans}
    context = FakeContext(spec, cuda, compute, dtypes, {p.name: p.max_shape for p in plans}, config)
    memory = trt_backend.DeviceMemory(cuda)
    component = TrtComponent(spec, context, cuda, cuda.create_stream(), buffers, dtypes, ranges, memory, cuda_graph)
    return component, context, cuda


def on_stand_in_engines(tango, max_batch: int = 8):
    """`tango` with every network behind the TensorRT backend's code (CUDA graphs on), each "engine" computing with
    the network `tango` loaded, those loaded later (the VAE encoder, the shallow UNet) included: what the TensorRT
    path adds (copies, shapes, dtypes, graph capture and replay) is what a conformance check on it tests."""
    pipeline = tango.pipeline

    def engine(name: str, network) -> TrtComponent:
        outputs = list(network.spec.output_names)
        component, _, _ = stand_in_component(network.spec, pipeline.config,
                                             lambda feeds: network(outputs=outputs, **feeds),
                                             cuda_graph=True, max_batch=max_batch)
        return component

    pipeline.components = {name: engine(name, network) for name, network in pipeline.components.items()}
    pipeline.wrappers.append(engine)
    return tango
