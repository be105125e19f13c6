"""Which device a backend runs on: the CUDA device an option names (one parser for every GPU backend), and the
CPUs this process may use."""

from __future__ import annotations

import os

from ..errors import BackendError


def cuda_index(device: str | None, backend: str) -> int:
    """0 for None or "cuda", N for "cuda:N"; anything else is not a CUDA device."""
    if device in (None, "cuda"):
        return 0
    if device.startswith("cuda:") and device[5:].isdigit():
        return int(device[5:])
    raise BackendError(f"the {backend} backend runs on CUDA devices ('cuda' or 'cuda:N'), not {device!r}")


def usable_cpus() -> int:
    """The CPUs this process may run on: its affinity mask (taskset, a container's cpuset, a test worker pinned to
    one core), which torch and OpenVINO follow and ONNX Runtime's default thread pool does not (it sizes itself
    from the machine: two threads pinned to one core spin against each other)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def narrowed_threads() -> int | None:
    """A CPU backend's default thread count where the process may use fewer CPUs than the machine has; None
    (the runtime's own choice) otherwise."""
    usable = usable_cpus()
    return usable if usable < (os.cpu_count() or usable) else None
