"""The few CUDA runtime calls the TensorRT backend makes, through cuda-python, each return code checked.

Kept behind this small class so the backend's buffer, shape and graph logic can be tested with a host-memory
stand-in on machines without a GPU (tests/test_tensorrt_unit.py).
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from ..errors import BackendError


def _import_cudart() -> Any:
    try:
        from cuda.bindings import runtime  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart as runtime  # older cuda-python
        except ImportError as exc:
            raise BackendError(f"the tensorrt backend needs cuda-python ({exc}): pip install 'tango-rt[tensorrt]'") \
                from None
    return runtime


class CudaRuntime:
    """Device memory, one stream, async copies and CUDA graphs on one device.

    CUDA's current device belongs to the host thread: the model loads in one thread and runs in another (the
    server's worker, Ray's replica threads), so every call first makes this runtime's device current in the
    calling thread (once per thread), or cuda:1's buffers would be used from device 0."""

    def __init__(self, device_index: int = 0):
        self._rt = _import_cudart()
        self._threads = threading.local()
        count = self._call("cudaGetDeviceCount")
        if device_index >= count:
            raise BackendError(f"CUDA device {device_index} requested, {count} visible")
        self.device_index = device_index
        self._make_current()

    def _make_current(self) -> None:
        if getattr(self._threads, "current", None) != self.device_index:
            self._checked("cudaSetDevice", self._rt.cudaSetDevice(self.device_index))
            self._threads.current = self.device_index

    def _call(self, name: str, *args: Any) -> Any:
        if name != "cudaGetDeviceCount":
            self._make_current()
        return self._checked(name, getattr(self._rt, name)(*args))

    def _checked(self, name: str, result: Any) -> Any:
        error, values = result[0], result[1:]
        if error != self._rt.cudaError_t.cudaSuccess:
            raise BackendError(f"CUDA call {name} failed: {error}")
        return values[0] if len(values) == 1 else values or None

    def device_properties(self) -> tuple[str, str]:
        """(GPU name, compute capability "major.minor")."""
        props = self._call("cudaGetDeviceProperties", self.device_index)
        name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
        return name.rstrip("\x00").strip(), f"{props.major}.{props.minor}"

    def malloc(self, nbytes: int) -> int:
        return int(self._call("cudaMalloc", max(int(nbytes), 1)))

    def free(self, pointer: int) -> None:
        self._call("cudaFree", pointer)

    def create_stream(self) -> Any:
        return self._call("cudaStreamCreate")

    def copy_to_device(self, pointer: int, array: np.ndarray, stream: Any) -> None:
        kind = self._rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._call("cudaMemcpyAsync", pointer, array.ctypes.data, array.nbytes, kind, stream)

    def copy_to_host(self, array: np.ndarray, pointer: int, stream: Any) -> None:
        kind = self._rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._call("cudaMemcpyAsync", array.ctypes.data, pointer, array.nbytes, kind, stream)

    def synchronize(self, stream: Any) -> None:
        self._call("cudaStreamSynchronize", stream)

    def begin_capture(self, stream: Any) -> None:
        mode = self._rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        self._call("cudaStreamBeginCapture", stream, mode)

    def end_capture(self, stream: Any) -> Any:
        """End a capture and return the instantiated, launchable graph."""
        graph = self._call("cudaStreamEndCapture", stream)
        return self._call("cudaGraphInstantiate", graph, 0)

    def launch(self, graph: Any, stream: Any) -> None:
        self._call("cudaGraphLaunch", graph, stream)
